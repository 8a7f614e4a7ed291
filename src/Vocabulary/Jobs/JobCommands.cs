using System.Text.Json.Nodes;

namespace Verified.Vocabulary.Jobs;

/// <summary>
/// <c>blockdev-backup</c>: a backup job from <paramref name="Device"/> to <paramref name="Target"/> through an
/// implicit copy-before-write filter. <paramref name="BitmapMode"/> is null when not given; the error policies
/// default to QEMU's <c>report</c>. Options Verified accepts but does not act on (compress, x-perf) are checked
/// by the schema and otherwise ignored.
/// </summary>
public sealed record BlockdevBackup(string? JobId, string Device, string Target, string Sync, string? Bitmap, long? Speed,
    bool AutoFinalize, bool AutoDismiss, string? FilterNodeName, string? BitmapMode = null,
    string OnSourceError = BlockdevBackup.OnErrorDefault, string OnTargetError = BlockdevBackup.OnErrorDefault) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-backup";

    /// <summary>The error policy blockdev-backup takes when none is given (qmp_blockdev_backup).</summary>
    public const string OnErrorDefault = "report";
}

/// <summary>
/// <c>blockdev-mirror</c>: a mirror job from <paramref name="Device"/> to <paramref name="Target"/> through an
/// implicit mirror_top filter. Options Verified accepts but does not act on (replaces, granularity,
/// buf-size, the error policies, copy-mode) are checked by the schema and otherwise ignored.
/// </summary>
public sealed record BlockdevMirror(string? JobId, string Device, string Target, string Sync, long? Speed,
    bool AutoFinalize, bool AutoDismiss, string? FilterNodeName) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-mirror";
}

/// <summary>
/// A job command: <paramref name="Verb"/> on job <paramref name="Id"/>, as the QMP command
/// <paramref name="Command"/> names it (job-* commands say "Job not found", block-job-* ones
/// "Block job 'x' not found").
/// </summary>
public sealed record JobCommand(string Command, JobVerb Verb, string Id, long Speed = 0, bool Force = false) : Command
{
    /// <inheritdoc/>
    public override string Name => Command;

    /// <summary>Whether this is a block-job-* command (errors name the block job, class DeviceNotActive).</summary>
    public bool IsBlockJobCommand => Command.StartsWith("block-job-", StringComparison.Ordinal);
}

/// <summary>QEMU 7.2's job commands' argument schemas and parsing.</summary>
public static class JobCommandParser
{
    private static readonly FieldType.Enum SyncModes = new(["top", "full", "none", "incremental", "bitmap"]);

    private static readonly FieldType.Enum OnError = new(["report", "ignore", "enospc", "stop", "auto"]);

    /// <summary>blockdev-backup's members in QAPI order (BackupCommon, then target).</summary>
    private static readonly Field[] BackupFields =
    [
        new("job-id", FieldType.Str), new("device", FieldType.Str, false), new("sync", SyncModes, false), new("speed", FieldType.Int),
        new("bitmap", FieldType.Str), new("bitmap-mode", new FieldType.Enum(["on-success", "never", "always"])), new("compress", FieldType.Bool),
        new("on-source-error", OnError), new("on-target-error", OnError), new("auto-finalize", FieldType.Bool), new("auto-dismiss", FieldType.Bool),
        new("filter-node-name", FieldType.Str), new("x-perf", FieldType.Any), new("target", FieldType.Str, false),
    ];

    /// <summary>blockdev-mirror's members in QAPI order.</summary>
    private static readonly Field[] MirrorFields =
    [
        new("job-id", FieldType.Str), new("device", FieldType.Str, false), new("target", FieldType.Str, false), new("replaces", FieldType.Str),
        new("sync", SyncModes, false), new("speed", FieldType.Int), new("granularity", FieldType.UInt32), new("buf-size", FieldType.Int),
        new("on-source-error", OnError), new("on-target-error", OnError), new("filter-node-name", FieldType.Str),
        new("copy-mode", new FieldType.Enum(["background", "write-blocking"])), new("auto-finalize", FieldType.Bool), new("auto-dismiss", FieldType.Bool),
    ];

