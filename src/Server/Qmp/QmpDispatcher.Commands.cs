using System.Text.Json;
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Vocabulary;

namespace Verified.Server.Qmp;

/// <summary>The command table, and the events read off what a command changed.</summary>
public sealed partial class QmpDispatcher
{
    /// <summary>Commands answered by the daemon itself rather than the engine.</summary>
    private static readonly string[] DaemonCommands = ["qmp_capabilities", "query-version", "query-commands", "quit"];

    /// <summary>Block-layer commands run on the engine.</summary>
    private static readonly string[] EngineCommands =
    [
        "blockdev-add", "blockdev-del", "blockdev-reopen", "x-blockdev-replace", "transaction",
        "blockdev-snapshot", "blockdev-snapshot-sync",
        "block-dirty-bitmap-add", "block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
        "block-dirty-bitmap-enable", "block-dirty-bitmap-disable", "block-dirty-bitmap-merge",
        "device_add", "device_del", "qom-set", "qom-get", "object-add", "object-del",
        "nbd-server-start", "nbd-server-stop", "nbd-server-add", "nbd-server-remove", "block-export-add", "block-export-del",
        "query-block-exports", "query-named-block-nodes", "x-debug-query-block-graph",
        "x-blockdev-change", "block_resize", "x-blockdev-set-iothread",
        .. Vocabulary.Jobs.JobCommandParser.CommandNames,
    ];

    private static readonly string[] Commands = [.. DaemonCommands, .. EngineCommands];

    private static readonly HashSet<string> CommandSet = new(Commands, StringComparer.Ordinal);

    private static readonly Field[] ResizeFields = [new("device", FieldType.Str), new("node-name", FieldType.Str), new("size", FieldType.Int, false)];

    private static readonly Field[] SetIothreadFields = [new("node-name", FieldType.Str, false), new("iothread", FieldType.Any, false), new("force", FieldType.Bool)];

    private Reply RunLocked(string name, JsonObject args)
    {
        lateExports.Clear();
        switch (name)
        {
            case "query-version":
                return NoArgs(args) ?? new Reply(Version.ToJson(), null);
            case "query-commands":
                return NoArgs(args) ?? new Reply(new JsonArray([.. Commands.Select(c => (JsonNode)new JsonObject { ["name"] = c })]), null);
            case "quit":
                return NoArgs(args) ?? Reply.Ok();
            case "block_resize":
                return Checked(args, ResizeFields) ?? Engine.BlockResize(Str(args, "device"), Str(args, "node-name"), args["size"]!.GetValue<long>());
            case "x-blockdev-set-iothread":
                return Checked(args, SetIothreadFields) ?? SetIothread(args);
            case "nbd-server-start":
                return NbdServerStartChecks(args) ?? NbdServerStart(args);
            case "nbd-server-stop":
                return NbdServerStop(args);
            case "nbd-server-add":
                return NbdServerAdd(args);
            case "nbd-server-remove":
                // QEMU 7.2: nbd-server-remove is block-export-del of the export with that name as id.
                return Checked(args, NbdRemoveFields) ?? ExportDel(Str(args, "name")!, Str(args, "mode") ?? "safe");
            case "block-export-del":
                return CommandParser.Parse(name, args) switch
                {
                    (_, { } e) => new Reply(null, e),
                    (BlockExportDel d, _) => ExportDel(d.Id, d.Mode),
                    _ => throw new InvalidOperationException("block-export-del parsed to another command"),
                };
            default:
                var (cmd, err) = CommandParser.Parse(name, args);
                return err is not null ? new Reply(null, err) : Engine.Execute(cmd!);
        }
    }

    /// <summary>
    /// Binds the listener before the engine records the server as running, so a bind failure changes
    /// nothing; a dispatcher without an NBD server (library use) only records it.
    /// </summary>
    private Reply NbdServerStart(JsonObject args)
    {
        var start = CommandParser.Parse("nbd-server-start", args) is ({ } c, null) ? c : throw new InvalidOperationException("checked arguments did not parse");
        if (Nbd is null || Engine.NbdServerRunning) return Engine.Execute(start);
        var err = Nbd.Listen((JsonObject)args["addr"]!, args["max-connections"]?.GetValue<long>() ?? 0);
        if (err is not null) return Fail(err);
        var reply = Engine.Execute(start);
        if (!reply.IsOk) Nbd.Stop();
        return reply;
    }

