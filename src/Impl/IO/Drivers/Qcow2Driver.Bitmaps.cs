using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Impl.Formats;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// Persistent dirty bitmaps (QEMU's block/qcow2-bitmap.c): loaded at open (and marked in use in the image when
/// the node may write), stored at close, removed from the image by <c>block-dirty-bitmap-remove</c>.
/// </summary>
/// <remarks>
/// Crash safety follows QEMU: a bitmap's data clusters and table are written before a new directory, the
/// refcounts are flushed before the header points to that directory, and the old directory and tables are
/// freed only after. While the node is open every bitmap it loaded is flagged in use on disk, so a process
/// killed meanwhile leaves bitmaps QEMU (and Verified) load as inconsistent, and an image qemu-img check accepts.
/// </remarks>
public sealed partial class Qcow2Driver
{
    /// <summary>The bitmap directory as it is in the file (empty without a valid bitmaps extension).</summary>
    private List<Qcow2BitmapEntry> storedBitmaps = [];

    /// <summary>Set once close has stored the bitmaps (close runs in two steps; the second must not store again).</summary>
    private bool bitmapsClosed;

    /// <summary>
    /// At open (QEMU's qcow2_do_open after the tables): loads the stored bitmaps into the node, marks them in use
    /// when the node may write, and drops a stale bitmaps extension and unknown autoclear bits from a writable image.
    /// </summary>
    private async ValueTask<QmpError?> OpenBitmapsAsync()
    {
        bool writable = !Node.ReadOnly;
        bool headerWritten = false;
        if (header.BitmapCount > 0)
        {
            var (read, err) = await ReadDirectoryAsync().ConfigureAwait(false);
            if (read is not { } entries) return QmpError.Generic(err!);
            var onDisk = entries.ToList();
            var loaded = new List<BitmapInfo>();
            bool needsUpdate = false;
            for (int i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                var (bits, loadErr) = await LoadBitsAsync(e).ConfigureAwait(false);
                if (loadErr is not null) return QmpError.Generic(loadErr);
                bool auto = (e.Flags & Qcow2Bitmaps.FlagAuto) != 0;
                loaded.Add(new BitmapInfo(e.Name, 1L << e.GranularityBits, auto && !e.InUse, Persistent: true)
                {
                    Bits = bits, Inconsistent = e.InUse, ReadOnly = !writable,
                });
                if (!e.InUse)
                {
                    entries[i] = e with { Flags = e.Flags | Qcow2Bitmaps.FlagInUse };
                    needsUpdate = true;
                }
            }
            storedBitmaps = onDisk;
            if (needsUpdate && writable)
            {
                await MarkInUseAsync(entries).ConfigureAwait(false);
                headerWritten = true;
            }
            Node.BitmapList.AddRange(loaded);
        }
        bool staleHeader = header.Version >= 3 && (header.BitmapsExtensionStale || (header.Autoclear & ~Qcow2Header.AutoclearKnown) != 0);
        if (writable && staleHeader && !headerWritten)
        {
            await WriteHeaderAsync(header.Autoclear & Qcow2Header.AutoclearKnown, header.BitmapCount, header.BitmapDirectoryOffset, header.BitmapDirectorySize).ConfigureAwait(false);
            header = header with { BitmapsExtensionStale = false };
        }
        return null;
    }

