using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>A reference to a child node in blockdev options: an existing node's name or inline options.</summary>
public abstract record BlockdevRef;

/// <summary>A child given by the node-name of an existing node.</summary>
public sealed record BlockdevRefName(string Name) : BlockdevRef;

/// <summary>A child given inline; it is created with its parent and lives and dies with it.</summary>
public sealed record BlockdevRefInline(BlockdevOptions Options) : BlockdevRef;

/// <summary>One child member of blockdev options (<c>file</c>, <c>backing</c>, <c>target</c>, <c>image</c>).</summary>
/// <param name="Key">The member name, which is also the child edge's name.</param>
/// <param name="Ref">The child, or null for an explicit JSON <c>null</c> ("no backing").</param>
public sealed record ChildOption(string Key, BlockdevRef? Ref);

/// <summary>
/// Parsed <c>BlockdevOptions</c> (the argument of blockdev-add): driver, node-name, scalar options in
/// canonical JSON text (so options compare by value), and child references in the driver's open order.
/// </summary>
public sealed record BlockdevOptions(string Driver, string? NodeName, ValueMap<string> Scalars, ValueList<ChildOption> Children)
{
    /// <summary>The <c>read-only</c> option if given.</summary>
    public bool? ReadOnly => BoolOption("read-only");

    /// <summary>The <c>force-share</c> option if given.</summary>
    public bool? ForceShare => BoolOption("force-share");

    /// <summary>A boolean option if present.</summary>
    public bool? BoolOption(string key) => Scalars.TryGetValue(key, out var v) ? v == "true" : null;

    /// <summary>An integer option if present.</summary>
    public long? IntOption(string key) => Scalars.TryGetValue(key, out var v) ? long.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : null;

    /// <summary>A string option if present.</summary>
    public string? StrOption(string key) => Scalars.TryGetValue(key, out var v) ? JsonNode.Parse(v)!.GetValue<string>() : null;

    /// <summary>The child member <paramref name="key"/>, if present.</summary>
    public ChildOption? Child(string key) => Children.FirstOrDefault(c => c.Key == key);

    /// <summary>
    /// bdrv_inherited_options' <c>force-share</c>: every inline child (and an image's implicit backing file) copies
    /// the parent's value unless it sets its own. Applied one level at a time, so it reaches the whole tree.
    /// </summary>
    public BlockdevOptions WithInheritedForceShare()
    {
        if (!Scalars.TryGetValue("force-share", out var fs)) return this;
        var children = Children.Select(c => c.Ref is BlockdevRefInline { Options: var co } && !co.Scalars.ContainsKey("force-share")
            ? c with { Ref = new BlockdevRefInline(co with { Scalars = co.Scalars.SetItem("force-share", fs) }) } : c);
        return this with { Children = ValueList<ChildOption>.From(children) };
    }

    /// <summary>The options as QMP JSON (canonical member order: driver, node-name, scalars, children).</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject { ["driver"] = Driver };
        if (NodeName is not null) o["node-name"] = NodeName;
        foreach (var kv in Scalars) o[kv.Key] = JsonNode.Parse(kv.Value);
        foreach (var c in Children)
        {
            o[c.Key] = c.Ref switch
            {
                null => null,
                BlockdevRefName n => JsonValue.Create(n.Name),
                BlockdevRefInline i => i.Options.ToJson(),
                _ => throw new InvalidOperationException("unknown BlockdevRef"),
            };
        }
        return o;
    }
}

/// <summary>
/// The QAPI schema of the drivers Verified knows, and the parser of <c>BlockdevOptions</c> with QEMU's
/// error texts and checking order (base members, then the driver's members, then unexpected members).
/// </summary>
public static class BlockdevSchema
{
    /// <summary>A child member: its name, whether it is required, and whether JSON null is allowed.</summary>
    public sealed record ChildField(string Name, bool Required, bool Nullable);

