using System.Buffers.Binary;
using System.Diagnostics;
using Verified.Impl.Formats;

namespace Verified.Impl.IO;

public sealed partial class Qcow2Driver
{
    /// <summary>Most clusters one allocation scans before giving up (a bound on a corrupt refcount structure).</summary>
    private const long ScanClustersMax = 1L << 40;

    private long RefBlockEntries => 1L << refBlockBits;

    /// <summary>A cluster's refcount, loading its refcount block (0 when it has none). Holds <see cref="metaLock"/>.</summary>
    private async ValueTask<ulong> RefcountAsync(long cluster)
    {
        var block = await RefBlockAsync(cluster >> refBlockBits, create: false).ConfigureAwait(false);
        if (block is null) return 0;
        lock (sync) return GetRef(block.Raw!, (int)(cluster & (RefBlockEntries - 1)));
    }

    /// <summary>Adds <paramref name="delta"/> to a cluster's refcount (in the cache; written back later). Holds <see cref="metaLock"/>.</summary>
    private async ValueTask AddRefAsync(long cluster, int delta)
    {
        var block = await RefBlockAsync(cluster >> refBlockBits, create: true).ConfigureAwait(false);
        lock (sync)
        {
            int i = (int)(cluster & (RefBlockEntries - 1));
            ulong v = GetRef(block!.Raw!, i);
            ulong max = header.RefcountOrder == 6 ? ulong.MaxValue : (1UL << (1 << header.RefcountOrder)) - 1;
            if (delta < 0 && v < (ulong)-delta) throw new BlockIOException(Errnos.EIO, $"qcow2 '{Node.Name}': refcount of cluster {cluster} would fall below zero (image corrupt)");
            if (delta > 0 && max - v < (ulong)delta) throw new BlockIOException(Errnos.EIO, $"qcow2 '{Node.Name}': refcount of cluster {cluster} would overflow");
            SetRef(block.Raw!, i, delta < 0 ? v - (ulong)-delta : v + (ulong)delta);
            block.Dirty = true;
            if (delta < 0 && v + (ulong)delta == 0 && cluster < freeHint) freeHint = cluster;
        }
    }

    private ulong GetRef(byte[] raw, int i)
    {
        int order = header.RefcountOrder;
        switch (order)
        {
            case 4: return BinaryPrimitives.ReadUInt16BigEndian(raw.AsSpan(i * 2));
            case 5: return BinaryPrimitives.ReadUInt32BigEndian(raw.AsSpan(i * 4));
            case 6: return BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            case 3: return raw[i];
            default:
                int bits = 1 << order, perByte = 8 / bits;
                return (ulong)((raw[i / perByte] >> (i % perByte * bits)) & ((1 << bits) - 1));
        }
    }

