using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Verified.Impl.Engine;
using Verified.Impl.Graph;
using Verified.Impl.IO;

namespace Verified.Cli.Bench;

/// <summary>
/// <c>verified bench</c>: QEMU 7.2's <c>qemu-img bench</c> on Verified's engine. The image is opened as a
/// graph on a <see cref="BlockEngine"/> (raw over file, null-co, or any <c>--image-opts</c> tree), a device
/// stands where qemu-img has its BlockBackend, and <c>depth</c> requests are kept in flight through it with
/// qemu-img's offsets, flushes and output lines, so one command can replace the other in a script.
/// </summary>
public static class BenchCommand
{
    /// <summary>The node name the benchmark gives the image's top node.</summary>
    private const string TopNode = "bench-img";

    /// <summary>The device standing for qemu-img's BlockBackend.</summary>
    private const string DeviceId = "bench-dev";

    /// <summary>qcow2's magic, "QFI\xfb", at offset 0 of an image.</summary>
    private static readonly byte[] Qcow2Magic = [(byte)'Q', (byte)'F', (byte)'I', 0xfb];

    /// <summary>The memory alignment O_DIRECT may need (QEMU's blk_blockalign gives at least this).</summary>
    private const int BufferAlignment = 4096;

    private const string Usage = """
        usage: verified bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio]
               [-n] [--no-drain] [-o offset] [--pattern=pattern_byte] [-q] [-s buffer_size] [-S step_size]
               [-t cache] [-w] [-U] [--image-opts] filename
        Runs a simple sequential I/O benchmark on the image, as qemu-img bench does.
        """;