    /// <summary>Reads and checks the directory the header points to (QEMU's bitmap_list_load).</summary>
    private async ValueTask<(List<Qcow2BitmapEntry>? Entries, string? Error)> ReadDirectoryAsync()
    {
        if (header.BitmapDirectorySize == 0) return (null, "Requested bitmap directory size is zero");
        if (header.BitmapDirectorySize > Qcow2Bitmaps.DirectoryBytesMax) return (null, "Requested bitmap directory size is too big");
        var dir = new byte[header.BitmapDirectorySize];
        try
        {
            await ReadFileAsync(header.BitmapDirectoryOffset, dir).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            return (null, $"Failed to read bitmap directory: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
        }
        return Qcow2Bitmaps.ParseDirectory(dir, header.BitmapCount, clusterSize, header.Size);
    }

    /// <summary>A stored bitmap's contents (QEMU's load_bitmap): empty for one in use, whose data is stale.</summary>
    private async ValueTask<(DirtyBits? Bits, string? Error)> LoadBitsAsync(Qcow2BitmapEntry e)
    {
        long granularity = 1L << e.GranularityBits;
        var bits = new DirtyBits(granularity, header.Size);
        if (e.InUse) return (bits, null);
        var table = await ReadEntriesAsync(e.TableOffset, e.TableSize).ConfigureAwait(false);
        if (table.Any(x => !TableEntryValid(x))) return (null, $"Could not read bitmap_table table from image for bitmap '{e.Name}': Invalid argument");
        if (Qcow2Bitmaps.TableSizeFor(header.Size, granularity, clusterSize) != e.TableSize) return (null, $"Could not read bitmap '{e.Name}' from image: Invalid argument");
        long bitsPerCluster = clusterSize * 8L;
        var buf = new byte[clusterSize];
        for (int i = 0; i < table.Length; i++)
        {
            long offset = (long)(table[i] & Qcow2Bitmaps.TableOffsetMask);
            if (offset == 0)
            {
                if ((table[i] & Qcow2Bitmaps.TableAllOnes) != 0) bits.SetRange(i * bitsPerCluster, bitsPerCluster);
                continue;
            }
            await ReadFileAsync(offset, buf).ConfigureAwait(false);
            bits.Deserialize(i * bitsPerCluster, buf);
        }
        return (bits, null);
    }

    /// <summary>QEMU's check_table_entry.</summary>
    private bool TableEntryValid(ulong entry)
    {
        if ((entry & Qcow2Bitmaps.TableReservedMask) != 0) return false;
        ulong offset = entry & Qcow2Bitmaps.TableOffsetMask;
        return offset == 0 || ((entry & Qcow2Bitmaps.TableAllOnes) == 0 && offset % (ulong)clusterSize == 0);
    }

    /// <summary>
    /// QEMU's update_ext_header_and_dir_in_place: the autoclear bit is cleared (so a crash in between leaves the
    /// extension ignored), the directory rewritten where it is with the new flags, then the bit set again.
    /// </summary>
    private async ValueTask MarkInUseAsync(List<Qcow2BitmapEntry> entries)
    {
        var dir = Qcow2Bitmaps.SerializeDirectory(entries);
        Debug.Assert(dir.Length == header.BitmapDirectorySize, "an in-place update keeps the directory's size");
        await WriteHeaderAsync(header.Autoclear & ~Qcow2Header.AutoclearBitmaps & Qcow2Header.AutoclearKnown, header.BitmapCount, header.BitmapDirectoryOffset, header.BitmapDirectorySize).ConfigureAwait(false);
        await WriteFileAsync(header.BitmapDirectoryOffset, dir).ConfigureAwait(false);
        await WriteHeaderAsync(header.Autoclear | Qcow2Header.AutoclearBitmaps, header.BitmapCount, header.BitmapDirectoryOffset, header.BitmapDirectorySize).ConfigureAwait(false);
        storedBitmaps = entries;
    }

    /// <summary>Rewrites the header cluster (QEMU's qcow2_update_header) and flushes the file (update_header_sync).</summary>
    private async ValueTask WriteHeaderAsync(ulong autoclear, int count, long dirOffset, long dirSize)
    {
        var cluster0 = new byte[clusterSize];
        await ReadFileAsync(0, cluster0).ConfigureAwait(false);
        var h = Qcow2Bitmaps.RewriteHeader(cluster0, clusterSize, autoclear, count, dirOffset, dirSize);
        await WriteFileAsync(0, h).ConfigureAwait(false);
        await FileNode.FlushAsync().ConfigureAwait(false);
        header = header with { Autoclear = autoclear, BitmapCount = count, BitmapDirectoryOffset = dirOffset, BitmapDirectorySize = dirSize };
    }

    /// <inheritdoc/>
    public string? CanStoreNewBitmap(string name, long granularity)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (header.Version < 3) return "Cannot store dirty bitmaps in qcow2 v2 files";
        if (Qcow2Bitmaps.Constraints(name, granularity, header.Size, clusterSize) is { } err) return err;
        if (header.BitmapCount == 0) return null;
        if (header.BitmapCount >= Qcow2Bitmaps.BitmapsMax) return "Maximum number of persistent bitmaps is already reached";
        if (header.BitmapDirectorySize + Qcow2Bitmaps.EntryBytes(System.Text.Encoding.UTF8.GetByteCount(name)) > Qcow2Bitmaps.DirectoryBytesMax)
            return "Not enough space in the bitmap directory";
        return null;
    }