    /// <summary>The job commands: name, verb, and whether the job is named by <c>device</c> (block-job-*) or <c>id</c>.</summary>
    private static readonly Dictionary<string, (JobVerb Verb, string Key)> Verbs = new(StringComparer.Ordinal)
    {
        ["job-cancel"] = (JobVerb.Cancel, "id"), ["job-pause"] = (JobVerb.Pause, "id"), ["job-resume"] = (JobVerb.Resume, "id"),
        ["job-complete"] = (JobVerb.Complete, "id"), ["job-finalize"] = (JobVerb.Finalize, "id"), ["job-dismiss"] = (JobVerb.Dismiss, "id"),
        ["block-job-cancel"] = (JobVerb.Cancel, "device"), ["block-job-pause"] = (JobVerb.Pause, "device"),
        ["block-job-resume"] = (JobVerb.Resume, "device"), ["block-job-complete"] = (JobVerb.Complete, "device"),
        ["block-job-set-speed"] = (JobVerb.SetSpeed, "device"), ["block-job-finalize"] = (JobVerb.Finalize, "id"),
        ["block-job-dismiss"] = (JobVerb.Dismiss, "id"),
    };

    /// <summary>Every job command name (for command tables), queries included.</summary>
    public static IReadOnlyList<string> CommandNames { get; } = ["blockdev-backup", "blockdev-mirror", "blockdev-create", .. Verbs.Keys, "query-jobs", "query-block-jobs"];

    /// <summary>Whether <paramref name="name"/> is a command this parser reads.</summary>
    public static bool Handles(string name) => name is "blockdev-backup" or "blockdev-mirror" or "blockdev-create" or "query-jobs" or "query-block-jobs" || Verbs.ContainsKey(name);

    /// <summary>Parses a job command (or the blockdev-backup transaction action, with <paramref name="prefix"/>).</summary>
    public static (Command? Command, QmpError? Error) Parse(string name, JsonObject args, string prefix)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(args);
        if (name is "query-jobs" or "query-block-jobs") return Checked(args, prefix, [], () => new Query(name));
        if (name == "blockdev-create") return CreateParser.Parse(args);
        if (name == "blockdev-backup")
        {
            return Checked(args, prefix, BackupFields, () => new BlockdevBackup(S(args, "job-id"), S(args, "device")!, S(args, "target")!,
                S(args, "sync")!, S(args, "bitmap"), I(args, "speed"), B(args, "auto-finalize") ?? true, B(args, "auto-dismiss") ?? true,
                S(args, "filter-node-name"), S(args, "bitmap-mode"), S(args, "on-source-error") ?? BlockdevBackup.OnErrorDefault,
                S(args, "on-target-error") ?? BlockdevBackup.OnErrorDefault));
        }
        if (name == "blockdev-mirror")
        {
            return Checked(args, prefix, MirrorFields, () => new BlockdevMirror(S(args, "job-id"), S(args, "device")!, S(args, "target")!,
                S(args, "sync")!, I(args, "speed"), B(args, "auto-finalize") ?? true, B(args, "auto-dismiss") ?? true, S(args, "filter-node-name")));
        }
        if (!Verbs.TryGetValue(name, out var v)) return (null, new QmpError(ErrorClass.CommandNotFound, $"The command {name} has not been found"));
        Field[] fields = name switch
        {
            "block-job-cancel" => [new("device", FieldType.Str, false), new("force", FieldType.Bool)],
            "block-job-set-speed" => [new("device", FieldType.Str, false), new("speed", FieldType.Int, false)],
            _ => [new(v.Key, FieldType.Str, false)],
        };
        return Checked(args, prefix, fields, () => new JobCommand(name, v.Verb, S(args, v.Key)!, I(args, "speed") ?? 0, B(args, "force") ?? false));
    }

    private static (Command?, QmpError?) Checked(JsonObject args, string prefix, Field[] fields, Func<Command> make)
    {
        var err = SchemaCheck.CheckFields(args, fields, prefix) ?? SchemaCheck.CheckUnexpected(args, fields.Select(f => f.Name), prefix);
        return err is null ? (make(), null) : (null, err);
    }

    private static string? S(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<string>() : null;

    private static long? I(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<long>() : null;

    private static bool? B(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<bool>() : null;
}
