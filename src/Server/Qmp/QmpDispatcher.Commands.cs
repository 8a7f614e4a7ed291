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
        "nbd-server-start", "nbd-server-stop", "nbd-server-add", "block-export-add", "block-export-del",
        "query-block-exports", "query-named-block-nodes", "x-debug-query-block-graph",
        "x-blockdev-change", "block_resize", "x-blockdev-set-iothread",
    ];

    private static readonly string[] Commands = [.. DaemonCommands, .. EngineCommands];

    private static readonly HashSet<string> CommandSet = new(Commands, StringComparer.Ordinal);

    private static readonly Field[] ResizeFields = [new("device", FieldType.Str), new("node-name", FieldType.Str), new("size", FieldType.Int, false)];

    private static readonly Field[] SetIothreadFields = [new("node-name", FieldType.Str, false), new("iothread", FieldType.Any, false), new("force", FieldType.Bool)];

    private Reply RunLocked(string name, JsonObject args)
    {
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
            default:
                var (cmd, err) = CommandParser.Parse(name, args);
                return err is not null ? new Reply(null, err) : Engine.Execute(cmd!);
        }
    }

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
