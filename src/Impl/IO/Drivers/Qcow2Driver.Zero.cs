using System.Diagnostics;

namespace Verified.Impl.IO;

public sealed partial class Qcow2Driver
{
    /// <inheritdoc/>
    /// <remarks>
    /// Whole clusters become zero clusters (version 3): with MAY_UNMAP their host clusters are released,
    /// without it an allocated cluster keeps its host cluster, flagged zero (QEMU's zero_in_l2_slice).
    /// Partial clusters are written with zeroes unless they already read as zeroes. Version 2 has no zero
    /// clusters: zeroes are written.
    /// </remarks>
    public override async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        if (Node.ReadOnly) throw new BlockIOException(Errnos.EPERM, $"qcow2 node '{Node.Name}' is read-only");
        if (header.Version < 3)
        {
            await base.WriteZeroesAsync(offset, length, flags & ~WriteFlags.Fua).ConfigureAwait(false);
        }
        else if (length > 0)
        {
            bool unmap = (flags & WriteFlags.MayUnmap) != 0 && DriverOptions.UnmapAllowed(Node);
            long end = offset + length;
            long first = AlignUp(offset), last = end == header.Size ? AlignUp(end) : end & ~(long)(clusterSize - 1);
            if (first >= last)
            {
                await ZeroPartialAsync(offset, end).ConfigureAwait(false);
            }
            else
            {
                await ZeroPartialAsync(offset, first).ConfigureAwait(false);
                await ChangeClustersAsync(first, last, discard: false, unmap).ConfigureAwait(false);
                await ZeroPartialAsync(last, Math.Min(end, header.Size)).ConfigureAwait(false);
            }
        }
        if ((flags & WriteFlags.Fua) != 0) await FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Zeroes [<paramref name="from"/>, <paramref name="to"/>) within one cluster by writing, unless it already reads as zeroes.</summary>
    private async ValueTask ZeroPartialAsync(long from, long to)
    {
        if (to <= from) return;
        Debug.Assert((from >> clusterBits) == ((to - 1) >> clusterBits));
        var (entry, entered) = await LookupLockedAsync(from).ConfigureAwait(false);
        if (entered) ExitData();
        var kind = KindOf(entry);
        if (kind == ClusterKind.Zero || (kind == ClusterKind.Unallocated && Backing is null)) return;
        await WriteAsync(from, new byte[to - from], WriteFlags.None).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Only with <c>discard=unmap</c> (else the block layer drops discards). Partial clusters are left
    /// alone, except the last one of the image. A discarded cluster reads as zeroes afterwards where a
    /// backing child could otherwise show through (version 3; QEMU's discard_in_l2_slice), and its host
    /// cluster is released and discarded in the file.
    /// </remarks>
    public override async ValueTask DiscardAsync(long offset, long length)
    {
        if (length <= 0 || !DriverOptions.UnmapAllowed(Node)) return;
        if (Node.ReadOnly) throw new BlockIOException(Errnos.EPERM, $"qcow2 node '{Node.Name}' is read-only");
        long end = offset + length;
        long first = AlignUp(offset), last = end == header.Size ? AlignUp(end) : end & ~(long)(clusterSize - 1);
        if (first < last) await ChangeClustersAsync(first, last, discard: true, unmap: true).ConfigureAwait(false);
    }

    private long AlignUp(long x) => (x + clusterSize - 1) & ~(long)(clusterSize - 1);

    /// <summary>Sets the entries of whole clusters [<paramref name="first"/>, <paramref name="last"/>) to zero or unallocated, one L2 table at a time.</summary>
    private async ValueTask ChangeClustersAsync(long first, long last, bool discard, bool unmap)
    {
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            long l2Span = 1L << (clusterBits + l2Bits);
            for (long start = first; start < last;)
            {
                long stop = Math.Min(last, (start & ~(l2Span - 1)) + l2Span);
                await ChangeInTableAsync(start, stop, discard, unmap).ConfigureAwait(false);
                start = stop;
            }
        }
        finally
        {
            metaLock.Release();
        }
    }

    private async ValueTask ChangeInTableAsync(long start, long stop, bool discard, bool unmap)
    {
        Table? table = null;
        var released = new List<ulong>();
        for (long pos = start; pos < stop; pos += clusterSize)
        {
            ulong old = await EntryAsync(pos).ConfigureAwait(false);
            var kind = KindOf(old);
            bool hasHost = (old & OffsetMask) != 0 || kind == ClusterKind.Compressed;
            ulong next;
            if (discard)
            {
                next = header.Version >= 3 && (Backing is not null || kind != ClusterKind.Unallocated) ? ZeroFlag : 0;
            }
            else if (hasHost && !unmap && kind != ClusterKind.Compressed && (old & Copied) != 0)
            {
                next = (old & (OffsetMask | Copied)) | ZeroFlag; // keeps its preallocated host cluster
            }
            else
            {
                next = ZeroFlag;
            }
            if (next == old) continue;
            bool keepsHost = (next & OffsetMask) != 0;
            table ??= await WritableL2Async(pos).ConfigureAwait(false);
            SetEntry(table, pos, next);
            if (hasHost && !keepsHost) released.Add(old);
        }
        if (table is not null && released.Count > 0) await ReleaseAfterAsync(table, released, discardFile: discard).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask<(bool Allocated, long Bytes)> IsAllocatedAsync(long offset, long length)
    {
        var (kind, bytes, _) = await BlockStatusAsync(offset, length).ConfigureAwait(false);
        return (kind != ClusterKind.Unallocated, bytes);
    }

    /// <summary>
    /// What the image holds at <paramref name="offset"/>: the kind of cluster, for how many bytes (at least 1,
    /// at most <paramref name="length"/>) that stays the same (for data: in contiguous host clusters), and the
    /// host offset of the first byte (data only; else -1). qemu-img map's view of one layer.
    /// </summary>
    public async ValueTask<(ClusterKind Kind, long Bytes, long HostOffset)> BlockStatusAsync(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            ulong e = await EntryAsync(offset).ConfigureAwait(false);
            var kind = KindOf(e);
            long inOff = offset & (clusterSize - 1);
            long host = kind == ClusterKind.Data ? (long)(e & OffsetMask) + inOff : -1;
            long bytes = Math.Min(length, clusterSize - inOff);
            while (bytes < length)
            {
                ulong n = await EntryAsync(offset + bytes).ConfigureAwait(false);
                if (KindOf(n) != kind || (kind == ClusterKind.Data && (long)(n & OffsetMask) != host + bytes)) break;
                bytes = Math.Min(length, bytes + clusterSize);
            }
            return (kind, bytes, host);
        }
        finally
        {
            metaLock.Release();
        }
    }
}
