using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Impl.Rules;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>
/// The backing file an image header names (block.c's <c>bdrv_open_backing_file</c> when the options give
/// no <c>backing</c>): its name made absolute against the image's directory (<c>bdrv_dirname</c>), a
/// <c>json:</c> name parsed as options, the format from the header (else probed), opened read-only as
/// auto-named nodes under the format node, and so on down the chain it names.
/// </summary>
public sealed partial class BlockEngine
{
    /// <summary>
    /// Longest chain of header-named backing files opened below one node. QEMU 7.2 has no bound (a chain
    /// that loops makes it recurse until it hangs, measured); Verified refuses instead.
    /// </summary>
    public const int HeaderBackingDepthMax = 64;

    /// <summary>A bound on the walk down primary children to the node that names the directory (graphs are acyclic; this only fails loudly).</summary>
    private const int PrimaryDepthMax = 4096;

    /// <summary>Bytes read from a backing file to probe its format: qcow2's magic.</summary>
    private const int ProbeBytes = 4;

    /// <summary>Full names of the header-named backing files being opened, outermost first (depth and loop checks).</summary>
    private readonly List<string> headerChain = [];

    /// <summary>
    /// Opens and attaches the backing file <paramref name="node"/>'s header names, if any. Errors come back
    /// as QEMU words them; every change is registered in <paramref name="tran"/>.
    /// </summary>
    private QmpError? OpenHeaderBacking(UndoLog tran, BlockNode node)
    {
        if (node.Driver is not IFormatFacts { HeaderBackingFile: { } header } facts) return null;
        var (full, dirErr) = FullBackingFilename(node, header, new(ReferenceEqualityComparer.Instance));
        // bdrv_get_full_backing_filename's error is returned as it is, without the backing context.
        if (dirErr is not null) return dirErr;
        var (options, optErr) = BackingOptions(full!, facts.HeaderBackingFormat);
        if (optErr is not null) return Backing(optErr);
        if (headerChain.Contains(full!, StringComparer.Ordinal)) return Backing($"Backing file '{full}' creates an infinite loop.");
        if (headerChain.Count >= HeaderBackingDepthMax) return Backing($"Backing chain longer than {HeaderBackingDepthMax} images");
        headerChain.Add(full!);
        try
        {
            // Inherited like an inline child's options: force-share (the rest follows InheritsFrom).
            var opts = options!;
            if (node.Options.TryGetValue("force-share", out var fs)) opts = opts with { Scalars = opts.Scalars.SetItem("force-share", fs) };
            var (child, err) = Open(tran, opts, node.ReadOnly, asBacking: true);
            if (err is not null) return err with { Desc = BackingContext + err.Desc };
            System.Diagnostics.Debug.Assert(child is not null && !child.Deleted && child.RefCount == 0, "the backing node is new and not yet referenced");
            SetInheritsFrom(tran, child!, node);
            AttachChild(tran, node, "backing", child!, PermRules.RoleOf(node.DriverName, "backing", node.Options));
            // An implicit backing file is not an override of the header's name, whatever form that name had (json:, relative).
            // No undo: the node is new in this transaction and goes with it on abort.
            node.AutoBackingFile = FileNamesOf(child!, new(ReferenceEqualityComparer.Instance)).Filename;
            return null;
        }
        finally
        {
            headerChain.RemoveAt(headerChain.Count - 1);
        }
    }

    /// <summary>bdrv_open_backing_file's context for every failure below it.</summary>
    private const string BackingContext = "Could not open backing file: ";

    private static QmpError Backing(string desc) => QmpError.Generic(BackingContext + desc);

    /// <summary>
    /// bdrv_make_absolute_filename against bdrv_dirname: a name with a protocol prefix, or an absolute one,
    /// stays as it is; a relative one is appended to the directory of the exact file name found down the
    /// primary children (QEMU's path_combine with an empty name).
    /// </summary>
    private static (string? Full, QmpError? Error) FullBackingFilename(BlockNode node, string header, Dictionary<BlockNode, FileNames> memo)
    {
        if (header.StartsWith('/') || ProtocolPrefix(header) is not null) return (header, null);
        var leaf = node;
        for (int i = 0; i < PrimaryDepthMax && Primary(leaf) is { } p; i++) leaf = p;
        var exact = FileNamesOf(leaf, memo).Exact;
        if (string.IsNullOrEmpty(exact)) return (null, QmpError.Generic($"Cannot generate a base directory for {leaf.DriverName} nodes"));
        int colon = ProtocolPrefix(exact) is { } proto ? proto.Length + 1 : 0;
        int slash = exact.LastIndexOf('/') + 1;
        return (exact[..Math.Max(colon, slash)] + header, null);
    }

    /// <summary>path_has_protocol: the name's <c>proto:</c> prefix (before any slash), or null.</summary>
    private static string? ProtocolPrefix(string name)
    {
        int colon = name.IndexOf(':', StringComparison.Ordinal);
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        return colon > 0 && (slash < 0 || colon < slash) ? name[..colon] : null;
    }

    /// <summary>
    /// The options the backing file is opened with: a <c>json:</c> name's own, else the header's format (or the
    /// probed one) over the protocol the name selects (bdrv_fill_options, bdrv_find_protocol). Read-only comes
    /// from opening it as a backing child.
    /// </summary>
    private (BlockdevOptions? Options, string? Error) BackingOptions(string full, string? format)
    {
        if (full.StartsWith("json:", StringComparison.Ordinal))
        {
            JsonObject? json;
            try
            {
                json = JsonNode.Parse(full["json:".Length..]) as JsonObject;
            }
            catch (JsonException)
            {
                json = null;
            }
            if (json is null) return (null, "Could not parse the JSON options");
            if (format is not null && !json.ContainsKey("driver")) json["driver"] = format;
            var (parsed, err) = BlockdevSchema.Parse(json);
            return err is null ? (parsed, null) : (null, err.Desc);
        }
        string path = full;
        if (ProtocolPrefix(full) is { } proto)
        {
            if (proto != "file") return (null, $"Unknown protocol '{proto}'");
            path = full["file:".Length..];
        }
        format ??= Probe(path);
        if (BlockdevSchema.Get(format) is null) return (null, $"Unknown driver '{format}'");
        var fileOpt = ValueMap<string>.Empty.SetItem("filename", JsonSerializer.Serialize(path));
        if (PermRules.IsProtocol(format)) return (new BlockdevOptions(format, null, fileOpt, ValueList<ChildOption>.Empty), null);
        var file = new BlockdevOptions("file", null, fileOpt, ValueList<ChildOption>.Empty);
        return (new BlockdevOptions(format, null, ValueMap<string>.Empty, ValueList<ChildOption>.From([new ChildOption("file", new BlockdevRefInline(file))])), null);
    }

    /// <summary>
    /// find_image_format among Verified's formats: qcow2 by its magic, else raw. A file that cannot be read
    /// probes as raw here; opening it then fails with the file driver's own error, as in QEMU.
    /// </summary>
    private string Probe(string path)
    {
        var head = new byte[ProbeBytes];
        try
        {
            using var f = File.OpenRead(Services.Storage.Resolve(path));
            return f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length
                && BinaryPrimitives.ReadUInt32BigEndian(head) == Formats.Qcow2Image.Magic ? "qcow2" : "raw";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "raw";
        }
    }
}
