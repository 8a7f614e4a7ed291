using Verified.Impl.IO;

namespace Verified.Impl.Graph;

public sealed partial class BlockNode
{
    /// <summary>The node's size in bytes.</summary>
    public long Length => Driver.Length;

    /// <summary>Reads at a byte offset; the range must lie within the node.</summary>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        return Driver.ReadAsync(offset, buffer);
    }

    /// <summary>Writes at a byte offset; the range must lie within the node.</summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None)
    {
        CheckRange(offset, data.Length);
        var write = Driver.WriteAsync(offset, data, flags);
        return NoBitmaps ? write : MarkingDirty(write, offset, data.Length);
    }

    /// <summary>QEMU's bdrv_co_write_req_finish: once a write-type request completes, every enabled bitmap of the node records it.</summary>
    private async ValueTask MarkingDirty(ValueTask request, long offset, long length)
    {
        await request.ConfigureAwait(false);
        foreach (var b in BitmapList)
        {
            if (b.Enabled && !b.Frozen) b.Bits?.Mark(offset, length);
        }
        foreach (var j in JobBitmaps) j.Mark(offset, length);
    }

    private bool NoBitmaps => BitmapList.Count == 0 && JobBitmaps.Count == 0;

    /// <summary>Flushes.</summary>
    public ValueTask FlushAsync() => Driver.FlushAsync();

    /// <summary>Discards a range.</summary>
    public ValueTask DiscardAsync(long offset, long length)
    {
        CheckRange(offset, length);
        var discard = Driver.DiscardAsync(offset, length);
        // QEMU's bdrv_co_pdiscard returns before the write bookkeeping on a node that may not unmap.
        return NoBitmaps || !DriverOptions.UnmapAllowed(this) ? discard : MarkingDirty(discard, offset, length);
    }

    /// <summary>Writes zeroes over a range.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None)
    {
        CheckRange(offset, length);
        var zeroes = Driver.WriteZeroesAsync(offset, length, flags);
        return NoBitmaps ? zeroes : MarkingDirty(zeroes, offset, length);
    }

    /// <summary>What the range holds (hole, zeroes) and for how many bytes; the range must lie within the node.</summary>
    public ValueTask<RangeStatus> StatusAsync(long offset, long length)
    {
        CheckRange(offset, length);
        return length == 0 ? ValueTask.FromResult(new RangeStatus(0, false, false)) : Driver.StatusAsync(offset, length);
    }

    /// <summary>Backing chains deeper than this are not followed by <see cref="AllocationDepthAsync"/> (a bound; QEMU has none).</summary>
    public const int AllocationChainMax = 1024;

    /// <summary>
    /// QEMU's allocation depth (the <c>qemu:allocation-depth</c> NBD context): 1 when this node's own
    /// layer holds the range, 2 when its backing does, and so on; 0 when no layer does. Filters are
    /// looked through. A layer that cannot tell (no <see cref="IAllocationStatus"/>) holds everything,
    /// as a raw image does in QEMU. Returns the depth and for how many bytes it holds (at least 1).
    /// </summary>
    public async ValueTask<(int Depth, long Bytes)> AllocationDepthAsync(long offset, long length)
    {
        CheckRange(offset, length);
        var node = this;
        for (int depth = 1; depth <= AllocationChainMax; depth++)
        {
            for (int hop = 0; hop < AllocationChainMax && Rules.PermRules.IsFilter(node.DriverName) && (node.Child("file") ?? node.Child("image")) is { } f; hop++)
                node = f.Node;
            if (node.Driver is not IAllocationStatus a) return (depth, length);
            var (allocated, bytes) = await a.IsAllocatedAsync(offset, length).ConfigureAwait(false);
            if (allocated) return (depth, bytes);
            length = bytes;
            if (node.Child("backing") is not { } backing) return (0, length);
            node = backing.Node;
        }
        return (0, length);
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new BlockIOException(Errnos.EINVAL, $"request [{offset}, +{length}) outside node '{Name}' of {Length} bytes");
    }
}