    /// <summary>QEMU's nbd_server_stop: every client is disconnected and every export deleted before the reply.</summary>
    private Reply NbdServerStop(JsonObject args)
    {
        var (cmd, err) = CommandParser.Parse("nbd-server-stop", args);
        if (err is not null) return new Reply(null, err);
        if (Nbd is not null && Engine.NbdServerRunning) Nbd.Stop();
        return Engine.Execute(cmd!);
    }

    /// <summary>
    /// QEMU's qmp_block_export_del: an export with clients is refused in safe mode; in hard mode its
    /// clients are disconnected, and it is deleted once the last has gone (their requests in flight
    /// complete first). BLOCK_EXPORT_DELETED then follows the reply, as in QEMU, where it waits for
    /// the clients; an export without clients is deleted at once and the event precedes the reply.
    /// </summary>
    private Reply ExportDel(string id, string mode)
    {
        int clients = Nbd?.ClientsOf(id) ?? 0;
        if (clients > 0 && Engine.Exports.Any(e => e.Id == id))
        {
            if (mode != "hard") return Fail($"export '{id}' still in use");
            Nbd!.Disconnect(id);
            try
            {
                var reply = Engine.Execute(new BlockExportDel(id, mode));
                if (reply.IsOk) lateExports.Add(id);
                return reply;
            }
            finally
            {
                Nbd.Release(id);
            }
        }
        return Engine.Execute(new BlockExportDel(id, mode));
    }

    private static readonly Field[] NbdRemoveFields = [new("name", FieldType.Str, false), new("mode", new FieldType.Enum(["safe", "hard"]))];

    private static readonly Field[] NbdStartFields =
        [new("addr", FieldType.Any, false), new("tls-creds", FieldType.Str), new("tls-authz", FieldType.Str), new("max-connections", FieldType.UInt32)];

    /// <summary>SocketAddressLegacy's variants: the wrapped struct's members by type.</summary>
    private static readonly Dictionary<string, Field[]> SocketAddressData = new(StringComparer.Ordinal)
    {
        ["inet"] = [new("host", FieldType.Str, false), new("port", FieldType.Str, false), new("numeric", FieldType.Bool), new("to", FieldType.Int),
            new("ipv4", FieldType.Bool), new("ipv6", FieldType.Bool), new("keep-alive", FieldType.Bool)],
        ["unix"] = [new("path", FieldType.Str, false), new("abstract", FieldType.Bool), new("tight", FieldType.Bool)],
        ["vsock"] = [new("cid", FieldType.Str, false), new("port", FieldType.Str, false)],
        ["fd"] = [new("str", FieldType.Str, false)],
    };

    /// <summary>
    /// nbd-server-start's argument checks as QEMU 7.2's visitor makes them (the engine keeps the
    /// address as given), then what listening would refuse: a unix socket in a missing directory.
    /// The listener itself is bound by <see cref="NbdServerStart"/>.
    /// </summary>
    private Reply? NbdServerStartChecks(JsonObject args)
    {
        var err = SchemaCheck.CheckFields(args, NbdStartFields, "");
        if (err is not null) return new Reply(null, err);
        if (args["addr"] is not JsonObject addr) return Fail("Invalid parameter type for 'addr', expected: object");
        err = SchemaCheck.CheckFields(addr, [new("type", FieldType.Str, false)], "addr");
        if (err is not null) return new Reply(null, err);
        var type = Str(addr, "type")!;
        // QEMU 7.2 names the discriminator without its prefix here.
        if (!SocketAddressData.TryGetValue(type, out var fields)) return Fail($"Parameter 'type' does not accept value '{type}'");
        err = SchemaCheck.CheckFields(addr, [new("data", new FieldType.Struct(fields), false)], "addr")
            ?? SchemaCheck.CheckUnexpected(addr, ["type", "data"], "addr")
            ?? SchemaCheck.CheckUnexpected(args, NbdStartFields.Select(f => f.Name), "");
        if (err is not null) return new Reply(null, err);
        // QEMU's order: a running server refuses first, then binding fails, then the TLS lookup.
        if (Engine.NbdServerRunning) return null; // the engine answers "NBD server already running"
        if (type == "unix" && Str((JsonObject)addr["data"]!, "path") is { } path
            && Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir && !Directory.Exists(dir))
            return Fail($"Failed to bind socket to {path}: No such file or directory");
        return Str(args, "tls-creds") is { } creds ? Fail($"No TLS credentials with id '{creds}'") : null;
    }