    /// <inheritdoc/>
    public string? RemoveStoredBitmap(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (header.BitmapCount == 0) return null;
        try
        {
            return RemoveAsync(name).AsTask().GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            return $"Failed to update bitmap extension: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}";
        }
    }

    /// <summary>QEMU's qcow2_co_remove_persistent_dirty_bitmap: a new directory without the bitmap, then its clusters freed.</summary>
    private async ValueTask<string?> RemoveAsync(string name)
    {
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            int i = storedBitmaps.FindIndex(e => e.Name == name);
            if (i < 0) return null;
            var gone = storedBitmaps[i];
            var rest = storedBitmaps.Where((_, j) => j != i).ToList();
            await UpdateDirectoryAsync(rest).ConfigureAwait(false);
            await FreeBitmapClustersAsync(gone).ConfigureAwait(false);
            return null;
        }
        finally
        {
            metaLock.Release();
        }
    }

    /// <summary>
    /// QEMU's update_ext_header_and_dir: the new directory in newly allocated clusters, the refcounts flushed, the
    /// header pointing to it (or, without bitmaps, the extension and its autoclear bit gone), the old directory freed.
    /// Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask UpdateDirectoryAsync(List<Qcow2BitmapEntry> entries)
    {
        long oldOffset = header.BitmapDirectoryOffset, oldSize = header.BitmapDirectorySize;
        if (entries.Count > 0)
        {
            var dir = Qcow2Bitmaps.SerializeDirectory(entries);
            long at = await AllocateRunAsync(dir.Length).ConfigureAwait(false);
            await WriteFileAsync(at, dir).ConfigureAwait(false);
            await WriteBackAsync(all: true).ConfigureAwait(false);
            await FileNode.FlushAsync().ConfigureAwait(false);
            await WriteHeaderAsync(header.Autoclear | Qcow2Header.AutoclearBitmaps, entries.Count, at, dir.Length).ConfigureAwait(false);
        }
        else
        {
            await WriteHeaderAsync(header.Autoclear & ~Qcow2Header.AutoclearBitmaps, 0, 0, 0).ConfigureAwait(false);
        }
        storedBitmaps = entries;
        if (oldSize > 0) await FreeRunAsync(oldOffset, oldSize).ConfigureAwait(false);
    }

    /// <summary>
    /// QEMU's free_bitmap_clusters: every data cluster the table names (discarded in the file once free, as
    /// QEMU's QCOW2_DISCARD_ALWAYS passes it down), then the table (kept in the file, as QCOW2_DISCARD_OTHER is).
    /// </summary>
    private async ValueTask FreeBitmapClustersAsync(Qcow2BitmapEntry e)
    {
        if (e.TableSize == 0) return;
        var table = await ReadEntriesAsync(e.TableOffset, e.TableSize).ConfigureAwait(false);
        foreach (var x in table)
        {
            long offset = (long)(x & Qcow2Bitmaps.TableOffsetMask);
            if (offset == 0) continue;
            await AddRefAsync(offset >> clusterBits, -1).ConfigureAwait(false);
            if (offset < FileNode.Length && await RefcountAsync(offset >> clusterBits).ConfigureAwait(false) == 0)
                await DiscardFileAsync(offset, Math.Min(clusterSize, FileNode.Length - offset)).ConfigureAwait(false);
        }
        await FreeRunAsync(e.TableOffset, e.TableSize * 8L).ConfigureAwait(false);
    }

    /// <summary>Drops one reference from each cluster of a host byte range.</summary>
    private async ValueTask FreeRunAsync(long offset, long bytes)
    {
        for (long c = offset >> clusterBits; c <= (offset + bytes - 1) >> clusterBits; c++) await AddRefAsync(c, -1).ConfigureAwait(false);
    }

    /// <summary>
    /// At close (QEMU's qcow2_inactivate, before the caches are flushed): stores every persistent bitmap that is
    /// neither inconsistent nor read-only. A node that may not write loses them, as QEMU reports on stderr.
    /// </summary>
    private void StoreBitmapsOnClose()
    {
        if (bitmapsClosed) return;
        bitmapsClosed = true;
        var toStore = Node.Bitmaps.Where(b => b.Persistent && !b.Inconsistent && !b.ReadOnly).ToList();
        if (toStore.Count == 0) return;
        string? err;
        if (Node.ReadOnly || Node.Child("file") is null) err = "No write access";
        else
        {
            try
            {
                err = StoreAsync(toStore).AsTask().GetAwaiter().GetResult();
            }
            catch (IOException e)
            {
                err = $"Failed to update bitmap extension: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}";
            }
        }
        if (err is not null) Console.Error.WriteLine($"Lost persistent bitmaps during inactivation of node '{Node.Name}': {err}");
    }

    /// <summary>QEMU's qcow2_store_persistent_dirty_bitmaps: the directory's entries updated or appended, data and tables written, the directory replaced.</summary>
    private async ValueTask<string?> StoreAsync(List<BitmapInfo> toStore)
    {
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var list = storedBitmaps.ToList();
            var replaced = new List<Qcow2BitmapEntry>();
            long dirSize = header.BitmapDirectorySize;
            foreach (var b in toStore)
            {
                if (Qcow2Bitmaps.Constraints(b.Name, b.Granularity, header.Size, clusterSize) is { } c)
                    return $"Bitmap '{b.Name}' doesn't satisfy the constraints: {c}";
                int i = list.FindIndex(e => e.Name == b.Name);
                var entry = new Qcow2BitmapEntry(b.Name, 0, 0, b.Enabled ? Qcow2Bitmaps.FlagAuto : 0, System.Numerics.BitOperations.TrailingZeroCount(b.Granularity));
                if (i < 0)
                {
                    if (list.Count + 1 > Qcow2Bitmaps.BitmapsMax) return "Too many persistent bitmaps";
                    dirSize += Qcow2Bitmaps.EntryBytes(System.Text.Encoding.UTF8.GetByteCount(b.Name));
                    if (dirSize > Qcow2Bitmaps.DirectoryBytesMax) return "Bitmap directory is too large";
                    list.Add(entry);
                }
                else
                {
                    if (!list[i].InUse) return $"Bitmap '{b.Name}' already exists in the image";
                    replaced.Add(list[i]);
                    list[i] = entry;
                }
            }
            for (int i = 0; i < list.Count; i++)
            {
                var b = toStore.Find(x => x.Name == list[i].Name);
                if (b is null) continue;
                var (offset, size) = await StoreBitmapAsync(b).ConfigureAwait(false);
                list[i] = list[i] with { TableOffset = offset, TableSize = size };
            }
            await UpdateDirectoryAsync(list).ConfigureAwait(false);
            foreach (var old in replaced) await FreeBitmapClustersAsync(old).ConfigureAwait(false);
            return null;
        }
        finally
        {
            metaLock.Release();
        }
    }

    /// <summary>QEMU's store_bitmap: one data cluster per table entry with a dirty bit (others stay 0), then the table. Holds <see cref="metaLock"/>.</summary>
    private async ValueTask<(long Offset, int Size)> StoreBitmapAsync(BitmapInfo b)
    {
        var bits = b.Bits ?? new DirtyBits(b.Granularity, header.Size);
        long bitsPerCluster = clusterSize * 8L;
        int tableSize = (int)((Qcow2Bitmaps.SerializedBytes(bits.Bits) + clusterSize - 1) / clusterSize);
        var table = new byte[tableSize * 8L];
        var buf = new byte[clusterSize];
        for (int i = 0; i < tableSize; i++)
        {
            long first = i * bitsPerCluster;
            int bytes = (int)Qcow2Bitmaps.SerializedBytes(Math.Min(bitsPerCluster, bits.Bits - first));
            bits.Serialize(first, buf.AsSpan(0, bytes));
            buf.AsSpan(bytes).Clear();
            if (!buf.AsSpan(0, bytes).ContainsAnyExcept((byte)0)) continue;
            var (at, _) = await AllocateClusterAsync().ConfigureAwait(false);
            await WriteFileAsync(at, buf).ConfigureAwait(false);
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), (ulong)at);
        }
        long tableAt = await AllocateRunAsync(table.Length).ConfigureAwait(false);
        await WriteFileAsync(tableAt, table).ConfigureAwait(false);
        return (tableAt, tableSize);
    }

    /// <summary>
    /// Allocates contiguous clusters for <paramref name="bytes"/> bytes (QEMU's qcow2_alloc_clusters) and returns the
    /// first one's offset. Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask<long> AllocateRunAsync(long bytes)
    {
        long n = (bytes + clusterSize - 1) >> clusterBits;
        Debug.Assert(n > 0);
        if (n == 1) return (await AllocateClusterAsync().ConfigureAwait(false)).Offset;
        for (long c = Math.Max(1, freeHint), scanned = 0; scanned < ScanClustersMax; scanned++)
        {
            long k = 0;
            while (k < n && await RefcountAsync(c + k).ConfigureAwait(false) == 0) k++;
            if (k < n)
            {
                c += k + 1;
                continue;
            }
            // Creating the refcount blocks for the run may take clusters of it (a block lives in the first cluster it covers).
            for (k = 0; k < n; k++) await AddRefAsync(c + k, 0).ConfigureAwait(false);
            k = 0;
            while (k < n && await RefcountAsync(c + k).ConfigureAwait(false) == 0) k++;
            if (k < n)
            {
                c += k + 1;
                continue;
            }
            for (k = 0; k < n; k++) await AddRefAsync(c + k, 1).ConfigureAwait(false);
            lock (sync)
            {
                frontier = Math.Max(frontier, c + n);
                freeHint = c + n;
            }
            return c << clusterBits;
        }
        throw new BlockIOException(Errnos.ENOSPC, $"qcow2 '{Node.Name}': no free cluster run");
    }

    /// <inheritdoc/>
    /// <remarks>QEMU's qcow2_reopen_bitmaps_ro. A failure to store is reported on stderr (QEMU fails the reopen).</remarks>
    public void ReopeningReadOnly()
    {
        if (clusterSize == 0) return;
        var toStore = Node.Bitmaps.Where(b => b.Persistent && !b.Inconsistent && !b.ReadOnly).ToList();
        if (toStore.Count > 0 && !Node.ReadOnly)
        {
            string? err;
            try
            {
                err = StoreAsync(toStore).AsTask().GetAwaiter().GetResult();
                // QEMU's reopen to read-only flushes next: the refcounts the store changed reach the file.
                if (err is null) FlushAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (IOException e)
            {
                err = $"Failed to update bitmap extension: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}";
            }
            if (err is not null) Console.Error.WriteLine($"{Node.Name}: Failed to store dirty bitmaps: {err}");
        }
        SetBitmapsReadOnly(true);
    }

    /// <inheritdoc/>
    /// <remarks>QEMU's qcow2_reopen_bitmaps_rw: the stored entries of read-only bitmaps flagged in use, in place.</remarks>
    public void ReopenedWritable()
    {
        if (clusterSize == 0) return;
        var entries = storedBitmaps.ToList();
        bool update = false;
        for (int i = 0; i < entries.Count; i++)
        {
            var b = Node.BitmapList.Find(x => x.Name == entries[i].Name);
            if (entries[i].InUse || b is not { ReadOnly: true, Inconsistent: false }) continue;
            entries[i] = entries[i] with { Flags = entries[i].Flags | Qcow2Bitmaps.FlagInUse };
            update = true;
        }
        try
        {
            if (update) WithMetaLock(() => MarkInUseAsync(entries));
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"{Node.Name}: Failed to make dirty bitmaps writable: Cannot update bitmap directory: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
            return;
        }
        SetBitmapsReadOnly(false);
    }

    private void SetBitmapsReadOnly(bool readOnly)
    {
        for (int i = 0; i < Node.BitmapList.Count; i++)
        {
            if (Node.BitmapList[i].Persistent) Node.BitmapList[i] = Node.BitmapList[i] with { ReadOnly = readOnly };
        }
    }

    private void WithMetaLock(Func<ValueTask> action)
    {
        metaLock.Wait();
        try
        {
            action().AsTask().GetAwaiter().GetResult();
        }
        finally
        {
            metaLock.Release();
        }
    }

    /// <summary>QEMU's Qcow2BitmapInfo list for <c>format-specific</c>: the directory's bitmaps in its order.</summary>
    private JsonArray? BitmapInfoList()
    {
        if (storedBitmaps.Count == 0) return null;
        var list = new JsonArray();
        foreach (var e in storedBitmaps)
        {
            var flags = new JsonArray();
            if (e.InUse) flags.Add("in-use");
            if ((e.Flags & Qcow2Bitmaps.FlagAuto) != 0) flags.Add("auto");
            list.Add(new JsonObject { ["name"] = e.Name, ["granularity"] = 1L << e.GranularityBits, ["flags"] = flags });
        }
        return list;
    }
}
