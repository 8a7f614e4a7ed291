using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// snapshot-access (block/snapshot-access.c): a read-only view of the point-in-time image a
/// copy-before-write node keeps. Reads go through <see cref="CopyBeforeWriteDriver.ReadSnapshotAsync"/>;
/// writes and write-zeroes fail with ENOTSUP (QEMU 7.2 accepts a writable export of this node, and
/// its writes then fail "Operation not supported"); a discard tells the copy-before-write node that
/// the snapshot user is done with the whole clusters of the range
/// (<see cref="CopyBeforeWriteDriver.DiscardSnapshotAsync"/>): they are no longer copied and read as
/// EACCES afterwards. Flush does nothing (the node takes no permission on its child).
/// </summary>
/// <remarks>
/// QEMU opens this node over any child; only a child offering the snapshot API (copy-before-write) can
/// serve it, so over anything else every read and discard fails with ENOTSUP, as
/// <c>bdrv_co_preadv_snapshot</c> does. The child is looked up per request, so a replaced child is seen.
/// </remarks>
[BlockDriverName("snapshot-access")]
public sealed class SnapshotAccessDriver : BlockDriver
{
    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services) =>
        Primary is null ? QmpError.Generic("A block device must be specified for \"file\"") : null;

    /// <inheritdoc/>
    public override long Length => Primary?.Node.Length ?? 0;

    private CopyBeforeWriteDriver? Cbw => Primary?.Node.Driver as CopyBeforeWriteDriver;

    private static ValueTask NotSupported() => ValueTask.FromException(new BlockIOException(Errnos.ENOTSUP, "Operation not supported"));

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer) => Cbw is { } c ? c.ReadSnapshotAsync(offset, buffer) : NotSupported();

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags) => NotSupported();

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags) => NotSupported();

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length) => Cbw is { } c ? c.DiscardSnapshotAsync(offset, length) : NotSupported();

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => ValueTask.CompletedTask;
}
