using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verified.Vocabulary.Jobs;

/// <summary>
/// <c>blockdev-create</c>: a <c>create</c> job that formats an image as <paramref name="Options"/> say.
/// <paramref name="Arguments"/> keeps the command's arguments as given, so the command can be written back.
/// </summary>
public sealed record BlockdevCreate(string JobId, CreateOptions Options, JsonObject Arguments) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-create";
}

/// <summary>One branch of QEMU's <c>BlockdevCreateOptions</c> union.</summary>
/// <param name="Driver">The union's discriminator.</param>
public abstract record CreateOptions(string Driver);

/// <summary>
/// The <c>file</c> branch (block/file-posix.c <c>raw_co_create</c>). Sizes are QAPI <c>size</c> (uint64):
/// a negative JSON number is taken modulo 2^64, as QEMU's input visitor does.
/// </summary>
public sealed record FileCreate(string Filename, ulong Size, string Preallocation, bool Nocow, ulong? ExtentSizeHint) : CreateOptions("file");

/// <summary>The <c>qcow2</c> branch (block/qcow2.c <c>qcow2_co_create</c>); unset members are null.</summary>
public sealed record Qcow2Create(BlockdevRef File, BlockdevRef? DataFile, bool? DataFileRaw, bool? ExtendedL2, ulong Size, string? Version,
    string? BackingFile, string? BackingFmt, bool Encrypt, ulong? ClusterSize, string? Preallocation, bool? LazyRefcounts, long? RefcountBits,
    string? CompressionType) : CreateOptions("qcow2");

/// <summary>
/// A branch Verified does not create: <paramref name="Error"/> is what the command answers (QEMU's
/// "Driver does not support blockdev-create" for drivers without a create function).
/// </summary>
public sealed record NoCreate(string Driver, QmpError Error) : CreateOptions(Driver);