    /// <summary>One driver: its members in QAPI order, children flagged.</summary>
    public sealed record DriverSchema(string Name, IReadOnlyList<object> Members)
    {
        /// <summary>The child members in open order.</summary>
        public IEnumerable<ChildField> ChildFields => Members.OfType<ChildField>();
    }

    private static readonly string[] PermNames = ["consistent-read", "write", "write-unchanged", "resize"];

    private static readonly Field[] BaseFields =
    [
        new("node-name", FieldType.Str),
        new("discard", new FieldType.Enum(["ignore", "unmap"])),
        new("cache", new FieldType.Struct([new("direct", FieldType.Bool), new("no-flush", FieldType.Bool)])),
        new("read-only", FieldType.Bool),
        new("auto-read-only", FieldType.Bool),
        new("force-share", FieldType.Bool),
        new("detect-zeroes", new FieldType.Enum(["off", "on", "unmap"])),
    ];

    private static readonly ChildField File = new("file", true, false);

    private static readonly Dictionary<string, DriverSchema> Drivers = new DriverSchema[]
    {
        new("file", [new Field("filename", FieldType.Str, false), new Field("locking", new FieldType.Enum(["off", "on", "auto"])),
            new Field("aio", new FieldType.Enum(["threads", "native", "io_uring"])), new Field("drop-cache", FieldType.Bool)]),
        new("null-co", NullFields()),
        new("null-aio", NullFields()),
        new("raw", [File, new Field("offset", FieldType.Int), new Field("size", FieldType.Int)]),
        new("qcow2", [File, new ChildField("backing", false, true), new Field("lazy-refcounts", FieldType.Bool),
            new Field("pass-discard-request", FieldType.Bool), new Field("pass-discard-snapshot", FieldType.Bool),
            new Field("pass-discard-other", FieldType.Bool), new Field("cache-size", FieldType.Int),
            new Field("l2-cache-size", FieldType.Int), new Field("refcount-cache-size", FieldType.Int)]),
        new("throttle", [new Field("throttle-group", FieldType.Str, false), File]),
        new("copy-on-read", [File, new Field("bottom", FieldType.Str)]),
        new("copy-before-write", [File, new ChildField("target", true, false),
            new Field("bitmap", new FieldType.Struct([new("node", FieldType.Str, false), new("name", FieldType.Str, false)])),
            new Field("on-cbw-error", new FieldType.Enum(["break-guest-write", "break-snapshot"])),
            new Field("cbw-timeout", FieldType.Int),
            // Verified's own: which permission scheme the filter follows (see spec/permissions.md).
            new Field("x-perm-scheme", new FieldType.Enum(["strict", "upstream"]))]),
        new("snapshot-access", [File]),
        new("preallocate", [File, new Field("prealloc-align", FieldType.Int), new Field("prealloc-size", FieldType.Int)]),
        new("compress", [File]),
        new("blkdebug", [new ChildField("image", true, false), new Field("config", FieldType.Str), new Field("align", FieldType.Int),
            new Field("max-transfer", FieldType.Int),
            new Field("inject-error", new FieldType.List(new FieldType.Struct([
                new("event", FieldType.Str, false), new("state", FieldType.Int), new("iotype", FieldType.Str),
                new("errno", FieldType.Int), new("sector", FieldType.Int), new("once", FieldType.Bool), new("immediately", FieldType.Bool)]))),
            new Field("set-state", new FieldType.List(new FieldType.Struct([
                new("event", FieldType.Str, false), new("state", FieldType.Int), new("new_state", FieldType.Int, false)]))),
            new Field("take-child-perms", new FieldType.List(new FieldType.Enum(PermNames))),
            new Field("unshare-child-perms", new FieldType.List(new FieldType.Enum(PermNames)))]),
    }.ToDictionary(d => d.Name, StringComparer.Ordinal);

    private static object[] NullFields() =>
        [new Field("size", FieldType.Int), new Field("latency-ns", FieldType.Int), new Field("read-zeroes", FieldType.Bool)];

