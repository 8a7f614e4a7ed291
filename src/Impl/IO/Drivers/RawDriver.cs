using System.Globalization;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The <c>raw</c> format driver (QEMU's raw-format): its <c>file</c> child's bytes, optionally a window
/// of them given by <c>offset</c> (default 0) and <c>size</c> (default: to the end of the child).
/// </summary>
/// <remarks>
/// Requests are shifted by the offset and checked against the window (raw_adjust_offset): a read
/// outside it fails with EINVAL, a write, discard or write-zeroes with ENOSPC, and nothing leaks past
/// the window. Like raw-format it announces its reads and writes to its child as the blkdebug events
/// <c>read_aio</c> and <c>write_aio</c>, and its flushes as <c>flush_to_os</c>/<c>flush_to_disk</c>.
/// </remarks>
[BlockDriverName("raw")]
public sealed class RawDriver : BlockDriver
{
    private long offset;
    private long? size;

    /// <summary>The window's first byte in the child.</summary>
    public long Offset => offset;

    /// <inheritdoc/>
    public override long Length => size ?? Math.Max(0, (File?.Node.Length ?? 0) - offset);

    private BdrvChild? File => Node.Child("file");

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        long childSize = File?.Node.Length ?? 0;
        long off = DriverOptions.Int(Node, "offset") ?? 0;
        long? sz = DriverOptions.Int(Node, "size");
        // raw-format reads both as unsigned 64-bit numbers: a negative value is a huge one.
        ulong uoff = unchecked((ulong)off), usz = unchecked((ulong)(sz ?? 0));
        if (uoff > (ulong)childSize)
            return QmpError.Generic($"Offset ({uoff.ToString(CultureInfo.InvariantCulture)}) cannot be greater than size of the underlying file ({childSize.ToString(CultureInfo.InvariantCulture)})");
        if (sz is not null && (ulong)childSize - uoff < usz)
            return QmpError.Generic($"The sum of offset ({uoff.ToString(CultureInfo.InvariantCulture)}) and size ({usz.ToString(CultureInfo.InvariantCulture)}) has to be smaller or equal to the  actual size of the containing file ({childSize.ToString(CultureInfo.InvariantCulture)})");
        if (sz is not null && usz % DriverOptions.SectorSize != 0)
            return QmpError.Generic($"Specified size is not multiple of {DriverOptions.SectorSize}");
        offset = off;
        size = sz;
        return null;
    }

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        long at = Adjust(offset, buffer.Length, isWrite: false);
        BlkdebugDriver.DebugEvent(File, BlkdebugDriver.ReadAio);
        return File!.Node.ReadAsync(at, buffer);
    }

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        long at = Adjust(offset, data.Length, isWrite: true);
        BlkdebugDriver.DebugEvent(File, BlkdebugDriver.WriteAio);
        return File!.Node.WriteAsync(at, data, flags);
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length)
    {
        if (!DriverOptions.UnmapAllowed(Node)) return ValueTask.CompletedTask;
        return File!.Node.DiscardAsync(Adjust(offset, length, isWrite: true), length);
    }

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        if (!DriverOptions.UnmapAllowed(Node)) flags &= ~WriteFlags.MayUnmap;
        return File!.Node.WriteZeroesAsync(Adjust(offset, length, isWrite: true), length, flags);
    }

    /// <inheritdoc/>
    public override ValueTask<RangeStatus> StatusAsync(long offset, long length) =>
        File!.Node.StatusAsync(Adjust(offset, length, isWrite: false), length);

    /// <inheritdoc/>
    public override ValueTask FlushAsync()
    {
        var file = File;
        if (file is null) return ValueTask.CompletedTask;
        // bdrv_co_flush: the events go to the primary child; with cache.no-flush this node skips its own
        // flush to disk; children are flushed only where this node writes.
        BlkdebugDriver.DebugEvent(file, BlkdebugDriver.FlushToOs);
        if (!DriverOptions.CacheFlag(Node, "no-flush")) BlkdebugDriver.DebugEvent(file, BlkdebugDriver.FlushToDisk);
        return DriverOptions.Writes(file) ? file.Node.FlushAsync() : ValueTask.CompletedTask;
    }

    /// <summary>raw_adjust_offset: the child offset of a request, refused when it leaves the window.</summary>
    private long Adjust(long offset, long bytes, bool isWrite)
    {
        long limit = Length;
        if (offset < 0 || bytes < 0 || offset > limit || bytes > limit - offset)
        {
            throw new BlockIOException(isWrite ? Errnos.ENOSPC : Errnos.EINVAL,
                $"request [{offset}, +{bytes}) outside the {limit}-byte window of raw node '{Node.Name}'");
        }
        if (offset > long.MaxValue - this.offset) throw new BlockIOException(Errnos.EINVAL, "offset overflow");
        return offset + this.offset;
    }
}
