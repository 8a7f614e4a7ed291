using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>
/// Parses QMP <c>execute</c> + <c>arguments</c> into <see cref="Command"/> records with QEMU's error
/// texts: unknown commands are <c>CommandNotFound</c>, argument errors are QAPI visitor errors
/// (<c>Parameter 'x' is missing</c>, <c>… is unexpected</c>, <c>Invalid parameter type …</c>).
/// </summary>
public static class CommandParser
{
    /// <summary>Transaction action types: QEMU 7.2's that Verified models, plus the series' graph actions.</summary>
    public static readonly IReadOnlyList<string> ActionTypes =
    [
        "abort", "block-dirty-bitmap-add", "block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
        "block-dirty-bitmap-enable", "block-dirty-bitmap-disable", "block-dirty-bitmap-merge",
        "blockdev-snapshot", "blockdev-snapshot-sync", "blockdev-add", "blockdev-del", "x-blockdev-replace", "blockdev-backup",
    ];

    private static readonly FieldType.Enum ParentType = new(["qdev", "driver", "export"]);

    private static readonly string[] ThrottleLimitNames =
    [
        "iops-total", "iops-total-max", "iops-total-max-length", "iops-read", "iops-read-max", "iops-read-max-length",
        "iops-write", "iops-write-max", "iops-write-max-length", "bps-total", "bps-total-max", "bps-total-max-length",
        "bps-read", "bps-read-max", "bps-read-max-length", "bps-write", "bps-write-max", "bps-write-max-length", "iops-size",
    ];

    /// <summary>Device models Verified knows.</summary>
    public static readonly IReadOnlyList<string> DeviceModels = ["virtio-blk-pci", "scsi-hd", "virtio-scsi-pci", "virtio-scsi"];

