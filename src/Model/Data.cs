using System.Collections.Immutable;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// The bytes of a host file as the model predicts them: its size and the 512-byte sectors written so
/// far, each filled with one pattern byte (unwritten sectors read as zero). Compared by value.
/// </summary>
public sealed record FileData(long Size, ImmutableSortedDictionary<long, byte> Sectors)
{
    /// <summary>A zero-filled file of <paramref name="size"/> bytes.</summary>
    public static FileData Zeroed(long size) => new(size, ImmutableSortedDictionary<long, byte>.Empty);

    /// <inheritdoc/>
    public bool Equals(FileData? other) => other is not null && Size == other.Size && Sectors.SequenceEqual(other.Sectors);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Size, Sectors.Count);
}

/// <summary>
/// What the model predicts about data: host files' contents, and which clusters each copy-before-write
/// node (by creation stamp) has copied to its target.
/// </summary>
public sealed record DataState(ImmutableDictionary<string, FileData> Files, ImmutableDictionary<long, ImmutableSortedSet<long>> Copied)
{
    /// <summary>
    /// Per copy-before-write node, the clusters a guest write has gone through (QEMU's <c>done_bitmap</c>):
    /// snapshot-access reads these from the target. A backup job's own copies are not among them, so
    /// snapshot reads of those clusters still come from the source (block/copy-before-write.c).
    /// </summary>
    public ImmutableDictionary<long, ImmutableSortedSet<long>> Done { get; init; } = ImmutableDictionary<long, ImmutableSortedSet<long>>.Empty;

    /// <summary>Whether a guest write has gone through cluster <paramref name="cluster"/> of the copy-before-write node stamped <paramref name="seq"/>.</summary>
    public bool IsDone(long seq, long cluster) => Done.TryGetValue(seq, out var set) && set.Contains(cluster);

    /// <summary>Sizes of host files whose bytes the model does not predict (a qcow2 pool file, a backup target after an unpredictable copy).</summary>
    public ImmutableDictionary<string, long> OpaqueSizes { get; init; } = ImmutableDictionary<string, long>.Empty;

    /// <summary>No files known, nothing copied.</summary>
    public static readonly DataState Empty = new(NoFiles, ImmutableDictionary<long, ImmutableSortedSet<long>>.Empty);

    /// <summary>
    /// An empty file map. Values compare by reference inside the map: setting a file's new contents must not
    /// compare every sector with the old ones (the map itself compares by reference anyway).
    /// </summary>
    public static ImmutableDictionary<string, FileData> NoFiles => ImmutableDictionary.Create<string, FileData>(StringComparer.Ordinal, ReferenceEqualityComparer.Instance);
}

/// <summary>
/// Reads and writes through the graph as the model predicts them, per 512-byte sector: file nodes hold
/// their host file's bytes, raw shifts by its offset, filters pass through, null-co drops writes,
/// copy-before-write copies each 64 KiB cluster of its source to its target before the first write to it,
/// snapshot-access reads copied clusters from the target and the rest from the source. Anything else
/// (qcow2, copy-on-read over a backing chain, throttling with limits, injected errors) is unpredictable.
/// </summary>
public static class Data
{
    /// <summary>Sector size.</summary>
    public const int Sector = 512;

    /// <summary>copy-before-write's cluster, in sectors (64 KiB).</summary>
    public const int CbwClusterSectors = 65536 / Sector;

    /// <summary>null-co's default size.</summary>
    public const long NullDefaultSize = 1L << 30;

    /// <summary>errno values I/O may report.</summary>
    public const int EPERM = 1, EINVAL = 22, ENOTSUP = 95;

    /// <summary>A node's length in bytes, or null when the model cannot tell.</summary>
    public static long? Length(ModelState s, string node)
    {
        ArgumentNullException.ThrowIfNull(s);
        var g = s.Graph;
        if (g.Find(node) is not { } n) return null;
        switch (n.Driver)
        {
            case "file":
                // QEMU counts a node's length in whole sectors: a file's tail rounds up (and reads as zeroes).
                return s.Data.Files.TryGetValue(n.Str("filename") ?? "", out var f) ? (f.Size + Sector - 1) / Sector * Sector : null;
            case "null-co" or "null-aio":
                return n.Options.TryGetValue("size", out var sz) ? long.Parse(sz, System.Globalization.CultureInfo.InvariantCulture) : NullDefaultSize;
            case "raw":
                var below = Child(g, n, "file") is { } c ? Length(s, c) : null;
                long off = RawOffset(n);
                if (n.Options.TryGetValue("size", out var rs)) return long.Parse(rs, System.Globalization.CultureInfo.InvariantCulture);
                return below - off;
            case "snapshot-access":
                return Child(g, n, "file") is { } cbw && Child(g, g.Nodes[cbw], "file") is { } src ? Length(s, src) : null;
            default:
                return Primary(g, n) is { } p && Predictable(s, node) ? Length(s, p) : null;
        }
    }

