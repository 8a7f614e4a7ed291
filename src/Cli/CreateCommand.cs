using System.Globalization;
using Verified.Cli.Bench;
using Verified.Impl.Formats;

namespace Verified.Cli;

/// <summary>
/// <c>verified create</c>: QEMU 7.2's <c>qemu-img create</c> for raw and qcow2 images, with its common
/// flags (<c>-f</c>, <c>-b</c>, <c>-F</c>, <c>-o cluster_size=,backing_file=,backing_fmt=,size=</c>,
/// <c>-q</c>), its size suffixes, its "Formatting" line and its error texts.
/// </summary>
public static class CreateCommand
{
    private const string Usage = """
        usage: verified create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-o options] filename [size]
        Creates a raw or qcow2 image, as qemu-img create does (-o: cluster_size, backing_file, backing_fmt, size).
        """;

    /// <summary>Largest image size (QEMU's limit for a qcow2 image is far larger; Verified's creation keeps the L1 table in one buffer).</summary>
    private const long SizeMax = Qcow2Image.SizeMax;

    /// <summary>Runs the subcommand; returns 0, or 1 on any error (qemu-img's codes).</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the subcommand with its output going to the given writers.</summary>
    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        try
        {
            var (fmt, file, size, opts, quiet) = Parse(args);
            if (file is null)
            {
                stdout.WriteLine(Usage);
                return 0;
            }
            var line = Create(fmt, file, size, opts);
            if (!quiet) stdout.WriteLine(line);
            return 0;
        }
        catch (BenchError e)
        {
            foreach (var (l, i) in e.Lines.Select((l, i) => (l, i))) stderr.WriteLine(i == 0 ? $"verified: {l}" : l);
            return e.ExitCode;
        }
    }

    private static (string Fmt, string? File, long? Size, Dictionary<string, string> Opts, bool Quiet) Parse(IReadOnlyList<string> args)
    {
        string fmt = "raw";
        bool quiet = false;
        var opts = new Dictionary<string, string>(StringComparer.Ordinal);
        var operands = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Count ? args[++i] : throw new BenchError(1, true, $"option requires an argument -- '{a.TrimStart('-')}'");
            switch (a)
            {
                case "-h" or "--help": return (fmt, null, null, opts, quiet);
                case "-q": quiet = true; break;
                case "-f": fmt = Value(); break;
                case "-b": opts["backing_file"] = Value(); break;
                case "-F": opts["backing_fmt"] = Value(); break;
                case "-o":
                    foreach (var kv in Value().Split(',', StringSplitOptions.RemoveEmptyEntries))
                    {
                        int eq = kv.IndexOf('=', StringComparison.Ordinal);
                        if (eq < 0) throw new BenchError(1, false, $"Invalid option list: {kv}");
                        opts[kv[..eq]] = kv[(eq + 1)..];
                    }
                    break;
                default:
                    if (a.StartsWith('-') && a.Length > 1) throw new BenchError(1, true, $"invalid option -- '{a.TrimStart('-')}'");
                    operands.Add(a);
                    break;
            }
        }
        if (operands.Count is < 1 or > 2) throw new BenchError(1, true, "Expecting image file name");
        long? size = null;
        var sizeText = operands.Count == 2 ? operands[1] : opts.GetValueOrDefault("size");
        if (sizeText is not null)
        {
            var r = QemuNumbers.StrToSz(sizeText);
            if (r.Error != QemuNumbers.SizeError.None || r.Value > SizeMax)
                throw new BenchError(1, false, "Invalid image size specified. You may use k, M, G, T, P or E suffixes for", "verified: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            size = (long)r.Value;
        }
        return (fmt, operands[0], size, opts, quiet);
    }

    /// <summary>Creates the image; returns qemu-img's "Formatting" line.</summary>
    private static string Create(string fmt, string file, long? size, Dictionary<string, string> opts)
    {
        BenchError Fail(params string[] lines) => new(1, false, [$"{file}: {lines[0]}", .. lines[1..]]);
        if (fmt is not ("raw" or "qcow2"))
            throw Verified.Vocabulary.BlockdevSchema.Get(fmt) is null ? Fail($"Unknown file format '{fmt}'") : Fail($"Verified creates raw and qcow2 images only, not '{fmt}'");
        string[] known = fmt == "qcow2" ? ["size", "cluster_size", "backing_file", "backing_fmt", "compat", "refcount_bits"] : ["size"];
        foreach (var k in opts.Keys)
        {
            if (!known.Contains(k)) throw fmt == "raw" && k.StartsWith("backing", StringComparison.Ordinal)
                ? Fail($"Backing file not supported for file format '{fmt}'") : Fail($"Invalid parameter '{k}'");
        }
        if (opts.TryGetValue("compat", out var compat) && compat is not ("1.1" or "v3")) throw Fail($"Verified creates version 3 images only (compat={compat})");
        if (opts.TryGetValue("refcount_bits", out var rb) && rb != "16") throw Fail($"Verified creates 16-bit refcounts only (refcount_bits={rb})");
        if (fmt == "raw")
        {
            if (size is null) throw Fail("Image creation needs a size parameter");
            using (var f = new FileStream(file, FileMode.Create, FileAccess.Write)) f.SetLength(size.Value);
            return $"Formatting '{file}', fmt=raw size={N(size.Value)}";
        }
        int clusterSize = 1 << Qcow2Image.ClusterBits;
        if (opts.TryGetValue("cluster_size", out var cs))
        {
            var r = QemuNumbers.StrToSz(cs);
            if (r.Error != QemuNumbers.SizeError.None || r.Value is < 512 or > 2 << 20 || (r.Value & (r.Value - 1)) != 0)
                throw Fail("Cluster size must be a power of two between 512 and 2048k");
            clusterSize = (int)r.Value;
        }
        opts.TryGetValue("backing_file", out var backing);
        opts.TryGetValue("backing_fmt", out var backingFmt);
        if (backing is not null)
        {
            var path = Path.IsPathRooted(backing) ? backing : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, backing);
            var (backingSize, probed, err) = BackingInfo(path, backing);
            if (err is not null) throw Fail(err, "Could not open backing image.");
            if (backingFmt is null)
            {
                // QEMU 7.2 refuses to guess the backing format.
                throw Fail("Backing file specified without backing format", $"Detected format of {probed}.");
            }
            size ??= backingSize;
        }
        if (size is null) throw Fail("Image creation needs a size parameter");
        Qcow2Image.Create(file, size.Value, backing, backingFmt, System.Numerics.BitOperations.Log2((uint)clusterSize));
        var backingPart = backing is null ? "" : $" backing_file={backing}" + (backingFmt is null ? "" : $" backing_fmt={backingFmt}");
        return $"Formatting '{file}', fmt=qcow2 cluster_size={N(clusterSize)} extended_l2=off compression_type=zlib size={N(size.Value)}{backingPart} lazy_refcounts=off refcount_bits=16";
    }

    /// <summary>The backing image's virtual size and probed format, or the open error qemu-img prints.</summary>
    private static (long Size, string Format, string? Error) BackingInfo(string path, string name)
    {
        try
        {
            using var f = File.OpenRead(path);
            var head = new byte[Qcow2Header.ProbeBytes];
            int n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            var (h, _) = Qcow2Header.Parse(head.AsSpan(0, n), writable: false);
            return h is not null ? (h.Size, "qcow2", null) : (f.Length, "raw", null);
        }
        catch (FileNotFoundException)
        {
            return (0, "", $"Could not open '{name}': No such file or directory");
        }
        catch (DirectoryNotFoundException)
        {
            return (0, "", $"Could not open '{name}': No such file or directory");
        }
        catch (UnauthorizedAccessException)
        {
            return (0, "", $"Could not open '{name}': Permission denied");
        }
    }

    private static string N(long v) => v.ToString(CultureInfo.InvariantCulture);
}
