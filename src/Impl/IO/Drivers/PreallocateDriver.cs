using System.Globalization;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The <c>preallocate</c> filter (QEMU's block/preallocate.c): forwards every request to <c>file</c> and,
/// while its parents hold write and resize, tracks where the data ends (<c>data_end</c>), where the
/// file ends (<c>file_end</c>) and where preallocated zeroes start (<c>zero_start</c>), so that a write
/// past the end of the file first extends it by <c>prealloc-size</c> rounded up to <c>prealloc-align</c>,
/// and closing (or losing the permissions) truncates the file back to its data.
/// </summary>
/// <remarks>
/// Node sizes are fixed in this engine (there is no resize, and the block layer refuses requests past a
/// node's end), so a write can never pass <c>data_end</c>: the bookkeeping is kept as QEMU keeps it,
/// but preallocation itself never triggers and the close-time truncation never has anything to drop.
/// The options are checked as QEMU checks them.
/// </remarks>
[BlockDriverName("preallocate")]
public sealed class PreallocateDriver : BlockDriver
{
    /// <summary>Default <c>prealloc-align</c>: 1 MiB.</summary>
    public const long DefaultAlign = 1L << 20;

    /// <summary>Default <c>prealloc-size</c>: 128 MiB.</summary>
    public const long DefaultSize = 128L << 20;

    /// <summary>Marks <c>data_end</c>, <c>file_end</c>, <c>zero_start</c> as unknown (QEMU stores -EINVAL).</summary>
    private const long Unknown = -Errnos.EINVAL;

    private long dataEnd = Unknown;
    private long fileEnd = Unknown;
    private long zeroStart = Unknown;

    /// <summary>How far a write past the end extends the file.</summary>
    public long PreallocSize { get; private set; } = DefaultSize;

    /// <summary>What the preallocated end is aligned to.</summary>
    public long PreallocAlign { get; private set; } = DefaultAlign;

    private BdrvChild File => Node.Child("file") ?? throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' has no file");

    /// <inheritdoc/>
    public override long Length => dataEnd >= 0 ? dataEnd : Node.Child("file")?.Node.Length ?? 0;

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        PreallocAlign = DriverOptions.Int(Node, "prealloc-align") ?? DefaultAlign;
        PreallocSize = DriverOptions.Int(Node, "prealloc-size") ?? DefaultSize;
        if (PreallocAlign % DriverOptions.SectorSize != 0)
            return QmpError.Generic($"prealloc-align parameter of preallocate filter is not aligned to {DriverOptions.SectorSize}");
        int fileAlign = Node.Child("file")?.Node.Driver is FileDriver f ? f.RequestAlignment : 1;
        if (PreallocAlign % fileAlign != 0)
            return QmpError.Generic("prealloc-align parameter of preallocate filter is not aligned to underlying node request alignment ("
                + fileAlign.ToString(CultureInfo.InvariantCulture) + ")");
        return null;
    }

    /// <inheritdoc/>
    protected internal override void Close()
    {
        if (dataEnd >= 0) TruncateToRealSize();
    }

    /// <inheritdoc/>
    protected internal override QmpError? CheckPerm(Perm perm, Perm shared)
    {
        // Losing write+resize: drop the preallocation now, while this node may still resize the file.
        if (dataEnd >= 0 && !CanWriteResize(perm)) TruncateToRealSize();
        return null;
    }

    /// <inheritdoc/>
    protected internal override void SetPerm(Perm perm, Perm shared)
    {
        if (CanWriteResize(perm))
        {
            if (dataEnd < 0) dataEnd = fileEnd = zeroStart = File.Node.Length;
        }
        else
        {
            // Others may now change the file: forget what was known until the permissions come back.
            dataEnd = fileEnd = zeroStart = Unknown;
        }
    }

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer) => File.Node.ReadAsync(offset, buffer);

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        HandleWrite(offset, data.Length, wantMergeZero: false);
        return File.Node.WriteAsync(offset, data, flags);
    }

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        // Only a plain write-zeroes may be merged into preallocated zeroes (not FUA, not MAY_UNMAP).
        if (HandleWrite(offset, length, wantMergeZero: flags == WriteFlags.None)) return ValueTask.CompletedTask;
        if (!DriverOptions.UnmapAllowed(Node)) flags &= ~WriteFlags.MayUnmap;
        return File.Node.WriteZeroesAsync(offset, length, flags);
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length) =>
        DriverOptions.UnmapAllowed(Node) ? File.Node.DiscardAsync(offset, length) : ValueTask.CompletedTask;

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => File.Node.FlushAsync();

    private static bool CanWriteResize(Perm p) => (p & (Perm.Write | Perm.Resize)) == (Perm.Write | Perm.Resize);

    /// <summary>
    /// preallocate's handle_write: true if a write-zeroes request is already satisfied by preallocated
    /// zeroes. With fixed node sizes a request never ends past <c>data_end</c>, so this returns false
    /// after refreshing the bookkeeping.
    /// </summary>
    private bool HandleWrite(long offset, long bytes, bool wantMergeZero)
    {
        var file = File;
        if (!CanWriteResize(file.Perm)) return false;
        if (dataEnd < 0)
        {
            dataEnd = file.Node.Length;
            if (fileEnd < 0) fileEnd = dataEnd;
        }
        long end = offset + bytes;
        if (end <= dataEnd) return false;
        // Unreachable while node sizes are fixed: a request past data_end is refused before it gets here.
        dataEnd = end;
        if (zeroStart < 0 || !wantMergeZero) zeroStart = end;
        return end <= fileEnd && wantMergeZero && offset >= zeroStart;
    }

    /// <summary>Drops preallocation past the data; with fixed sizes the file never ends past the data.</summary>
    private void TruncateToRealSize()
    {
        if (fileEnd < 0) fileEnd = Node.Child("file")?.Node.Length ?? Unknown;
        if (dataEnd < fileEnd) fileEnd = dataEnd;
    }
}