    /// <summary>Runs the subcommand; returns qemu-img's exit code (0, or 1 on any error).</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the subcommand with its output going to the given writers.</summary>
    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        try
        {
            var o = BenchArgs.Parse(args, w => stderr.WriteLine($"verified: {w}"));
            if (o is null)
            {
                stdout.WriteLine(Usage);
                return 0;
            }
            return Execute(o, stdout, stderr);
        }
        catch (BenchError e)
        {
            stdout.Flush();
            foreach (var line in e.Lines) stderr.WriteLine($"verified: {line}");
            if (e.TryHelp) stderr.WriteLine("Try 'verified bench --help' for more information");
            return e.ExitCode;
        }
    }

    /// <summary>Opens the image, runs the benchmark, prints qemu-img's lines to <paramref name="stdout"/>.</summary>
    public static int Execute(BenchOptions o, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        using var engine = new BlockEngine();
        var device = Open(engine, o, stderr);
        long imageSize = device.Length;

        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Sending {o.Count} {(o.Write ? "write" : "read")} requests, {o.BufferSize} bytes each, {o.Depth} in parallel (starting at offset {o.Offset}, step size {o.EffectiveStep})"));
        if (o.FlushInterval != 0) stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Sending flush every {o.FlushInterval} requests"));
        stdout.Flush();

        // qemu-img sends every request from the first of its per-request buffers: one aligned buffer is the same.
        var backing = GC.AllocateArray<byte>(o.BufferSize + BufferAlignment, pinned: true);
        int skew = (int)((nuint)Marshal.UnsafeAddrOfPinnedArrayElement(backing, 0) % BufferAlignment);
        var buffer = backing.AsMemory(skew == 0 ? 0 : BufferAlignment - skew, o.BufferSize);
        buffer.Span.Fill(o.Pattern);

        var run = new BenchRun(device, o, imageSize, buffer);
        var clock = Stopwatch.StartNew();
        run.RunAsync().GetAwaiter().GetResult();
        double seconds = clock.Elapsed.TotalSeconds;
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Run completed in {seconds:0.000} seconds."));
        stdout.Flush();
        // The flush qemu-img leaves in flight at the end completes while it closes the image: so here, untimed.
        run.FinishAsync().GetAwaiter().GetResult();
        return 0;
    }

    /// <summary>Builds the image's graph under a device, as qemu-img's img_open does; refusals read as its.</summary>
    internal static DeviceParent Open(BlockEngine engine, BenchOptions o, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(o);
        JsonObject top;
        if (o.ImageOpts)
        {
            if (o.Format is not null) throw new BenchError("--image-opts and --format are mutually exclusive");
            top = ImageOpts.Parse(o.Filename);
            foreach (var d in ImageOpts.Drivers(top)) RefuseWithoutIo(o.Filename, d);
        }
        else
        {
            top = Stack(o, stderr);
        }

        top["node-name"] = TopNode;
        // qemu-img's open flags: read-only unless -w; cache.direct and cache.no-flush on the top node,
        // which the children created inline under it inherit, as they do in QEMU.
        if (!o.Write) SetReadOnly(top);
        SetCache(top, o);
        if (o.Aio is { } aio) SetAio(top, aio);

        var reply = engine.Execute(new JsonObject { ["execute"] = "blockdev-add", ["arguments"] = top });
        if (!reply.IsOk) throw new BenchError($"Could not open '{o.Filename}': {reply.Error!.Desc}");
        // -U shares every permission (BDRV_O_NO_SHARE cleared), which is what share-rw asks of a device.
        reply = engine.Execute(new JsonObject
        {
            ["execute"] = "device_add",
            ["arguments"] = new JsonObject { ["driver"] = "virtio-blk-pci", ["id"] = DeviceId, ["drive"] = TopNode, ["share-rw"] = o.ForceShare },
        });
        if (!reply.IsOk) throw new BenchError($"Could not open '{o.Filename}': {reply.Error!.Desc}");
        return engine.FindDevice(DeviceId)!;
    }

    /// <summary>The blockdev-add arguments for a file name and <c>-f</c> (or the probe when there is none).</summary>
    private static JsonObject Stack(BenchOptions o, TextWriter stderr)
    {
        string name = o.Filename;
        bool nullProtocol = name.StartsWith("null-co://", StringComparison.Ordinal) || name.StartsWith("null-aio://", StringComparison.Ordinal);
        JsonObject Protocol() => nullProtocol ? NullNode(name, name.StartsWith("null-co", StringComparison.Ordinal) ? "null-co" : "null-aio")
            : new JsonObject { ["driver"] = "file", ["filename"] = name };

        string format = o.Format ?? Probe(name, nullProtocol);
        switch (format)
        {
            case "raw":
                if (o.Format is null && o.Write && !nullProtocol)
                {
                    stderr.WriteLine($"WARNING: Image format was not specified for '{name}' and probing guessed raw.");
                    stderr.WriteLine("         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.");
                    stderr.WriteLine("         Specify the 'raw' format explicitly to remove the restrictions.");
                }
                return new JsonObject { ["driver"] = "raw", ["file"] = Protocol() };
            case "file":
                return new JsonObject { ["driver"] = "file", ["filename"] = name };
            case "null-co" or "null-aio":
                return NullNode(name, format);
            case "qcow2":
                return Qcow2Stack(name, Protocol(), o.Write, depth: 0);
            default:
                RefuseWithoutIo(name, format);
                break;
        }
        throw new BenchError($"Could not open '{name}': Unknown driver '{format}'");
    }

    /// <summary>null-co's file name rule: only its own protocol prefix, nothing after it.</summary>
    private static JsonObject NullNode(string name, string driver)
    {
        if (name != $"{driver}://") throw new BenchError($"Could not open '{name}': The only allowed filename for this driver is '{driver}://'");
        return new JsonObject { ["driver"] = driver };
    }

    /// <summary>Longest backing chain followed (QEMU refuses deeper ones too).</summary>
    private const int BackingDepthMax = 64;

    /// <summary>
    /// A qcow2 node over <paramref name="file"/> with the backing chain its header names, as qemu-img opens it:
    /// the backing file relative to the image's folder, its format from the header's extension (else probed),
    /// read-only.
    /// </summary>
    private static JsonObject Qcow2Stack(string name, JsonObject file, bool writable, int depth)
    {
        var top = new JsonObject { ["driver"] = "qcow2", ["file"] = file };
        if (!File.Exists(name)) return top; // the open reports it, with QEMU's text
        var head = new byte[Impl.Formats.Qcow2Header.ProbeBytes];
        int n;
        using (var f = File.OpenRead(name)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        var (h, _) = Impl.Formats.Qcow2Header.Parse(head.AsSpan(0, n), writable);
        if (h?.BackingFile is not { } backing) return top;
        if (depth >= BackingDepthMax) throw new BenchError($"Could not open '{name}': backing chain too deep");
        var path = Path.IsPathRooted(backing) ? backing : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(name))!, backing);
        var backingFile = new JsonObject { ["driver"] = "file", ["filename"] = path };
        string format = h.BackingFormat ?? Probe(path, nullProtocol: false);
        top["backing"] = format == "qcow2" ? Qcow2Stack(path, backingFile, writable: false, depth + 1) : new JsonObject { ["driver"] = format, ["file"] = backingFile };
        return top;
    }

    /// <summary>
    /// Refuses drivers whose I/O Verified does not have: the engine would open them as forwarding nodes,
    /// and their numbers would be those of the layer below under the wrong name.
    /// </summary>
    private static void RefuseWithoutIo(string name, string driver)
    {
        if (!DriverRegistry.Names.Contains(driver))
            throw new BenchError($"Could not open '{name}': Unknown driver '{driver}'");
    }

    /// <summary>The format qemu-img's probe would pick: qcow2 by its magic, else raw.</summary>
    private static string Probe(string name, bool nullProtocol) => !nullProtocol && IsQcow2(name) ? "qcow2" : "raw";

    private static bool IsQcow2(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> head = stackalloc byte[4];
            return f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length && head.SequenceEqual(Qcow2Magic);
        }
        catch (IOException)
        {
            return false; // the open reports it, with QEMU's text
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// The cache flags on every node of the tree that does not set them itself. QEMU's children inherit
    /// them; Verified's inline children learn their parent only after they opened, too late for the file
    /// driver's open-time check that aio=native has cache.direct, so each node gets them stated.
    /// </summary>
    private static void SetCache(JsonObject o, BenchOptions opts)
    {
        var cache = o["cache"] as JsonObject ?? new JsonObject();
        if (opts.CacheDirect && !cache.ContainsKey("direct")) cache["direct"] = true;
        if (opts.CacheNoFlush && !cache.ContainsKey("no-flush")) cache["no-flush"] = true;
        if (cache.Count > 0) o["cache"] = cache;
        foreach (var (key, child) in o.ToList())
        {
            if (key != "cache" && child is JsonObject c) SetCache(c, opts);
        }
    }

    /// <summary>
    /// Without -w every node of the tree is opened read-only, as QEMU's children inherit it, so that a
    /// read benchmark works on an image file the user may only read.
    /// </summary>
    private static void SetReadOnly(JsonObject o)
    {
        if (!o.ContainsKey("read-only")) o["read-only"] = true;
        foreach (var (key, child) in o.ToList())
        {
            if (key != "cache" && child is JsonObject c) SetReadOnly(c);
        }
    }

    /// <summary>-n and -i apply to every file node (QEMU passes the flag down the whole tree).</summary>
    private static void SetAio(JsonObject o, string aio)
    {
        if (o["driver"] is JsonValue v && v.TryGetValue<string>(out var d) && d == "file" && !o.ContainsKey("aio")) o["aio"] = aio;
        foreach (var (_, child) in o.ToList())
        {
            if (child is JsonObject c) SetAio(c, aio);
        }
    }
}
