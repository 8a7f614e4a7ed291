using System.Buffers.Binary;
using System.Diagnostics;
using Verified.Impl.Formats;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The <c>qcow2</c> format driver: versions 3 (read and write) and 2 (read, and write without zero
/// clusters), cluster sizes 512 B … 2 MiB, any refcount width, a <c>backing</c> child read for
/// unallocated clusters and copied into partially written ones, zero clusters, discard, compressed
/// (deflate) clusters readable. The layout is described in QEMU's docs/interop/qcow2.txt.
/// </summary>
/// <remarks>
/// <para><b>Metadata ordering</b> (spec/qcow2.md). L2 tables and refcount blocks are cached and written
/// back (at flush, close or eviction), as QEMU's qcow2 caches are. Before any L2 table reaches the file
/// every dirty refcount block does (an allocation's refcount is on disk before a pointer to it); a
/// data cluster is written before the L2 entry that points to it is set; an L1 entry is written after
/// its L2 table. Freeing goes the other way: the L2 tables that dropped the pointers are written first,
/// then the refcounts fall. A process killed at any point therefore leaves at worst leaked clusters.</para>
/// <para><b>Concurrency.</b> Reads and writes of allocated clusters run in parallel without the
/// metadata lock (an L2 lookup in the cache under a monitor). Everything that changes metadata
/// (allocation, zeroing, discard, loading a table) holds one async lock; operations that free clusters
/// also wait until no lock-free request is in flight, so a cluster is never reused under a request that
/// looked it up before it was freed.</para>
/// </remarks>
[BlockDriverName("qcow2")]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "SemaphoreSlim holds no unmanaged resource unless its wait handle is used, which this driver never does")]
public sealed partial class Qcow2Driver : BlockDriver, IAllocationStatus, IClusterSized, IFormatFacts, IPersistentBitmaps
{
    /// <summary>L2 entry flags and the host offset mask (bits 9–55).</summary>
    private const ulong Copied = 1UL << 63, Compressed = 1UL << 62, ZeroFlag = 1, OffsetMask = 0x00ff_ffff_ffff_fe00;

    /// <summary>Bytes of L2 tables kept in the cache (QEMU's default l2-cache-size is 1 MiB; this covers 32 GiB at 64 KiB clusters).</summary>
    public const int L2CacheBytes = 4 << 20;

    /// <summary>Bytes of refcount blocks kept in the cache.</summary>
    public const int RefCacheBytes = 1 << 20;

    /// <summary>Fewest tables each cache keeps, whatever the cluster size.</summary>
    private const int CacheTablesMin = 4;

    private readonly object sync = new();
    private readonly SemaphoreSlim metaLock = new(1, 1);
    private readonly Dictionary<long, Table> l2Cache = [];
    private readonly Dictionary<long, Table> refCache = [];
    private readonly Dictionary<long, TaskCompletionSource> allocating = [];
    private Qcow2Header header = new();
    private ulong[] l1 = [];
    private ulong[] refTable = [];
    private int clusterBits, clusterSize, l2Bits, refBlockBits;
    private long useClock, frontier, freeHint;
    private int inflight;
    private bool draining;
    private TaskCompletionSource? drained;
    private int l2CacheMax, refCacheMax;

    /// <summary>A cached metadata table: an L2 table (entries in host order) or a refcount block (raw big-endian bytes).</summary>
    private sealed class Table(long offset)
    {
        public long Offset { get; } = offset;
        public ulong[]? Entries { get; init; }
        public byte[]? Raw { get; init; }
        public bool Dirty { get; set; }
        public long LastUse { get; set; }

        /// <summary>Allocating writes about to set an entry in this table: it must stay in the cache until they do.</summary>
        public int Pins { get; set; }
    }

    /// <summary>What one cluster of the virtual disk is.</summary>
    public enum ClusterKind
    {
        /// <summary>Not allocated in this layer: reads come from the backing child, or zeroes.</summary>
        Unallocated,
        /// <summary>Reads as zeroes (a zero cluster, with or without a preallocated host cluster).</summary>
        Zero,
        /// <summary>Data in a host cluster.</summary>
        Data,
        /// <summary>Deflate-compressed data.</summary>
        Compressed,
    }

