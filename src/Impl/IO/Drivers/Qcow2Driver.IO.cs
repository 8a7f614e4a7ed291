using System.Buffers;
using System.IO.Compression;

namespace Verified.Impl.IO;

public sealed partial class Qcow2Driver
{
    /// <summary>Reads the image file; what lies past its end reads as zeroes (as the block layer zero-fills).</summary>
    private ValueTask ReadFileAsync(long offset, Memory<byte> buffer)
    {
        var file = FileNode;
        long within = Math.Clamp(file.Length - offset, 0, buffer.Length);
        if (within == buffer.Length) return file.ReadAsync(offset, buffer);
        buffer.Span[(int)within..].Clear();
        return within == 0 ? ValueTask.CompletedTask : file.ReadAsync(offset, buffer[..(int)within]);
    }

    /// <summary>Writes the image file, growing it when the write runs past its end.</summary>
    private ValueTask WriteFileAsync(long offset, ReadOnlyMemory<byte> data)
    {
        var file = FileNode;
        if (offset + data.Length > file.Length && !file.Driver.Grow(offset + data.Length))
            throw new BlockIOException(Errnos.ENOSPC, $"qcow2 '{Node.Name}': its file node '{file.Name}' cannot grow");
        return file.WriteAsync(offset, data);
    }

    /// <summary>
    /// Without the metadata lock: looks up a cached entry and, for a data cluster, how many bytes from
    /// <paramref name="offset"/> (at most <paramref name="max"/>) lie in host clusters following it contiguously
    /// (with <paramref name="needCopied"/>, only clusters this image owns alone). For a data or compressed
    /// cluster it registers a lock-free request (<see cref="ExitData"/> ends it). False when the table is not
    /// cached or freeing is under way. One monitor entry per request.
    /// </summary>
    private bool TryLookup(long offset, int max, bool needCopied, out ulong entry, out int run, out bool entered)
    {
        entered = false;
        run = 0;
        lock (sync)
        {
            if (!TryEntry(offset, out entry)) return false;
            var kind = KindOf(entry);
            if (kind is not (ClusterKind.Data or ClusterKind.Compressed)) return true;
            if (Volatile.Read(ref draining)) return false;
            Interlocked.Increment(ref inflight);
            entered = true;
            if (kind == ClusterKind.Data && (!needCopied || (entry & Copied) != 0)) run = RunLocked(offset, entry, max, needCopied);
            return true;
        }
    }