    /// <summary>
    /// A node's size in bytes where the model knows it, whether or not it predicts the node's data (what
    /// size checks need): a file's, including one whose bytes are opaque; a filter's or snapshot-access's,
    /// its child's; raw's, by its offset and size. Null for a qcow2 layer (its header's virtual size),
    /// preallocate where the model does not predict it, and files never seen.
    /// </summary>
    public static long? Size(ModelState s, string node)
    {
        ArgumentNullException.ThrowIfNull(s);
        var g = s.Graph;
        if (g.Find(node) is not { } n) return null;
        switch (n.Driver)
        {
            case "file":
                var name = n.Str("filename") ?? "";
                long? size = s.Data.Files.TryGetValue(name, out var f) ? f.Size : s.Data.OpaqueSizes.TryGetValue(name, out var o) ? o : null;
                return (size + Sector - 1) / Sector * Sector;
            case "raw":
                long off = RawOffset(n);
                if (n.Options.TryGetValue("size", out var rs)) return long.Parse(rs, System.Globalization.CultureInfo.InvariantCulture);
                return Child(g, n, "file") is { } c ? Size(s, c) - off : null;
            case "qcow2":
                return null;
            case "preallocate":
                // QEMU's data_end: taken from the child when a parent gains write and resize, kept (even across a
                // child replacement) while one holds them, followed by the writes. Without such a parent the
                // length is the child's; with one, the model knows it only where it predicts the node.
                if (Predictable(s, node)) return Length(s, node);
                bool held = g.Edges.Any(e => e.Child == node && (e.Perm & (Perm.Write | Perm.Resize)) == (Perm.Write | Perm.Resize));
                return !held && Primary(g, n) is { } pa ? Size(s, pa) : null;
            case "null-co" or "null-aio":
                return Length(s, node);
            case "snapshot-access":
                return Child(g, n, "file") is { } below ? Size(s, below) : null;
            default:
                return Primary(g, n) is { } p ? Size(s, p) : null;
        }
    }

    /// <summary>True when the model can predict every read and write through <paramref name="node"/>.</summary>
    public static bool Predictable(ModelState s, string node)
    {
        ArgumentNullException.ThrowIfNull(s);
        var g = s.Graph;
        if (g.Find(node) is not { } n) return false;
        return n.Driver switch
        {
            "file" => s.Data.Files.ContainsKey(n.Str("filename") ?? ""),
            "null-co" or "null-aio" => !n.Options.ContainsKey("latency-ns"),
            "raw" => RawOffset(n) % Sector == 0 && (!n.Options.TryGetValue("size", out var z) || long.Parse(z, System.Globalization.CultureInfo.InvariantCulture) % Sector == 0)
                && Child(g, n, "file") is { } c && Predictable(s, c),
            "throttle" => g.Objects.TryGetValue(n.Str("throttle-group") ?? "", out var tg) && !tg.Props.ContainsKey("limits")
                && Primary(g, n) is { } p1 && Predictable(s, p1),
            "preallocate" => Primary(g, n) is { } p2 && Predictable(s, p2),
            "blkdebug" => !n.Options.ContainsKey("inject-error") && !n.Options.ContainsKey("align") && Primary(g, n) is { } p3 && Predictable(s, p3),
            "copy-on-read" => Child(g, n, "file") is { } p4 && g.ChildEdge(p4, "backing") is null && Predictable(s, p4),
            // Its copies carry the source's bytes into the target: unknown bytes (null-co) would become "known" zeroes.
            "copy-before-write" => Child(g, n, "file") is { } src && Child(g, n, "target") is { } tgt && Predictable(s, src) && Predictable(s, tgt) && ReadsKnown(g, src)
                && Length(s, tgt) >= Length(s, src) && !n.Options.ContainsKey("on-cbw-error") && !n.Options.ContainsKey("cbw-timeout"),
            "snapshot-access" => Child(g, n, "file") is { } cbw && g.Nodes[cbw].Driver == "copy-before-write" && Predictable(s, cbw),
            _ => false,
        };
    }