    private void SetRef(byte[] raw, int i, ulong v)
    {
        int order = header.RefcountOrder;
        switch (order)
        {
            case 4: BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(i * 2), (ushort)v); break;
            case 5: BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(i * 4), (uint)v); break;
            case 6: BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), v); break;
            case 3: raw[i] = (byte)v; break;
            default:
                int bits = 1 << order, perByte = 8 / bits, shift = i % perByte * bits, mask = ((1 << bits) - 1) << shift;
                raw[i / perByte] = (byte)((raw[i / perByte] & ~mask) | (((int)v << shift) & mask));
                break;
        }
    }

    /// <summary>The refcount block of block index <paramref name="index"/>, loaded or (with <paramref name="create"/>) made. Holds <see cref="metaLock"/>.</summary>
    private async ValueTask<Table?> RefBlockAsync(long index, bool create)
    {
        long offset = index < refTable.Length ? (long)(refTable[index] & OffsetMask) : 0;
        if (offset == 0) return create ? await NewRefBlockAsync(index).ConfigureAwait(false) : null;
        lock (sync)
        {
            if (refCache.TryGetValue(offset, out var hit))
            {
                hit.LastUse = ++useClock;
                return hit;
            }
        }
        var raw = new byte[clusterSize];
        await ReadFileAsync(offset, raw).ConfigureAwait(false);
        var t = new Table(offset) { Raw = raw };
        await InsertAsync(refCache, t, refCacheMax).ConfigureAwait(false);
        return t;
    }

    /// <summary>
    /// Makes the missing refcount block <paramref name="index"/>: it lives in the first cluster it covers (free,
    /// since no block counted it) and counts itself. Written, then published in the refcount table (on disk
    /// at once), so a reader of the file never meets a table entry pointing at garbage.
    /// </summary>
    private async ValueTask<Table> NewRefBlockAsync(long index)
    {
        if (index >= refTable.Length)
        {
            await GrowRefTableAsync(index).ConfigureAwait(false);
            // The new table's own region may be the block asked for: it exists now.
            if (refTable[index] != 0) return (await RefBlockAsync(index, create: false).ConfigureAwait(false))!;
        }
        Debug.Assert(refTable[index] == 0);
        long cluster = index << refBlockBits;
        var raw = new byte[clusterSize];
        SetRef(raw, 0, 1);
        long offset = cluster << clusterBits;
        await WriteFileAsync(offset, raw).ConfigureAwait(false);
        var entry = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(entry, (ulong)offset);
        await WriteFileAsync(header.RefTableOffset + (index * 8), entry).ConfigureAwait(false);
        lock (sync)
        {
            refTable[index] = (ulong)offset;
            frontier = Math.Max(frontier, cluster + 1);
        }
        var t = new Table(offset) { Raw = raw };
        await InsertAsync(refCache, t, refCacheMax).ConfigureAwait(false);
        return t;
    }

    /// <summary>
    /// Moves the refcount table to a larger one covering block <paramref name="needed"/>: a new region past
    /// everything allocated holds one refcount block (counting the region) and the new table; both are
    /// written, then the header points to them, then the old table's clusters are released.
    /// </summary>
    private async ValueTask GrowRefTableAsync(long needed)
    {
        // The region's block range must be wholly free: past everything the file holds, and without a
        // refcount block of its own (after a crash, clusters past the file's end may be counted).
        long block = (frontier + RefBlockEntries - 1) >> refBlockBits;
        while (block < refTable.Length && refTable[block] != 0) block++;
        long entries = Math.Max(Math.Max(needed, block) + 1, refTable.Length * 2L);
        long tableClusters = (entries * 8 + clusterSize - 1) >> clusterBits;
        entries = tableClusters * (clusterSize / 8);
        if (tableClusters + 1 > RefBlockEntries || tableClusters * clusterSize > Qcow2Header.RefTableBytesMax)
            throw new BlockIOException(Errnos.EFBIG, $"qcow2 '{Node.Name}': the refcount table cannot grow further");
        long first = block << refBlockBits;
        var raw = new byte[clusterSize];
        for (int i = 0; i <= tableClusters; i++) SetRef(raw, i, 1);
        var table = new ulong[entries];
        refTable.CopyTo(table, 0);
        table[block] = (ulong)(first << clusterBits);
        var tableRaw = new byte[tableClusters * clusterSize];
        for (long i = 0; i < entries; i++) BinaryPrimitives.WriteUInt64BigEndian(tableRaw.AsSpan((int)(i * 8)), table[i]);
        await WriteFileAsync(first << clusterBits, raw).ConfigureAwait(false);
        await WriteFileAsync((first + 1) << clusterBits, tableRaw).ConfigureAwait(false);
        await FileNode.FlushAsync().ConfigureAwait(false);
        var fields = new byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)((first + 1) << clusterBits));
        BinaryPrimitives.WriteUInt32BigEndian(fields.AsSpan(8), (uint)tableClusters);
        await WriteFileAsync(Qcow2Header.RefTableOffsetField, fields).ConfigureAwait(false);
        long oldOffset = header.RefTableOffset, oldClusters = header.RefTableClusters;
        lock (sync)
        {
            refTable = table;
            header = header with { RefTableOffset = (first + 1) << clusterBits, RefTableClusters = (int)tableClusters };
            frontier = Math.Max(frontier, first + tableClusters + 1);
        }
        await InsertAsync(refCache, new Table(first << clusterBits) { Raw = raw }, refCacheMax).ConfigureAwait(false);
        for (long c = 0; c < oldClusters; c++) await AddRefAsync((oldOffset >> clusterBits) + c, -1).ConfigureAwait(false);
    }

    /// <summary>
    /// Allocates one cluster (refcount 0 → 1, in the cache) and says whether it lies past everything the file
    /// held (so it reads as zeroes without being written). Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask<(long Offset, bool Fresh)> AllocateClusterAsync()
    {
        for (long c = freeHint, scanned = 0; scanned < ScanClustersMax; c++, scanned++)
        {
            if (c == 0) continue; // the header's cluster is never free
            if (await RefcountAsync(c).ConfigureAwait(false) != 0) continue;
            // Creating the block that counts c may take c itself (a block lives in the first cluster it covers).
            await AddRefAsync(c, 0).ConfigureAwait(false);
            if (await RefcountAsync(c).ConfigureAwait(false) != 0) continue;
            await AddRefAsync(c, 1).ConfigureAwait(false);
            bool fresh;
            lock (sync)
            {
                fresh = c >= frontier;
                frontier = Math.Max(frontier, c + 1);
                freeHint = c + 1;
            }
            return (c << clusterBits, fresh);
        }
        throw new BlockIOException(Errnos.ENOSPC, $"qcow2 '{Node.Name}': no free cluster");
    }

    /// <summary>Drops one reference from every host cluster of an L2 entry (a data cluster, or the sectors of a compressed one).</summary>
    private async ValueTask ReleaseEntryAsync(ulong entry)
    {
        switch (KindOf(entry))
        {
            case ClusterKind.Compressed:
                var (offset, bytes) = CompressedExtent(entry);
                long start = offset & ~511L, end = start + bytes + (offset & 511);
                for (long c = start >> clusterBits; c <= (end - 1) >> clusterBits; c++) await AddRefAsync(c, -1).ConfigureAwait(false);
                break;
            case ClusterKind.Data or ClusterKind.Zero when (entry & OffsetMask) != 0:
                await AddRefAsync((long)(entry & OffsetMask) >> clusterBits, -1).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>The host offset and byte length of a compressed cluster's data.</summary>
    private (long Offset, int Bytes) CompressedExtent(ulong entry)
    {
        int x = 62 - (clusterBits - 8);
        long offset = (long)(entry & ((1UL << x) - 1));
        long sectors = (long)((entry >> x) & ((1UL << (clusterBits - 8)) - 1)) + 1;
        return (offset, (int)((sectors * 512) - (offset & 511)));
    }
}