/// <summary>QEMU 7.2's <c>blockdev-create</c> schema (the union and its file and qcow2 branches) and its errors.</summary>
public static class CreateParser
{
    /// <summary>QEMU 7.2's BlockdevDriver enum (the union's discriminator and qcow2's backing-fmt), as query-qmp-schema lists it.</summary>
    public static readonly IReadOnlyList<string> BlockdevDrivers =
    [
        "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress", "copy-before-write", "copy-on-read", "dmg",
        "file", "snapshot-access", "ftp", "ftps", "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "luks", "nbd", "nfs",
        "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2", "qed", "quorum", "raw", "rbd", "replication", "ssh",
        "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    ];

    /// <summary>Drivers whose QEMU branch has members but whose create Verified does not implement.</summary>
    public static readonly IReadOnlyList<string> UnimplementedCreators = ["gluster", "luks", "nfs", "parallels", "qcow", "qed", "rbd", "ssh", "vdi", "vhdx", "vmdk", "vpc"];

    /// <summary>QAPI <c>size</c>: an unsigned 64-bit number (a marker type; checked here, not by <see cref="SchemaCheck"/>).</summary>
    private static readonly FieldType Size = new FieldType.Scalar("uint64");

    /// <summary>QAPI <c>BlockdevRef</c>: a node name or inline blockdev options (a marker type, checked here).</summary>
    private static readonly FieldType Ref = new FieldType.Scalar("BlockdevRef");

    private static readonly string[] PreallocModes = ["off", "metadata", "falloc", "full"];

    private static readonly Field[] FileFields =
    [
        new("filename", FieldType.Str, false), new("size", Size, false), new("preallocation", new FieldType.Enum(PreallocModes)),
        new("nocow", FieldType.Bool), new("extent-size-hint", Size),
    ];

    private static readonly Field[] Qcow2Fields =
    [
        new("file", Ref, false), new("data-file", Ref), new("data-file-raw", FieldType.Bool), new("extended-l2", FieldType.Bool),
        new("size", Size, false), new("version", new FieldType.Enum(["v2", "v3"])), new("backing-file", FieldType.Str),
        new("backing-fmt", new FieldType.Enum([.. BlockdevDrivers])), new("encrypt", FieldType.Any), new("cluster-size", Size),
        new("preallocation", new FieldType.Enum(PreallocModes)), new("lazy-refcounts", FieldType.Bool), new("refcount-bits", FieldType.Int),
        new("compression-type", new FieldType.Enum(["zlib", "zstd"])),
    ];

    /// <summary>Parses <c>blockdev-create</c>'s arguments in QEMU's order: job-id, options (driver, the branch's members, unexpected members).</summary>
    public static (Command? Command, QmpError? Error) Parse(JsonObject args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var err = SchemaCheck.CheckFields(args, [new("job-id", FieldType.Str, false)], "");
        if (err is not null) return (null, err);
        if (!args.TryGetPropertyValue("options", out var o)) return (null, QmpError.Generic("Parameter 'options' is missing"));
        if (o is not JsonObject opts) return (null, QmpError.Generic("Invalid parameter type for 'options', expected: object"));
        var (options, oerr) = ParseOptions(opts);
        err = oerr ?? SchemaCheck.CheckUnexpected(args, ["job-id", "options"], "");
        if (err is not null) return (null, err);
        return (new BlockdevCreate(args["job-id"]!.GetValue<string>(), options!, (JsonObject)args.DeepClone()), null);
    }

    private static (CreateOptions? Options, QmpError? Error) ParseOptions(JsonObject o)
    {
        const string prefix = "options";
        if (!o.TryGetPropertyValue("driver", out var d)) return (null, QmpError.Generic("Parameter 'options.driver' is missing"));
        if (d is not JsonValue dv || dv.GetValueKind() != JsonValueKind.String)
            return (null, QmpError.Generic("Invalid parameter type for 'options.driver', expected: string"));
        var driver = dv.GetValue<string>();
        // QEMU 7.2's visitor names an enum member by its own name, without the path.
        if (!BlockdevDrivers.Contains(driver)) return (null, QmpError.Generic($"Parameter 'driver' does not accept value '{driver}'"));
        Field[] fields = driver switch { "file" => FileFields, "qcow2" => Qcow2Fields, _ => [] };
        if (UnimplementedCreators.Contains(driver))
            return (new NoCreate(driver, QmpError.Generic($"Verified does not implement blockdev-create for driver '{driver}'")), null);
        foreach (var f in fields)
        {
            var err = Check(o, f, prefix);
            if (err is not null) return (null, err);
        }
        var unexpected = SchemaCheck.CheckUnexpected(o, [.. fields.Select(f => f.Name), "driver"], prefix);
        if (unexpected is not null) return (null, unexpected);
        return driver switch
        {
            "file" => (new FileCreate(S(o, "filename")!, U(o, "size")!.Value, S(o, "preallocation") ?? "off", B(o, "nocow") ?? false, U(o, "extent-size-hint")), null),
            "qcow2" => ParseQcow2(o),
            _ => (new NoCreate(driver, QmpError.Generic("Driver does not support blockdev-create")), null),
        };
    }

    private static (CreateOptions?, QmpError?) ParseQcow2(JsonObject o)
    {
        var (file, ferr) = RefOf(o["file"], "options.file");
        if (ferr is not null) return (null, ferr);
        BlockdevRef? dataFile = null;
        if (o["data-file"] is { } df)
        {
            (dataFile, ferr) = RefOf(df, "options.data-file");
            if (ferr is not null) return (null, ferr);
        }
        return (new Qcow2Create(file!, dataFile, B(o, "data-file-raw"), B(o, "extended-l2"), U(o, "size")!.Value, S(o, "version"),
            S(o, "backing-file"), S(o, "backing-fmt"), o.ContainsKey("encrypt"), U(o, "cluster-size"), S(o, "preallocation"),
            B(o, "lazy-refcounts"), o["refcount-bits"] is JsonValue rb ? rb.GetValue<long>() : null, S(o, "compression-type")), null);
    }

    /// <summary>One member, with QEMU 7.2's texts: enum values and alternates are named without the path, sizes are uint64.</summary>
    private static QmpError? Check(JsonObject o, Field f, string prefix)
    {
        var path = SchemaCheck.Path(prefix, f.Name);
        if (!o.TryGetPropertyValue(f.Name, out var v)) return f.Optional ? null : QmpError.Generic($"Parameter '{path}' is missing");
        if (f.Type == Size) return v is JsonValue sv && sv.GetValueKind() == JsonValueKind.Number && (sv.TryGetValue<long>(out _) || sv.TryGetValue<ulong>(out _))
            ? null : QmpError.Generic($"Parameter '{path}' expects uint64");
        if (f.Type == Ref) return v is JsonObject || (v is JsonValue rv && rv.GetValueKind() == JsonValueKind.String)
            ? null : QmpError.Generic($"Invalid parameter type for '{f.Name}', expected: BlockdevRef");
        if (f.Name == "encrypt")
        {
            // QCryptoBlockCreateOptions: only its discriminator is checked; Verified creates no encrypted image.
            if (v is not JsonObject eo) return QmpError.Generic($"Invalid parameter type for '{path}', expected: object");
            return eo.ContainsKey("format") ? null : QmpError.Generic($"Parameter '{path}.format' is missing");
        }
        var err = SchemaCheck.CheckValue(v, f.Type, path);
        if (err is not null && f.Type is FieldType.Enum && v is JsonValue ev && ev.GetValueKind() == JsonValueKind.String)
            return QmpError.Generic($"Parameter '{f.Name}' does not accept value '{ev.GetValue<string>()}'");
        return err;
    }

    private static (BlockdevRef?, QmpError?) RefOf(JsonNode? v, string path)
    {
        if (v is JsonValue s) return (new BlockdevRefName(s.GetValue<string>()), null);
        var (opts, err) = BlockdevSchema.Parse(v, path);
        return err is null ? (new BlockdevRefInline(opts!), null) : (null, err);
    }

    private static string? S(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<string>() : null;

    private static bool? B(JsonObject o, string key) => o[key] is JsonValue v ? v.GetValue<bool>() : null;

    /// <summary>A QAPI size: negative numbers wrap modulo 2^64, as QEMU's input visitor accepts them.</summary>
    private static ulong? U(JsonObject o, string key) =>
        o[key] is JsonValue v ? (v.TryGetValue<long>(out var l) ? unchecked((ulong)l) : v.GetValue<ulong>()) : null;
}
