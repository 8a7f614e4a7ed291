using Verified.Impl.Graph;
using Verified.Impl.IO;

namespace Verified.Impl.Jobs;

/// <summary>
/// The mirror job's filter (block/mirror.c's bdrv_mirror_top): requests pass to its <c>backing</c> child,
/// the source. It exists only as a mirror job's implicit node; blockdev-add's schema has no such driver.
/// </summary>
[BlockDriverName("mirror_top")]
public sealed class MirrorTopDriver : BlockDriver
{
    private BlockNode Source => Node.Child("backing")?.Node ?? throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' has no backing child");

    /// <inheritdoc/>
    public override long Length => Node.Child("backing")?.Node.Length ?? 0;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer) => Source.ReadAsync(offset, buffer);

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags) => Source.WriteAsync(offset, data, flags);

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags) => Source.WriteZeroesAsync(offset, length, flags);

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length) => Source.DiscardAsync(offset, length);

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => Source.FlushAsync();
}
