using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// Image formats on host files, and what a qcow2 node finds when it opens: QEMU's qcow2 driver reads
/// the header at offset 0 of its <c>file</c> child, through whatever stack that child is, and refuses
/// anything without qcow2's magic. The model knows each pool file's format (<see cref="Graph.ImageFormats"/>);
/// a file it does not know (scenarios name files the model never saw) is taken to hold a qcow2 image.
/// </summary>
/// <remarks>
/// Pool files are never written through a qcow2 node in a campaign (qcow2 stacks are unpredictable, so
/// no I/O goes to them), and a qcow2 pool file is never predictable either, so its header stays intact.
/// </remarks>
public static class Images
{
    /// <summary>The format name of a qcow2 image.</summary>
    public const string Qcow2 = "qcow2";

    /// <summary>QEMU's error for a file child without the qcow2 magic.</summary>
    public const string NotQcow2 = "Image is not in qcow2 format";

    /// <summary>errno of a read the node cannot serve.</summary>
    private const int ENOTSUP = 95;

    /// <summary>What the header read finds.</summary>
    private enum Header { Qcow2, Other, ReadFault }

    /// <summary>The error a qcow2 node over <paramref name="file"/> fails to open with, or null.</summary>
    public static QmpError? Qcow2OpenError(Graph g, string file, Func<long, long, bool>? copied = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        var (header, errno, _) = At(g, file, 0, copied ?? ((_, _) => false));
        return header switch
        {
            Header.Qcow2 => null,
            Header.ReadFault => Results.Fail($"Could not read qcow2 header: {HostFaults.ErrnoText(errno)}"),
            _ => Results.Fail(NotQcow2),
        };
    }

    /// <summary>
    /// Follows a read of offset <paramref name="offset"/> of <paramref name="node"/> down to the bytes that answer
    /// it: a host file (qcow2 only at offset 0 of a qcow2 file), null-co (zeroes), or an unwritten qcow2 layer
    /// (its backing child, else zeroes). Filters pass through; raw shifts by its offset; snapshot-access reads
    /// its source (no cluster 0 of a qcow2 stack is ever copied: copies need a predictable source).
    /// </summary>
    private static (Header, int Errno, string? Host) At(Graph g, string node, long offset, Func<long, long, bool> copied)
    {
        var n = g.Nodes[node];
        string? Child(string name) => g.ChildEdge(node, name)?.Child;
        switch (n.Driver)
        {
            case "file":
                var name = n.Str("filename") ?? "";
                if (HostFaults.Of(g, name, "read") is var errno and not 0) return (Header.ReadFault, errno, name);
                bool qcow2 = !g.ImageFormats.TryGetValue(name, out var format) || format == Qcow2;
                return (qcow2 && offset == 0 ? Header.Qcow2 : Header.Other, 0, name);
            case "null-co" or "null-aio":
                return (Header.Other, 0, null);
            case "raw":
                long shift = n.Options.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;
                return At(g, Child("file")!, offset + shift, copied);
            case Qcow2:
                return Child("backing") is { } backing ? At(g, backing, offset, copied) : (Header.Other, 0, null);
            case "snapshot-access":
                // Only copy-before-write serves snapshot reads; over anything else they fail "Operation not supported".
                var cbw = Child("file")!;
                if (g.Nodes[cbw].Driver != "copy-before-write") return (Header.ReadFault, ENOTSUP, null);
                // A cluster a guest write went through (copied first) reads from the target.
                bool inTarget = copied(g.Nodes[cbw].Seq, offset / (Data.CbwClusterSectors * Data.Sector));
                return At(g, g.ChildEdge(cbw, inTarget ? "target" : "file")!.Child, offset, copied);
            default:
                return (Child("file") ?? Child("image")) is { } below ? At(g, below, offset, copied) : (Header.Other, 0, null);
        }
    }

    /// <summary>
    /// The options of the backing file named by the header a qcow2 node over <paramref name="file"/> reads, or null
    /// when it names none (bdrv_open_backing_file without a backing option): the name against the directory of the
    /// host file holding the header, the header's format (else the file's known one), a file node below.
    /// </summary>
    public static BlockdevOptions? HeaderBackingOptions(Graph g, string file, Func<long, long, bool>? copied = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        var (header, _, host) = At(g, file, 0, copied ?? ((_, _) => false));
        if (header != Header.Qcow2 || host is null || !g.HeaderBackings.TryGetValue(host, out var b)) return null;
        var path = b.Name.StartsWith('/') ? b.Name : host[..(host.LastIndexOf('/') + 1)] + b.Name;
        var fileOpts = new BlockdevOptions("file", null, ValueMap<string>.Empty.SetItem("filename", System.Text.Json.JsonSerializer.Serialize(path)), ValueList<ChildOption>.Empty);
        var format = b.Format ?? g.ImageFormats.GetOr(path, Qcow2);
        return Drivers.IsProtocol(format) ? fileOpts with { Driver = format }
            : new BlockdevOptions(format, null, ValueMap<string>.Empty, ValueList<ChildOption>.From([new ChildOption("file", new BlockdevRefInline(fileOpts))]));
    }

    /// <summary>
    /// The plain file name <c>bdrv_refresh_filename</c> gives <paramref name="node"/>, where the model can tell it
    /// (what <c>blockdev-snapshot-sync</c> writes into the overlay's header): a file node's name; a raw node without
    /// offset or size, or a qcow2 node without backing either way, directly over a file node. Otherwise null
    /// (QEMU writes a <c>json:</c> name the model does not build).
    /// </summary>
    public static string? PlainFileName(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        var n = g.Nodes[node];
        if (n.Driver == "file") return n.Str("filename");
        if (g.ChildEdge(node, "file") is not { } f || g.Nodes[f.Child].Driver != "file") return null;
        bool plain = n.Driver switch
        {
            "raw" => !n.Options.ContainsKey("offset") && !n.Options.ContainsKey("size"),
            Qcow2 => g.ChildEdge(node, "backing") is null && HeaderBackingOptions(g, f.Child) is null,
            _ => false,
        };
        return plain ? g.Nodes[f.Child].Str("filename") : null;
    }

    /// <summary>
    /// True when opening a qcow2 node over <paramref name="file"/> would read through a copy-on-read filter
    /// above a backing chain: that read copies data up into the chain (the header lands in a qcow2 layer), which
    /// the model does not track. Generators avoid it.
    /// </summary>
    public static bool HeaderReadCopiesUp(Graph g, string file)
    {
        ArgumentNullException.ThrowIfNull(g);
        for (var node = file; node is not null;)
        {
            var n = g.Nodes[node];
            var below = n.Driver switch
            {
                "snapshot-access" => g.ChildEdge(g.ChildEdge(node, "file")!.Child, "file")?.Child is { } src && g.Nodes[g.ChildEdge(node, "file")!.Child].Driver == "copy-before-write" ? src : null,
                Qcow2 => g.ChildEdge(node, "backing")?.Child,
                _ => (g.ChildEdge(node, "file") ?? g.ChildEdge(node, "image"))?.Child,
            };
            if (n.Driver == "copy-on-read" && below is not null && g.ChildEdge(below, "backing") is not null) return true;
            if (n.Driver is "file" or "null-co" or "null-aio") return false;
            node = below;
        }
        return false;
    }
}

/// <summary>The backing file a qcow2 header names: the name as written, and the format its extension records (null: probed).</summary>
public sealed record HeaderBacking(string Name, string? Format);