    /// <inheritdoc/>
    public override long Length => header.Size;

    /// <inheritdoc/>
    public long ClusterSize => clusterSize;

    /// <summary>The parsed header (version, cluster size, backing file name recorded in the image).</summary>
    public Qcow2Header Header => header;

    /// <inheritdoc/>
    public bool Dirty => (header.Incompatible & Qcow2Header.IncompatDirty) != 0;

    /// <inheritdoc/>
    public string? HeaderBackingFile => header.BackingFile;

    /// <inheritdoc/>
    public string? HeaderBackingFormat => header.BackingFormat;

    /// <summary>QEMU's <c>ImageInfoSpecificQCow2</c>, members in QAPI order.</summary>
    public System.Text.Json.Nodes.JsonObject? FormatSpecific
    {
        get
        {
            var data = new System.Text.Json.Nodes.JsonObject { ["compat"] = header.Version >= 3 ? "1.1" : "0.10" };
            if (header.Version >= 3)
            {
                data["extended-l2"] = (header.Incompatible & Qcow2Header.IncompatExtendedL2) != 0;
                data["lazy-refcounts"] = (header.Compatible & Qcow2Header.CompatLazyRefcounts) != 0;
                data["corrupt"] = (header.Incompatible & Qcow2Header.IncompatCorrupt) != 0;
            }
            data["refcount-bits"] = 1 << header.RefcountOrder;
            if (header.Version >= 3 && BitmapInfoList() is { } bitmaps) data["bitmaps"] = bitmaps;
            data["compression-type"] = (header.Incompatible & Qcow2Header.IncompatCompression) != 0 ? "zstd" : "zlib";
            return new System.Text.Json.Nodes.JsonObject { ["type"] = "qcow2", ["data"] = data };
        }
    }

    private BlockNode FileNode => Node.Child("file")?.Node ?? throw new BlockIOException(Errnos.EIO, $"qcow2 node '{Node.Name}' has no file child");

    private BlockNode? Backing => Node.Child("backing")?.Node;

    private int L2Entries => 1 << l2Bits;

    /// <inheritdoc/>
    protected internal override bool ReadsImageAtOpen => true;