    /// <summary>nbd-server-add: QEMU looks the device up first (by BlockBackend or node name), then adds the export.</summary>
    private Reply NbdServerAdd(JsonObject args)
    {
        var (cmd, err) = CommandParser.Parse("nbd-server-add", args);
        if (err is not null) return new Reply(null, err);
        var device = Str(args, "device")!;
        if (Engine.FindNode(device) is null) return Fail($"Cannot find device='{device}' nor node-name='{device}'");
        return Engine.Execute(cmd!);
    }

    private static Reply Fail(string desc) => new(null, QmpError.Generic(desc));

    private Reply SetIothread(JsonObject args)
    {
        // StrOrNull: a string names an iothread, null means the main loop.
        var v = args["iothread"];
        if (v is not null && (v is not JsonValue jv || jv.GetValueKind() != JsonValueKind.String))
            return new Reply(null, QmpError.Generic("Invalid parameter type for 'iothread', expected: StrOrNull"));
        return Engine.SetIothread(Str(args, "node-name")!, v?.GetValue<string>(), args["force"]?.GetValue<bool>() ?? false);
    }

    private static Reply? NoArgs(JsonObject args) => Checked(args, []);

    private static Reply? Checked(JsonObject args, Field[] fields)
    {
        var err = SchemaCheck.CheckFields(args, fields, "") ?? SchemaCheck.CheckUnexpected(args, fields.Select(f => f.Name), "");
        return err is null ? null : new Reply(null, err);
    }

    private static string? Str(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<string>() : null;

    /// <summary>What events are read from: the devices and exports that exist, oldest first.</summary>
    private sealed record GraphSnapshot(IReadOnlyList<(string Id, string Model)> Devices, IReadOnlyList<string> Exports);

    private GraphSnapshot Snapshot() =>
        new([.. Engine.Devices.Select(d => (d.Id, d.Model))], [.. Engine.Exports.Select(e => e.Id)]);

    /// <summary>
    /// QEMU's events for what disappeared: <c>DEVICE_DELETED</c> per device (a virtio device's backend
    /// first, as QEMU unrealizes it first), <c>BLOCK_EXPORT_DELETED</c> per export, newest export first
    /// (QEMU keeps exports newest first).
    /// </summary>
    private List<QmpEvent> EventsBetween(GraphSnapshot before, GraphSnapshot after)
    {
        var now = clock();
        var events = new List<QmpEvent>();
        var devicesAfter = after.Devices.Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var (id, model) in before.Devices.Where(d => !devicesAfter.Contains(d.Id)))
        {
            var path = $"/machine/peripheral/{id}";
            if (model.StartsWith("virtio-", StringComparison.Ordinal))
                events.Add(new QmpEvent("DEVICE_DELETED", new JsonObject { ["path"] = path + "/virtio-backend" }, now));
            events.Add(new QmpEvent("DEVICE_DELETED", new JsonObject { ["device"] = id, ["path"] = path }, now));
        }
        var exportsAfter = after.Exports.ToHashSet(StringComparer.Ordinal);
        foreach (var id in before.Exports.Where(e => !exportsAfter.Contains(e)))
            events.Add(new QmpEvent("BLOCK_EXPORT_DELETED", new JsonObject { ["id"] = id }, now));
        return events;
    }

    /// <summary>Marks the daemon as quitting (after <c>quit</c>'s reply has been sent).</summary>
    public void ConfirmQuit() => quit.Cancel();
}