    /// <summary>The same under <see cref="metaLock"/>, loading the table if needed (freeing cannot be under way: it holds the lock).</summary>
    private async ValueTask<(ulong Entry, bool Entered)> LookupLockedAsync(long offset)
    {
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            ulong e = await EntryAsync(offset).ConfigureAwait(false);
            bool entered = KindOf(e) is ClusterKind.Data or ClusterKind.Compressed;
            if (entered) Interlocked.Increment(ref inflight);
            return (e, entered);
        }
        finally
        {
            metaLock.Release();
        }
    }

    /// <summary>How many bytes from <paramref name="offset"/> (at most <paramref name="max"/>) are data in host clusters following <paramref name="entry"/>'s contiguously.</summary>
    private int RunLocked(long offset, ulong entry, int max, bool needCopied)
    {
        int inOff = (int)(offset & (clusterSize - 1));
        int run = Math.Min(max, clusterSize - inOff);
        long host = (long)(entry & OffsetMask);
        while (run < max)
        {
            long next = offset + run;
            if (!TryEntry(next, out var e) || KindOf(e) != ClusterKind.Data || (needCopied && (e & Copied) == 0)) break;
            if ((long)(e & OffsetMask) != host + inOff + run) break;
            run = Math.Min(max, run + clusterSize);
        }
        return run;
    }

    private int ContiguousRun(long offset, ulong entry, int max, bool needCopied)
    {
        lock (sync) return RunLocked(offset, entry, max, needCopied);
    }

    /// <inheritdoc/>
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            long pos = offset + done;
            int inOff = (int)(pos & (clusterSize - 1));
            if (!TryLookup(pos, buffer.Length - done, needCopied: false, out var entry, out int run, out bool entered))
                (entry, entered) = await LookupLockedAsync(pos).ConfigureAwait(false);
            int n = Math.Min(buffer.Length - done, clusterSize - inOff);
            var dst = buffer.Slice(done, n);
            try
            {
                switch (KindOf(entry))
                {
                    case ClusterKind.Data:
                        n = run > 0 ? run : ContiguousRun(pos, entry, buffer.Length - done, needCopied: false);
                        await ReadFileAsync((long)(entry & OffsetMask) + inOff, buffer.Slice(done, n)).ConfigureAwait(false);
                        break;
                    case ClusterKind.Compressed:
                        await ReadCompressedAsync(entry, inOff, dst).ConfigureAwait(false);
                        break;
                    case ClusterKind.Zero:
                        dst.Span.Clear();
                        break;
                    default:
                        await ReadBackingAsync(pos, dst).ConfigureAwait(false);
                        break;
                }
            }
            finally
            {
                if (entered) ExitData();
            }
            done += n;
        }
    }

    /// <summary>An unallocated range: the backing child's bytes (zeroes past its end), or zeroes without one.</summary>
    private ValueTask ReadBackingAsync(long pos, Memory<byte> dst)
    {
        var backing = Backing;
        long within = backing is null ? 0 : Math.Clamp(backing.Length - pos, 0, dst.Length);
        if (within < dst.Length) dst.Span[(int)within..].Clear();
        return within == 0 ? ValueTask.CompletedTask : backing!.ReadAsync(pos, dst[..(int)within]);
    }

    private async ValueTask ReadCompressedAsync(ulong entry, int inOff, Memory<byte> dst)
    {
        var cluster = ArrayPool<byte>.Shared.Rent(clusterSize);
        try
        {
            await DecompressAsync(entry, cluster.AsMemory(0, clusterSize)).ConfigureAwait(false);
            cluster.AsMemory(inOff, dst.Length).CopyTo(dst);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(cluster);
        }
    }

    /// <summary>Inflates a compressed cluster (raw deflate, QEMU's zlib without header) into a whole cluster; a short stream is an I/O error.</summary>
    private async ValueTask DecompressAsync(ulong entry, Memory<byte> cluster)
    {
        var (offset, bytes) = CompressedExtent(entry);
        var src = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            await ReadFileAsync(offset, src.AsMemory(0, bytes)).ConfigureAwait(false);
            using var z = new DeflateStream(new MemoryStream(src, 0, bytes), CompressionMode.Decompress);
            int got;
            try
            {
                got = z.ReadAtLeast(cluster.Span, cluster.Length, throwOnEndOfStream: false);
            }
            catch (InvalidDataException e)
            {
                throw new BlockIOException($"qcow2 '{Node.Name}': bad compressed cluster at {offset}", e);
            }
            if (got < cluster.Length) throw new BlockIOException(Errnos.EIO, $"qcow2 '{Node.Name}': compressed cluster at {offset} inflates to {got} bytes, not {cluster.Length}");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(src);
        }
    }

    /// <inheritdoc/>
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        if (Node.ReadOnly) throw new BlockIOException(Errnos.EPERM, $"qcow2 node '{Node.Name}' is read-only");
        int done = 0;
        while (done < data.Length)
        {
            long pos = offset + done;
            int n;
            if (TryLookup(pos, data.Length - done, needCopied: true, out var entry, out n, out bool entered) && entered && n > 0)
            {
                try
                {
                    await WriteFileAsync((long)(entry & OffsetMask) + (pos & (clusterSize - 1)), data.Slice(done, n)).ConfigureAwait(false);
                }
                finally
                {
                    ExitData();
                }
            }
            else
            {
                if (entered) ExitData();
                n = Math.Min(data.Length - done, clusterSize - (int)(pos & (clusterSize - 1)));
                // False: the cluster got allocated meanwhile (by this request's wait or another's): look again.
                if (!await AllocatingWriteAsync(pos, data.Slice(done, n)).ConfigureAwait(false)) continue;
            }
            done += n;
        }
        if ((flags & WriteFlags.Fua) != 0) await FlushAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// A write into one cluster that is not a plain allocated one, in three steps. Under the metadata lock:
    /// a host cluster (a new one, or its preallocated zero cluster) and a writable L2 table (pinned) are got,
    /// and the cluster is registered as being allocated (later writers to it wait; freeing waits, as for any
    /// lock-free request). Without the lock: the data and the old contents around it (backing, zeroes, the
    /// decompressed or shared old cluster) are written. Under the monitor only: the L2 entry is set. What the
    /// entry pointed to before is released afterwards, once that entry is on disk. Returns false when the
    /// cluster was allocated by someone else meanwhile (the caller looks it up again).
    /// </summary>
    private async ValueTask<bool> AllocatingWriteAsync(long pos, ReadOnlyMemory<byte> chunk)
    {
        long cluster = pos >> clusterBits;
        int inOff = (int)(pos & (clusterSize - 1));
        ulong old;
        ClusterKind kind;
        long host;
        bool fresh, reuse;
        Table table;
        TaskCompletionSource done;
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            old = await EntryAsync(pos).ConfigureAwait(false);
            kind = KindOf(old);
            if (kind == ClusterKind.Data && (old & Copied) != 0) return false;
            Task? busy;
            bool changed;
            lock (sync)
            {
                // One look at both: an allocation finishing between them would otherwise be missed, and repeated.
                busy = allocating.TryGetValue(cluster, out var other) ? other.Task : null;
                changed = !TryEntry(pos, out var now) || now != old;
            }
            if (changed) return false;
            if (busy is not null)
            {
                metaLock.Release();
                try
                {
                    await busy.ConfigureAwait(false);
                }
                finally
                {
                    await metaLock.WaitAsync().ConfigureAwait(false);
                }
                return false;
            }
            reuse = kind == ClusterKind.Zero && (old & OffsetMask) != 0 && (old & Copied) != 0;
            (host, fresh) = reuse ? ((long)(old & OffsetMask), false) : await AllocateClusterAsync().ConfigureAwait(false);
            table = await WritableL2Async(pos).ConfigureAwait(false);
            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (sync)
            {
                table.Pins++;
                allocating[cluster] = done;
                Interlocked.Increment(ref inflight);
            }
        }
        finally
        {
            metaLock.Release();
        }
        bool written = false;
        try
        {
            await WriteNewClusterAsync(pos - inOff, old, kind, host, fresh, inOff, chunk).ConfigureAwait(false);
            written = true;
        }
        finally
        {
            lock (sync)
            {
                if (written)
                {
                    table.Entries![(int)(cluster & (L2Entries - 1))] = (ulong)host | Copied;
                    table.Dirty = true;
                }
                table.Pins--;
                allocating.Remove(cluster);
            }
            ExitData();
            done.SetResult();
            if (!written && !reuse) await ForgetClusterAsync(host).ConfigureAwait(false);
        }
        if (!reuse && (kind == ClusterKind.Compressed || (old & OffsetMask) != 0))
        {
            await metaLock.WaitAsync().ConfigureAwait(false);
            try
            {
                await ReleaseAfterAsync(table, [old], discardFile: false).ConfigureAwait(false);
            }
            finally
            {
                metaLock.Release();
            }
        }
        return true;
    }

    /// <summary>Writes a newly allocated cluster: the data alone when the rest already reads right, else the whole cluster with its old contents around the data.</summary>
    private async ValueTask WriteNewClusterAsync(long clusterStart, ulong old, ClusterKind kind, long host, bool fresh, int inOff, ReadOnlyMemory<byte> chunk)
    {
        bool readsZero = kind == ClusterKind.Zero || (kind == ClusterKind.Unallocated && Backing is null);
        bool whole = inOff == 0 && chunk.Length == clusterSize;
        if (whole || (fresh && readsZero))
        {
            // A new cluster past the end of the file: extend the file over all of it first (QEMU's
            // handle_alloc_space), so the writes that fill the rest of it do not each extend the file,
            // which the kernel serialises (O_DIRECT extending writes above all).
            if (!whole) await ExtendFileAsync(host).ConfigureAwait(false);
            await WriteFileAsync(host + inOff, chunk).ConfigureAwait(false);
            return;
        }
        var buf = ArrayPool<byte>.Shared.Rent(clusterSize);
        try
        {
            var data = buf.AsMemory(0, clusterSize);
            await OldContentsAsync(clusterStart, old, kind, data).ConfigureAwait(false);
            chunk.CopyTo(data[inOff..]);
            await WriteFileAsync(host, data).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>Makes the file reach the end of the new cluster at <paramref name="host"/> with zeroes (fallocate), when it does not yet.</summary>
    private async ValueTask ExtendFileAsync(long host)
    {
        var file = FileNode;
        long end = host + clusterSize;
        if (file.Length >= end || !file.Driver.Grow(end)) return;
        try
        {
            await file.WriteZeroesAsync(host, clusterSize).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // Only an optimisation: the data write that follows extends the file by itself.
        }
    }

    /// <summary>Gives back a cluster allocated for a write that failed (nothing points to it); a failure here only leaks it.</summary>
    private async ValueTask ForgetClusterAsync(long host)
    {
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await AddRefAsync(host >> clusterBits, -1).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // Leaked: harmless, qemu-img check -r leaks reclaims it.
        }
        finally
        {
            metaLock.Release();
        }
    }

    /// <summary>What a cluster read as before a partial write: backing data, zeroes, or its old (compressed or shared) contents.</summary>
    private async ValueTask OldContentsAsync(long clusterStart, ulong entry, ClusterKind kind, Memory<byte> cluster)
    {
        switch (kind)
        {
            case ClusterKind.Compressed:
                await DecompressAsync(entry, cluster).ConfigureAwait(false);
                break;
            case ClusterKind.Data:
                await ReadFileAsync((long)(entry & OffsetMask), cluster).ConfigureAwait(false);
                break;
            case ClusterKind.Zero:
                cluster.Span.Clear();
                break;
            default:
                await ReadBackingAsync(clusterStart, cluster).ConfigureAwait(false);
                break;
        }
    }

    private void SetEntry(Table table, long pos, ulong entry)
    {
        lock (sync)
        {
            table.Entries![(int)((pos >> clusterBits) & (L2Entries - 1))] = entry;
            table.Dirty = true;
        }
    }

    /// <summary>
    /// The L2 table covering <paramref name="pos"/>, ready to change: a new one when the L1 entry is empty,
    /// a private copy when the table is shared with a snapshot. Either way, as QEMU's l2_allocate, the
    /// refcounts go to disk, then the table, then its L1 entry, before the table is used (so the image file
    /// holds the table's cluster at once, as QEMU's does). Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask<Table> WritableL2Async(long pos)
    {
        int l1Index = (int)(pos >> (clusterBits + l2Bits));
        ulong l1e = l1[l1Index];
        long l2Offset = (long)(l1e & OffsetMask);
        if (l2Offset != 0 && (l1e & Copied) != 0) return await LoadL2Async(l2Offset).ConfigureAwait(false);
        var entries = new ulong[L2Entries];
        if (l2Offset != 0) (await LoadL2Async(l2Offset).ConfigureAwait(false)).Entries!.CopyTo(entries, 0);
        var (offset, _) = await AllocateClusterAsync().ConfigureAwait(false);
        var table = new Table(offset) { Entries = entries, Dirty = true };
        await InsertAsync(l2Cache, table, l2CacheMax).ConfigureAwait(false);
        // Each step is flushed before the next, so the order survives a power cut (QEMU's cache flushes do the same).
        if (await WriteDirtyAsync(refCache).ConfigureAwait(false)) await FileNode.FlushAsync().ConfigureAwait(false);
        await WriteTableAsync(table).ConfigureAwait(false);
        await FileNode.FlushAsync().ConfigureAwait(false);
        lock (sync) l1[l1Index] = (ulong)offset | Copied;
        await WriteL1EntryAsync(l1Index).ConfigureAwait(false);
        // Copy-on-write of a table a snapshot shares: the copy and the new L1 entry are on disk before the old table's count falls.
        if (l2Offset != 0) await AddRefAsync(l2Offset >> clusterBits, -1).ConfigureAwait(false);
        return table;
    }

    /// <summary>
    /// Releases what <paramref name="oldEntries"/> pointed to, after the changed L2 table is on disk (and the
    /// refcounts it relies on before it), waiting for lock-free requests first. Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask ReleaseAfterAsync(Table table, IReadOnlyList<ulong> oldEntries, bool discardFile)
    {
        await WriteDirtyAsync(refCache).ConfigureAwait(false);
        bool cached;
        lock (sync) cached = l2Cache.TryGetValue(table.Offset, out var cur) && ReferenceEquals(cur, table);
        if (cached && table.Dirty) await WriteTableAsync(table).ConfigureAwait(false);
        await DrainAsync().ConfigureAwait(false);
        try
        {
            foreach (var e in oldEntries)
            {
                await ReleaseEntryAsync(e).ConfigureAwait(false);
                long host = (long)(e & OffsetMask);
                if (discardFile && KindOf(e) == ClusterKind.Data && host < FileNode.Length && await RefcountAsync(host >> clusterBits).ConfigureAwait(false) == 0)
                    await DiscardFileAsync(host, Math.Min(clusterSize, FileNode.Length - host)).ConfigureAwait(false);
            }
        }
        finally
        {
            EndDrain();
        }
    }

    /// <summary>Passes a freed cluster's discard to the file (QEMU's pass-discard-request); advisory, so failures are ignored.</summary>
    private async ValueTask DiscardFileAsync(long offset, long length)
    {
        try
        {
            await FileNode.DiscardAsync(offset, length).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The cluster is free either way; the file keeps its bytes.
        }
    }
}