    /// <summary>Every driver name Verified accepts, sorted.</summary>
    public static IReadOnlyList<string> DriverNames { get; } = Drivers.Keys.Order(StringComparer.Ordinal).ToArray();

    /// <summary>The schema of <paramref name="driver"/>, or null if unknown.</summary>
    public static DriverSchema? Get(string driver) => Drivers.GetValueOrDefault(driver);

    /// <summary>Parses blockdev options; <paramref name="prefix"/> is the member path for error texts.</summary>
    public static (BlockdevOptions? Options, QmpError? Error) Parse(JsonNode? node, string prefix = "")
    {
        if (node is not JsonObject obj)
            return (null, QmpError.Generic($"Invalid parameter type for '{(prefix.Length == 0 ? "null" : prefix)}', expected: object"));
        if (!obj.TryGetPropertyValue("driver", out var drvNode))
            return (null, QmpError.Generic($"Parameter '{SchemaCheck.Path(prefix, "driver")}' is missing"));
        if (drvNode is not JsonValue dv || dv.GetValueKind() != System.Text.Json.JsonValueKind.String)
            return (null, QmpError.Generic($"Invalid parameter type for '{SchemaCheck.Path(prefix, "driver")}', expected: string"));
        var driver = dv.GetValue<string>();
        var schema = Get(driver);
        if (schema is null)
            return (null, QmpError.Generic($"Parameter '{SchemaCheck.Path(prefix, "driver")}' does not accept value '{driver}'"));

        var err = SchemaCheck.CheckFields(obj, BaseFields, prefix);
        if (err is not null) return (null, err);

        var scalars = ValueMap<string>.Empty;
        var children = new List<ChildOption>();
        foreach (var f in BaseFields)
        {
            if (obj.TryGetPropertyValue(f.Name, out var v) && f.Name != "node-name") scalars = scalars.SetItem(f.Name, SchemaCheck.Canonical(v));
        }
        foreach (var m in schema.Members)
        {
            if (m is Field f)
            {
                err = SchemaCheck.CheckFields(obj, [f], prefix);
                if (err is not null) return (null, err);
                if (obj.TryGetPropertyValue(f.Name, out var v)) scalars = scalars.SetItem(f.Name, SchemaCheck.Canonical(v));
                continue;
            }
            var c = (ChildField)m;
            var path = SchemaCheck.Path(prefix, c.Name);
            if (!obj.TryGetPropertyValue(c.Name, out var cv))
            {
                if (c.Required) return (null, QmpError.Generic($"Parameter '{path}' is missing"));
                continue;
            }
            var (child, childErr) = ParseRef(cv, path, c.Nullable);
            if (childErr is not null) return (null, childErr);
            children.Add(new ChildOption(c.Name, child));
        }
        err = SchemaCheck.CheckUnexpected(obj, schema.Members.Select(m => m is Field f ? f.Name : ((ChildField)m).Name)
            .Concat(BaseFields.Select(f => f.Name)).Append("driver"), prefix);
        if (err is not null) return (null, err);

        string? nodeName = obj.TryGetPropertyValue("node-name", out var nn) ? nn!.GetValue<string>() : null;
        return (new BlockdevOptions(driver, nodeName, scalars, ValueList<ChildOption>.From(children)), null);
    }

    private static (BlockdevRef? Ref, QmpError? Error) ParseRef(JsonNode? v, string path, bool nullable)
    {
        switch (v)
        {
            case null when nullable:
                return (null, null);
            case JsonValue jv when jv.GetValueKind() == System.Text.Json.JsonValueKind.String:
                return (new BlockdevRefName(jv.GetValue<string>()), null);
            case JsonObject:
                var (opts, err) = Parse(v, path);
                return err is null ? (new BlockdevRefInline(opts!), null) : (null, err);
            default:
                return (null, QmpError.Generic($"Invalid parameter type for '{path}', expected: {(nullable ? "BlockdevRefOrNull" : "BlockdevRef")}"));
        }
    }
}