    /// <inheritdoc/>
    protected internal override QmpError? OpenFormat(EngineServices services)
    {
        if (Node.Child("file") is null) return QmpError.Generic("A block device must be specified for \"file\"");
        try
        {
            return OpenAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            return QmpError.Generic($"Could not read qcow2 metadata: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
        }
    }

    private async ValueTask<QmpError?> OpenAsync()
    {
        var file = FileNode;
        var probe = new byte[(int)Math.Min(Qcow2Header.ProbeBytes, Math.Max(file.Length, 0))];
        try
        {
            await file.ReadAsync(0, probe).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            return QmpError.Generic($"Could not read qcow2 header: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
        }
        var (h, err) = Qcow2Header.Parse(probe, writable: !Node.ReadOnly);
        if (err == "qcow2 header truncated" && file.Length > probe.Length)
        {
            // A header with extensions or a backing name past the first 4 KiB: read the whole first cluster.
            int cs = 1 << (int)BinaryPrimitives.ReadUInt32BigEndian(probe.AsSpan(20));
            probe = new byte[(int)Math.Min(cs, file.Length)];
            await file.ReadAsync(0, probe).ConfigureAwait(false);
            (h, err) = Qcow2Header.Parse(probe, writable: !Node.ReadOnly);
        }
        if (err is not null) return QmpError.Generic(err);
        header = h!;
        clusterBits = header.ClusterBits;
        clusterSize = 1 << clusterBits;
        l2Bits = clusterBits - 3;
        refBlockBits = clusterBits + 3 - header.RefcountOrder;
        l2CacheMax = Math.Max(CacheTablesMin, L2CacheBytes / clusterSize);
        refCacheMax = Math.Max(CacheTablesMin, RefCacheBytes / clusterSize);
        l1 = await ReadEntriesAsync(header.L1Offset, header.L1Size).ConfigureAwait(false);
        refTable = await ReadEntriesAsync(header.RefTableOffset, header.RefTableClusters * (clusterSize / 8)).ConfigureAwait(false);
        frontier = (file.Length + clusterSize - 1) >> clusterBits;
        return await OpenBitmapsAsync().ConfigureAwait(false);
    }

    private async ValueTask<ulong[]> ReadEntriesAsync(long offset, int count)
    {
        var raw = new byte[count * 8L];
        if (raw.Length > 0) await ReadFileAsync(offset, raw).ConfigureAwait(false);
        var entries = new ulong[count];
        for (int i = 0; i < count; i++) entries[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return entries;
    }

    /// <summary>Writes cached metadata before the children go (QEMU's qcow2_close flushes its caches).</summary>
    protected internal override void Closing() => TryFlushOnClose();

    /// <inheritdoc/>
    protected internal override void Close() => TryFlushOnClose();

    /// <summary>QEMU's qcow2_close: persistent bitmaps are stored first (qcow2_inactivate), then the caches written.</summary>
    private void TryFlushOnClose()
    {
        if (clusterSize != 0) StoreBitmapsOnClose();
        if (!AnyDirty()) return;
        try
        {
            FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            // A node that cannot write its metadata any more loses only what a crash would: the image stays consistent.
        }
    }

    private bool AnyDirty()
    {
        lock (sync) return l2Cache.Values.Any(t => t.Dirty) || refCache.Values.Any(t => t.Dirty);
    }

    /// <inheritdoc/>
    public override async ValueTask FlushAsync()
    {
        if (Node.Child("file") is not { } fileEdge) return;
        await metaLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await WriteBackAsync(all: true).ConfigureAwait(false);
        }
        finally
        {
            metaLock.Release();
        }
        if (DriverOptions.Writes(fileEdge) || !Node.ReadOnly) await fileEdge.Node.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Writes dirty metadata in the safe order: refcount blocks, then (after a flush of the file, so the
    /// order survives a power cut) L2 tables. L1 entries are written when their table is allocated
    /// (<c>WritableL2Async</c>). Holds <see cref="metaLock"/>.
    /// </summary>
    private async ValueTask WriteBackAsync(bool all)
    {
        bool wroteRefs = await WriteDirtyAsync(refCache).ConfigureAwait(false);
        if (!all) return;
        bool l2Dirty;
        lock (sync) l2Dirty = l2Cache.Values.Any(t => t.Dirty);
        if (wroteRefs && l2Dirty) await FileNode.FlushAsync().ConfigureAwait(false);
        await WriteDirtyAsync(l2Cache).ConfigureAwait(false);
    }

    private async ValueTask<bool> WriteDirtyAsync(Dictionary<long, Table> cache)
    {
        List<Table> dirty;
        lock (sync) dirty = [.. cache.Values.Where(t => t.Dirty).OrderBy(t => t.Offset)];
        foreach (var t in dirty) await WriteTableAsync(t).ConfigureAwait(false);
        return dirty.Count > 0;
    }

    private async ValueTask WriteTableAsync(Table t)
    {
        var raw = new byte[clusterSize];
        lock (sync)
        {
            if (t.Entries is { } e)
                for (int i = 0; i < e.Length; i++) BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), e[i]);
            else t.Raw!.CopyTo(raw, 0);
            t.Dirty = false;
        }
        await WriteFileAsync(t.Offset, raw).ConfigureAwait(false);
    }

    private async ValueTask WriteL1EntryAsync(int i)
    {
        var raw = new byte[8];
        lock (sync) BinaryPrimitives.WriteUInt64BigEndian(raw, l1[i]);
        await WriteFileAsync(header.L1Offset + (i * 8L), raw).ConfigureAwait(false);
    }

    // ---- L2 lookup ----

    /// <summary>The L2 entry of <paramref name="offset"/>'s cluster if its table is cached (or there is none); false if it must be loaded.</summary>
    private bool TryEntry(long offset, out ulong entry)
    {
        Debug.Assert(Monitor.IsEntered(sync));
        long l1Index = offset >> (clusterBits + l2Bits);
        entry = 0;
        if (l1Index >= l1.Length) return true;
        long l2Offset = (long)(l1[l1Index] & OffsetMask);
        if (l2Offset == 0) return true;
        if (!l2Cache.TryGetValue(l2Offset, out var t)) return false;
        if (t.LastUse != useClock) t.LastUse = useClock; // only inserts advance the clock: lookups stay cheap
        entry = t.Entries![(int)((offset >> clusterBits) & (L2Entries - 1))];
        return true;
    }

    /// <summary>The L2 entry of <paramref name="offset"/>'s cluster, loading its table. Holds <see cref="metaLock"/>.</summary>
    private async ValueTask<ulong> EntryAsync(long offset)
    {
        lock (sync)
            if (TryEntry(offset, out var e)) return e;
        long l2Offset = (long)(l1[offset >> (clusterBits + l2Bits)] & OffsetMask);
        var t = await LoadL2Async(l2Offset).ConfigureAwait(false);
        lock (sync) return t.Entries![(int)((offset >> clusterBits) & (L2Entries - 1))];
    }

    private async ValueTask<Table> LoadL2Async(long l2Offset)
    {
        lock (sync)
        {
            if (l2Cache.TryGetValue(l2Offset, out var hit)) return hit;
        }
        var raw = new byte[clusterSize];
        await ReadFileAsync(l2Offset, raw).ConfigureAwait(false);
        var entries = new ulong[L2Entries];
        for (int i = 0; i < entries.Length; i++) entries[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        var t = new Table(l2Offset) { Entries = entries };
        await InsertAsync(l2Cache, t, l2CacheMax).ConfigureAwait(false);
        return t;
    }

    /// <summary>Adds a table to a cache, first evicting the least recently used one (written back if dirty, in the safe order).</summary>
    private async ValueTask InsertAsync(Dictionary<long, Table> cache, Table t, int max)
    {
        Table? victim = null;
        lock (sync)
        {
            if (cache.Count >= max) victim = cache.Values.Where(x => x.Pins == 0).MinBy(x => x.LastUse);
        }
        if (victim is not null)
        {
            if (victim.Dirty)
            {
                // An L2 table may reach the file only after every refcount it relies on.
                if (ReferenceEquals(cache, l2Cache)) await WriteDirtyAsync(refCache).ConfigureAwait(false);
                await WriteTableAsync(victim).ConfigureAwait(false);
            }
            lock (sync) cache.Remove(victim.Offset);
        }
        lock (sync)
        {
            t.LastUse = ++useClock;
            cache[t.Offset] = t;
        }
    }

    /// <summary>The kind of a cluster from its L2 entry.</summary>
    private ClusterKind KindOf(ulong entry)
    {
        if ((entry & Compressed) != 0) return ClusterKind.Compressed;
        if (header.Version >= 3 && (entry & ZeroFlag) != 0) return ClusterKind.Zero;
        return (entry & OffsetMask) != 0 ? ClusterKind.Data : ClusterKind.Unallocated;
    }

    // ---- the shared/exclusive gate between lock-free data I/O and freeing ----

    private void ExitData()
    {
        int left = Interlocked.Decrement(ref inflight);
        Debug.Assert(left >= 0);
        if (left != 0 || !Volatile.Read(ref draining)) return;
        lock (sync)
        {
            if (inflight == 0 && drained is { } d)
            {
                drained = null;
                d.TrySetResult();
            }
        }
    }

    /// <summary>Waits until no lock-free request is in flight; new ones take the locked path until <see cref="EndDrain"/>. Holds <see cref="metaLock"/>.</summary>
    private Task DrainAsync()
    {
        lock (sync)
        {
            Volatile.Write(ref draining, true);
            if (Volatile.Read(ref inflight) == 0) return Task.CompletedTask;
            drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return drained.Task;
        }
    }

    private void EndDrain()
    {
        lock (sync) draining = false;
    }
}