    /// <summary>Parses a whole QMP request object (<c>{"execute": …, "arguments": …}</c>).</summary>
    public static (Command? Command, QmpError? Error) ParseRequest(JsonObject request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.TryGetPropertyValue("execute", out var exec)) return (null, QmpError.Generic("QMP input lacks member 'execute'"));
        if (exec is not JsonValue ev || ev.GetValueKind() != JsonValueKind.String)
            return (null, QmpError.Generic("QMP input member 'execute' must be a string"));
        JsonObject? args = null;
        if (request.TryGetPropertyValue("arguments", out var a))
        {
            if (a is not JsonObject ao) return (null, QmpError.Generic("QMP input member 'arguments' must be an object"));
            args = ao;
        }
        return Parse(ev.GetValue<string>(), args);
    }

    /// <summary>Parses one command by name; <paramref name="args"/> may be null (no arguments).</summary>
    public static (Command? Command, QmpError? Error) Parse(string name, JsonObject? args)
    {
        ArgumentNullException.ThrowIfNull(name);
        args ??= [];
        try
        {
            return name switch
            {
                "transaction" => ParseTransaction(args),
                "blockdev-reopen" => ParseReopen(args),
                "device_add" => ParseDeviceAdd(args),
                "object-add" => ParseObjectAdd(args),
                "block-export-add" => ParseExportAdd(args),
                "nbd-server-add" => ParseNbdServerAdd(args),
                "nbd-server-start" => Struct(args, "", [new("addr", FieldType.Any, false), new("tls-creds", FieldType.Str),
                    new("tls-authz", FieldType.Str), new("max-connections", FieldType.Int)], a => new NbdServerStart(SchemaCheck.Canonical(a["addr"]))),
                "nbd-server-stop" => Struct(args, "", [], _ => new NbdServerStop()),
                "x-debug-query-block-graph" or "query-block-exports" => Struct(args, "", [], _ => new Query(name)),
                "query-named-block-nodes" => Struct(args, "", [new("flat", FieldType.Bool)], a => new Query(name, a.TryGetPropertyValue("flat", out var f) && f?.GetValue<bool>() == true)),
                _ when Jobs.JobCommandParser.Handles(name) => Jobs.JobCommandParser.Parse(name, args, ""),
                _ => ParseAction(name, args, ""),
            };
        }
        catch (InvalidOperationException)
        {
            // A JSON node of an unexpected shape that slipped past the schema: report it like QEMU's visitor.
            return (null, QmpError.Generic("Invalid parameter type"));
        }
    }

    /// <summary>Parses a command that can also be a transaction action.</summary>
    private static (Command?, QmpError?) ParseAction(string name, JsonObject args, string prefix)
    {
        switch (name)
        {
            case "blockdev-add":
                var (opts, err) = BlockdevSchema.Parse(args, prefix);
                return err is null ? (new BlockdevAdd(opts!), null) : (null, err);
            case "blockdev-del":
                return Struct(args, prefix, [new("node-name", FieldType.Str, false)], a => new BlockdevDel(S(a, "node-name")!));
            case "x-blockdev-replace":
                return ParseReplace(args, prefix);
            case "abort":
                return Struct(args, prefix, [], _ => new AbortAction());
            case "blockdev-snapshot":
                return Struct(args, prefix, [new("node", FieldType.Str, false), new("overlay", FieldType.Str, false)],
                    a => new BlockdevSnapshot(S(a, "node")!, S(a, "overlay")!));
            case "blockdev-snapshot-sync":
                return Struct(args, prefix, [new("device", FieldType.Str), new("node-name", FieldType.Str),
                    new("snapshot-file", FieldType.Str, false), new("snapshot-node-name", FieldType.Str), new("format", FieldType.Str),
                    new("mode", new FieldType.Enum(["existing", "absolute-paths"]))],
                    a => new BlockdevSnapshotSync(S(a, "device"), S(a, "node-name"), S(a, "snapshot-file")!, S(a, "snapshot-node-name"),
                        S(a, "format") ?? "qcow2", S(a, "mode") ?? "absolute-paths"));
            case "block-dirty-bitmap-add":
                return Struct(args, prefix, [new("node", FieldType.Str, false), new("name", FieldType.Str, false),
                    new("granularity", FieldType.UInt32), new("persistent", FieldType.Bool), new("disabled", FieldType.Bool)],
                    a => new BitmapCommand(BitmapOp.Add, S(a, "node")!, S(a, "name")!, I(a, "granularity"),
                        B(a, "persistent") ?? false, B(a, "disabled") ?? false));
            case "block-dirty-bitmap-remove" or "block-dirty-bitmap-clear" or "block-dirty-bitmap-enable" or "block-dirty-bitmap-disable":
                var op = Enum.Parse<BitmapOp>(name["block-dirty-bitmap-".Length..], ignoreCase: true);
                return Struct(args, prefix, [new("node", FieldType.Str, false), new("name", FieldType.Str, false)],
                    a => new BitmapCommand(op, S(a, "node")!, S(a, "name")!));
            case "block-dirty-bitmap-merge":
                return ParseMerge(args, prefix);
            case "device_del":
                return Struct(args, prefix, [new("id", FieldType.Str, false)], a => new DeviceDel(S(a, "id")!));
            case "qom-set":
                return Struct(args, prefix, [new("path", FieldType.Str, false), new("property", FieldType.Str, false), new("value", FieldType.Any, false)],
                    a => new QomSet(S(a, "path")!, S(a, "property")!, SchemaCheck.Canonical(a["value"])));
            case "qom-get":
                return Struct(args, prefix, [new("path", FieldType.Str, false), new("property", FieldType.Str, false)],
                    a => new QomGet(S(a, "path")!, S(a, "property")!));
            case "block-export-del":
                return Struct(args, prefix, [new("id", FieldType.Str, false), new("mode", new FieldType.Enum(["safe", "hard"]))],
                    a => new BlockExportDel(S(a, "id")!, S(a, "mode") ?? "safe"));
            case "x-blockdev-change":
                return Struct(args, prefix, [new("parent", FieldType.Str, false), new("child", FieldType.Str), new("node", FieldType.Str)],
                    a => new BlockdevChange(S(a, "parent")!, S(a, "child"), S(a, "node")));
            case "object-del":
                return Struct(args, prefix, [new("id", FieldType.Str, false)], a => new ObjectDel(S(a, "id")!));
            case "blockdev-backup":
                return Jobs.JobCommandParser.Parse(name, args, prefix);
            default:
                return (null, new QmpError(ErrorClass.CommandNotFound, $"The command {name} has not been found"));
        }
    }

    private static (Command?, QmpError?) ParseReplace(JsonObject args, string prefix)
    {
        var err = SchemaCheck.CheckFields(args, [new("parent-type", ParentType, false), new("new-child", FieldType.Str, false)], prefix);
        if (err is not null) return (null, err);
        var type = S(args, "parent-type")!;
        Field[] variant = type switch
        {
            "driver" => [new("node-name", FieldType.Str, false), new("child", FieldType.Str, false)],
            "qdev" => [new("qdev-id", FieldType.Str, false)],
            _ => [new("export-id", FieldType.Str, false)],
        };
        err = SchemaCheck.CheckFields(args, variant, prefix)
            ?? SchemaCheck.CheckUnexpected(args, variant.Select(f => f.Name).Append("parent-type").Append("new-child"), prefix);
        if (err is not null) return (null, err);
        ReplaceParent parent = type switch
        {
            "driver" => new ReplaceDriverParent(S(args, "node-name")!, S(args, "child")!),
            "qdev" => new ReplaceQdevParent(S(args, "qdev-id")!),
            _ => new ReplaceExportParent(S(args, "export-id")!),
        };
        return (new BlockdevReplace(parent, S(args, "new-child")!), null);
    }

    private static (Command?, QmpError?) ParseMerge(JsonObject args, string prefix)
    {
        var err = SchemaCheck.CheckFields(args, [new("node", FieldType.Str, false), new("target", FieldType.Str, false),
            new("bitmaps", FieldType.Any, false)], prefix);
        if (err is not null) return (null, err);
        if (args["bitmaps"] is not JsonArray arr) return (null, QmpError.Generic($"Invalid parameter type for '{SchemaCheck.Path(prefix, "bitmaps")}', expected: array"));
        var sources = new List<BitmapRef>();
        for (int i = 0; i < arr.Count; i++)
        {
            var path = $"{SchemaCheck.Path(prefix, "bitmaps")}[{i}]";
            switch (arr[i])
            {
                case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                    sources.Add(new BitmapRef(null, v.GetValue<string>()));
                    break;
                case JsonObject o:
                    err = SchemaCheck.CheckValue(o, new FieldType.Struct([new("node", FieldType.Str, false), new("name", FieldType.Str, false)]), path);
                    if (err is not null) return (null, err);
                    sources.Add(new BitmapRef(S(o, "node"), S(o, "name")!));
                    break;
                default:
                    return (null, QmpError.Generic($"Invalid parameter type for '{path}', expected: BlockDirtyBitmapOrStr"));
            }
        }
        err = SchemaCheck.CheckUnexpected(args, ["node", "target", "bitmaps"], prefix);
        if (err is not null) return (null, err);
        return (new BitmapCommand(BitmapOp.Merge, S(args, "node")!, S(args, "target")!, Sources: ValueList<BitmapRef>.From(sources)), null);
    }

    private static (Command?, QmpError?) ParseTransaction(JsonObject args)
    {
        var err = SchemaCheck.CheckFields(args, [new("actions", new FieldType.List(FieldType.Any), false),
            new("properties", new FieldType.Struct([new("completion-mode", new FieldType.Enum(["individual", "grouped"]))]))], "")
            ?? SchemaCheck.CheckUnexpected(args, ["actions", "properties"], "");
        if (err is not null) return (null, err);
        var actions = new List<Command>();
        var arr = (JsonArray)args["actions"]!;
        for (int i = 0; i < arr.Count; i++)
        {
            var path = $"actions[{i}]";
            if (arr[i] is not JsonObject a) return (null, QmpError.Generic($"Invalid parameter type for '{path}', expected: object"));
            err = SchemaCheck.CheckFields(a, [new("type", new FieldType.Enum([.. ActionTypes]), false)], path);
            if (err is not null) return (null, err);
            var type = S(a, "type")!;
            JsonObject data;
            if (!a.TryGetPropertyValue("data", out var d)) return (null, QmpError.Generic($"Parameter '{path}.data' is missing"));
            if (d is not JsonObject dobj) return (null, QmpError.Generic($"Invalid parameter type for '{path}.data', expected: object"));
            data = dobj;
            var (cmd, cerr) = ParseAction(type, data, path + ".data");
            if (cerr is not null) return (null, cerr);
            err = SchemaCheck.CheckUnexpected(a, ["type", "data"], path);
            if (err is not null) return (null, err);
            actions.Add(cmd!);
        }
        var mode = args["properties"] is JsonObject p && p["completion-mode"] is JsonValue m ? m.GetValue<string>() : "individual";
        return (new Transaction(ValueList<Command>.From(actions), mode), null);
    }

    private static (Command?, QmpError?) ParseReopen(JsonObject args)
    {
        var err = SchemaCheck.CheckFields(args, [new("options", new FieldType.List(FieldType.Any), false)], "")
            ?? SchemaCheck.CheckUnexpected(args, ["options"], "");
        if (err is not null) return (null, err);
        var list = new List<BlockdevOptions>();
        var arr = (JsonArray)args["options"]!;
        for (int i = 0; i < arr.Count; i++)
        {
            var (o, e) = BlockdevSchema.Parse(arr[i], $"options[{i}]");
            if (e is not null) return (null, e);
            list.Add(o!);
        }
        return (new BlockdevReopen(ValueList<BlockdevOptions>.From(list)), null);
    }

    private static (Command?, QmpError?) ParseDeviceAdd(JsonObject args)
    {
        // device_add is not QAPI-typed: qdev properties, QEMU's qdev texts.
        if (!args.TryGetPropertyValue("driver", out var dn)) return (null, QmpError.Generic("Parameter 'driver' is missing"));
        if (dn is not JsonValue dv || dv.GetValueKind() != JsonValueKind.String)
            return (null, QmpError.Generic("Invalid parameter type for 'driver', expected: string"));
        var driver = dv.GetValue<string>();
        if (!DeviceModels.Contains(driver)) return (null, QmpError.Generic($"'{driver}' is not a valid device model name"));
        string? id = null, drive = null;
        bool shareRw = false;
        foreach (var kv in args)
        {
            switch (kv.Key)
            {
                case "driver": break;
                case "id": id = kv.Value is JsonValue iv && iv.GetValueKind() == JsonValueKind.String ? iv.GetValue<string>() : null; break;
                case "drive" when driver is "virtio-blk-pci" or "scsi-hd":
                    drive = kv.Value is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;
                    if (drive is null) return (null, QmpError.Generic($"Invalid parameter type for '{driver}.drive', expected: string"));
                    break;
                case "share-rw" when driver is "virtio-blk-pci" or "scsi-hd":
                    var b = QdevBool(kv.Value);
                    if (b is null) return (null, QmpError.Generic($"Parameter 'share-rw' expects 'on' or 'off'"));
                    shareRw = b.Value;
                    break;
                case "bus": break;
                default: return (null, QmpError.Generic($"Property '{driver}.{kv.Key}' not found"));
            }
        }
        if (id is null) return (null, QmpError.Generic("Parameter 'id' is missing"));
        return (new DeviceAdd(driver, id, drive, shareRw), null);
    }

    private static bool? QdevBool(JsonNode? v) => v switch
    {
        JsonValue jv when jv.GetValueKind() == JsonValueKind.True => true,
        JsonValue jv when jv.GetValueKind() == JsonValueKind.False => false,
        JsonValue jv when jv.GetValueKind() == JsonValueKind.String => jv.GetValue<string>() switch
        {
            "on" or "true" or "yes" => true,
            "off" or "false" or "no" => false,
            _ => null,
        },
        _ => null,
    };

    private static (Command?, QmpError?) ParseObjectAdd(JsonObject args)
    {
        var err = SchemaCheck.CheckFields(args, [new("qom-type", new FieldType.Enum(["throttle-group", "iothread"]), false),
            new("id", FieldType.Str, false)], "");
        if (err is not null) return (null, err);
        var type = S(args, "qom-type")!;
        Field[] props = type == "throttle-group"
            ? [new("limits", new FieldType.Struct([.. ThrottleLimitNames.Select(n => new Field(n, FieldType.Int))]))]
            : [new("poll-max-ns", FieldType.Int), new("poll-grow", FieldType.Int), new("poll-shrink", FieldType.Int), new("aio-max-batch", FieldType.Int)];
        err = SchemaCheck.CheckFields(args, props, "") ?? SchemaCheck.CheckUnexpected(args, props.Select(f => f.Name).Append("qom-type").Append("id"), "");
        if (err is not null) return (null, err);
        var map = ValueMap<string>.Empty;
        foreach (var f in props)
        {
            if (args.TryGetPropertyValue(f.Name, out var v)) map = map.SetItem(f.Name, SchemaCheck.Canonical(v));
        }
        return (new ObjectAdd(type, S(args, "id")!, map), null);
    }

    private static (Command?, QmpError?) ParseExportAdd(JsonObject args)
    {
        Field[] fields =
        [
            new("type", new FieldType.Enum(["nbd", "vhost-user-blk", "fuse", "vduse-blk"]), false), new("id", FieldType.Str, false),
            new("fixed-iothread", FieldType.Bool), new("iothread", FieldType.Str), new("node-name", FieldType.Str, false),
            new("writable", FieldType.Bool), new("writethrough", FieldType.Bool),
            new("name", FieldType.Str), new("description", FieldType.Str), new("bitmaps", new FieldType.List(FieldType.Str)),
            new("allocation-depth", FieldType.Bool),
        ];
        var err = SchemaCheck.CheckFields(args, fields, "") ?? SchemaCheck.CheckUnexpected(args, fields.Select(f => f.Name), "");
        if (err is not null) return (null, err);
        if (S(args, "type") != "nbd") return (null, QmpError.Generic($"Export type '{S(args, "type")}' is not supported"));
        var bitmaps = args["bitmaps"] is JsonArray ba ? ValueList<string>.From(ba.Select(x => x!.GetValue<string>())) : ValueList<string>.Empty;
        return (new BlockExportAdd(S(args, "id")!, S(args, "node-name")!, S(args, "name"), B(args, "writable") ?? false,
            S(args, "description"), bitmaps, B(args, "allocation-depth") ?? false), null);
    }

    private static (Command?, QmpError?) ParseNbdServerAdd(JsonObject args)
    {
        Field[] fields = [new("device", FieldType.Str, false), new("name", FieldType.Str), new("description", FieldType.Str),
            new("writable", FieldType.Bool), new("bitmap", FieldType.Str)];
        var err = SchemaCheck.CheckFields(args, fields, "") ?? SchemaCheck.CheckUnexpected(args, fields.Select(f => f.Name), "");
        if (err is not null) return (null, err);
        // QEMU: the export id and NBD name both default to the device name.
        var name = S(args, "name") ?? S(args, "device")!;
        var bitmaps = S(args, "bitmap") is { } bm ? ValueList<string>.From([bm]) : ValueList<string>.Empty;
        return (new BlockExportAdd(name, S(args, "device")!, name, B(args, "writable") ?? false, S(args, "description"), bitmaps, false), null);
    }

    private static (Command?, QmpError?) Struct(JsonObject args, string prefix, Field[] fields, Func<JsonObject, Command> make)
    {
        var err = SchemaCheck.CheckFields(args, fields, prefix) ?? SchemaCheck.CheckUnexpected(args, fields.Select(f => f.Name), prefix);
        return err is null ? (make(args), null) : (null, err);
    }

    private static string? S(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<string>() : null;

    private static long? I(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<long>() : null;

    private static bool? B(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<bool>() : null;
}