    /// <summary>True when every byte read through <paramref name="node"/> is known (null-co without read-zeroes leaves buffers as they were).</summary>
    private static bool ReadsKnown(Graph g, string node)
    {
        var n = g.Nodes[node];
        return n.Driver switch
        {
            "file" => true,
            "null-co" or "null-aio" => n.Options.GetOr("read-zeroes", "false") == "true",
            "copy-before-write" => Child(g, n, "file") is { } src && ReadsKnown(g, src),
            "snapshot-access" => Child(g, n, "file") is { } cbw && g.Nodes[cbw] is var c
                && Child(g, c, "file") is { } a && Child(g, c, "target") is { } b && ReadsKnown(g, a) && ReadsKnown(g, b),
            _ => Primary(g, n) is { } p && ReadsKnown(g, p),
        };
    }

    /// <summary>The predicted bytes of <paramref name="count"/> sectors from <paramref name="sector"/> (null: unknown).</summary>
    public static byte?[] Read(ModelState s, string node, long sector, int count)
    {
        ArgumentNullException.ThrowIfNull(s);
        var result = new byte?[count];
        for (int i = 0; i < count; i++) result[i] = ReadSector(s, node, sector + i);
        return result;
    }

    /// <summary>The errno a read of these sectors fails with (a read fault on a host file it reaches), or 0.</summary>
    public static int ReadErrno(ModelState s, string node, long sector, int count)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Graph.Faults.Count == 0) return 0;
        for (int i = 0; i < count; i++)
        {
            var (leaf, _) = Route(s, node, sector + i);
            if (leaf?.Driver == "file" && HostFaults.Of(s.Graph, leaf.Str("filename")!, "read") is var e and not 0) return e;
        }
        return 0;
    }

    private static byte? ReadSector(ModelState s, string node, long sector)
    {
        var (leaf, at) = Route(s, node, sector);
        return leaf?.Driver switch
        {
            "file" => s.Data.Files[leaf.Str("filename")!].Sectors.TryGetValue(at, out var b) ? b : (byte)0,
            _ => leaf!.Options.GetOr("read-zeroes", "false") == "true" ? (byte)0 : null, // null-co
        };
    }

    /// <summary>Where a read of one sector of <paramref name="node"/> lands: the protocol node and its sector.</summary>
    private static (Node? Leaf, long Sector) Route(ModelState s, string node, long sector)
    {
        var g = s.Graph;
        while (true)
        {
            var n = g.Nodes[node];
            switch (n.Driver)
            {
                case "file" or "null-co" or "null-aio":
                    return (n, sector);
                case "raw":
                    (node, sector) = (Child(g, n, "file")!, sector + RawOffset(n) / Sector);
                    break;
                case "snapshot-access":
                    var cbw = g.Nodes[Child(g, n, "file")!];
                    node = Child(g, cbw, s.Data.IsDone(cbw.Seq, sector / CbwClusterSectors) ? "target" : "file")!;
                    break;
                case "copy-before-write":
                    node = Child(g, n, "file")!;
                    break;
                default:
                    node = Primary(g, n)!;
                    break;
            }
        }
    }

    /// <summary>
    /// Applies a write of <paramref name="count"/> sectors filled with <paramref name="pattern"/>; errno 0 on
    /// success. A failed write returns the state as far as it got (copy-before-write's finished copies stay).
    /// </summary>
    public static (ModelState State, int Errno) Write(ModelState s, string node, long sector, int count, byte pattern)
    {
        ArgumentNullException.ThrowIfNull(s);
        var data = new byte[count];
        Array.Fill(data, pattern);
        return Write(s, node, sector, data);
    }

    /// <summary>Applies a write of one byte pattern per sector (<paramref name="data"/>) from <paramref name="sector"/>.</summary>
    private static (ModelState State, int Errno) Write(ModelState s, string node, long sector, byte[] data)
    {
        int count = data.Length;
        var g = s.Graph;
        var n = g.Nodes[node];
        switch (n.Driver)
        {
            case "file":
                var name = n.Str("filename")!;
                if (HostFaults.Of(g, name, "write") is var fault and not 0) return (s, fault);
                var f = s.Data.Files[name];
                var sectors = f.Sectors.ToBuilder();
                for (int i = 0; i < count; i++) sectors[sector + i] = data[i];
                return (s with { Data = s.Data with { Files = s.Data.Files.SetItem(name, f with { Sectors = sectors.ToImmutable() }) } }, 0);
            case "null-co" or "null-aio":
                return (s, 0);
            case "raw":
                return Write(s, Child(g, n, "file")!, sector + RawOffset(n) / Sector, data);
            case "snapshot-access":
                return (s, ENOTSUP);
            case "copy-before-write":
                return CopyBeforeWrite(s, n, sector, data);
            default:
                return Write(s, Primary(g, n)!, sector, data);
        }
    }

    /// <summary>Each cluster the write touches is copied source → target once, before the write lands on the source.</summary>
    private static (ModelState, int) CopyBeforeWrite(ModelState s, Node cbw, long sector, byte[] data)
    {
        int count = data.Length;
        var source = Child(s.Graph, cbw, "file")!;
        long first = sector / CbwClusterSectors, last = (sector + count - 1) / CbwClusterSectors;
        var (copiedState, copyErr, _) = CopyClusters(s, cbw, first, last);
        if (copyErr != 0) return (copiedState, copyErr);
        var done = copiedState.Data.Done.GetValueOrDefault(cbw.Seq, ImmutableSortedSet<long>.Empty);
        for (long c = first; c <= last; c++) done = done.Add(c);
        copiedState = copiedState with { Data = copiedState.Data with { Done = copiedState.Data.Done.SetItem(cbw.Seq, done) } };
        return Write(copiedState, source, sector, data);
    }

    /// <summary>
    /// A backup job's copy: every cluster of the source its copy-before-write filter has not copied yet is copied
    /// to the target, in order; errno 0, or the first fault's (the state keeps the copies made before it).
    /// </summary>
    public static (ModelState State, int Errno, bool Read) CopyAll(ModelState s, Node cbw)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(cbw);
        long sectors = Length(s, Child(s.Graph, cbw, "file")!)!.Value / Sector;
        return CopyClusters(s, cbw, 0, (sectors + CbwClusterSectors - 1) / CbwClusterSectors - 1);
    }

    /// <summary>Clusters <paramref name="firstCluster"/> … <paramref name="lastCluster"/> not yet copied go source → target, each once.</summary>
    private static (ModelState, int, bool) CopyClusters(ModelState s, Node cbw, long firstCluster, long lastCluster)
    {
        var g = s.Graph;
        var source = Child(g, cbw, "file")!;
        var target = Child(g, cbw, "target")!;
        long sourceSectors = Length(s, source)!.Value / Sector;
        var copied = s.Data.Copied.GetValueOrDefault(cbw.Seq, ImmutableSortedSet<long>.Empty);
        for (long c = firstCluster; c <= lastCluster; c++)
        {
            if (copied.Contains(c)) continue;
            long first = c * CbwClusterSectors, end = Math.Min(first + CbwClusterSectors, sourceSectors);
            // A cluster is read whole, then written whole; a fault in either fails the guest's write.
            if (ReadErrno(s, source, first, (int)(end - first)) is var readErr and not 0) return (s, readErr, true);
            var old = new byte[end - first];
            for (long x = first; x < end; x++) old[x - first] = ReadSector(s, source, x) ?? 0;
            var (copy, err) = Write(s, target, first, old);
            if (err != 0) return (s, err, false);
            copied = copied.Add(c);
            s = copy with { Data = copy.Data with { Copied = copy.Data.Copied.SetItem(cbw.Seq, copied) } };
        }
        return (s, 0, false);
    }

    private static long RawOffset(Node n) => n.Options.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;

    private static string? Child(Graph g, Node n, string name) => g.ChildEdge(n.Name, name)?.Child;

    private static string? Primary(Graph g, Node n) => Child(g, n, "file") ?? Child(g, n, "image");

    /// <summary><paramref name="node"/> and the nodes below it through file (or blkdebug's image) children, top first.</summary>
    public static IEnumerable<Node> DownPrimary(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        for (var n = g.Find(node); n is not null; n = Primary(g, n) is { } below ? g.Find(below) : null) yield return n;
    }
}
