using System.Diagnostics;
using Verified.Cli.Bench;
using Xunit;

namespace Verified.Tests.IO;

/// <summary>
/// <c>verified bench</c>'s argument parsing, validation and output against QEMU 7.2's <c>qemu-img bench</c>:
/// each case's exit code and text are fixed here (as measured on qemu-img 7.2.22), and when qemu-img is
/// installed the same arguments are also run through it and the two are compared line by line, program
/// names aside.
/// </summary>
public sealed class BenchCommandTests : IDisposable
{
    /// <summary>Bound on one qemu-img run (they take milliseconds here).</summary>
    private const int QemuTimeoutMs = 30_000;

    private readonly string dir = Directory.CreateTempSubdirectory("verified-bench-test-").FullName;
    private readonly string image;

    public BenchCommandTests()
    {
        image = Path.Combine(dir, "disk.img");
        using var f = File.Create(image);
        f.SetLength(1 << 20);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);

    public static TheoryData<string, int, string> Refusals => new()
    {
        // arguments (IMG = the image), exit code, stderr without program names
        { "-c x IMG", 1, "Invalid request count specified" },
        { "-c -1 IMG", 1, "Invalid request count specified" },
        { "-c 3000000000 IMG", 1, "Invalid request count specified" },
        { "-c 5k IMG", 1, "Invalid request count specified" },
        { "-d x IMG", 1, "Invalid queue depth specified" },
        { "-d 3000000000 IMG", 1, "Invalid queue depth specified" },
        { "-s 3G IMG", 1, "Invalid buffer size specified. Must be between 0 and 2147483647." },
        { "-s x IMG", 1, "Invalid buffer size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." },
        { "-s 1.5 IMG", 1, "Invalid buffer size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." },
        { "-s -0 IMG", 1, "Invalid buffer size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." },
        { "-s 16E IMG", 1, "Invalid buffer size specified. Must be between 0 and 2147483647." },
        { "-S x IMG", 1, "Invalid step_size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." },
        { "-o -5 IMG", 1, "Invalid offset specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." },
        { "--pattern 256 IMG", 1, "Invalid pattern byte specified" },
        { "--pattern x IMG", 1, "Invalid pattern byte specified" },
        { "--flush-interval 5 IMG", 1, "--flush-interval is only available in write tests" },
        { "-w --flush-interval 5 IMG", 1, "Flush interval can't be smaller than depth" },
        { "-t bogus IMG", 1, "Invalid cache mode" },
        { "-i bogus IMG", 1, "Invalid aio option: bogus" },
        { "--bogus IMG", 1, "unrecognized option '--bogus'\nTry 'PROG --help' for more information" },
        { "-x IMG", 1, "unrecognized option '-x'\nTry 'PROG --help' for more information" },
        { "IMG -c", 1, "missing argument for option '-c'\nTry 'PROG --help' for more information" },
        { "IMG --pattern", 1, "missing argument for option '--pattern'\nTry 'PROG --help' for more information" },
        { "IMG IMG", 1, "Expecting one image file name\nTry 'PROG --help' for more information" },
        { "-c 1", 1, "Expecting one image file name\nTry 'PROG --help' for more information" },
        { "--image-opts -f raw driver=null-co", 1, "--image-opts and --format are mutually exclusive" },
        { "-n -f raw IMG", 1, "Could not open 'IMG': aio=native was specified, but it requires cache.direct=on, which was not specified." },
        { "-f qcow2 IMG", 1, "Could not open 'IMG': Image is not in qcow2 format" },
        { "-f null-co IMG", 1, "Could not open 'IMG': The only allowed filename for this driver is 'null-co://'" },
        { "-f raw -c 3 -o 2M IMG", 1, "Failed request: Input/output error" },
        { "-f raw NOFILE", 1, "Could not open 'NOFILE': Could not open 'NOFILE': No such file or directory" },
    };

    public static TheoryData<string, string> Accepted => new()
    {
        // arguments, stdout without the timing line
        { "-c 10 IMG", "Sending 10 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "IMG", "Sending 75000 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-f raw -c 0x10 -d 010 IMG", "Sending 16 read requests, 4096 bytes each, 8 in parallel (starting at offset 0, step size 4096)" },
        { "-f raw -c10 -d1 -s 1.5k -S 0x10 -o 1k IMG", "Sending 10 read requests, 1536 bytes each, 1 in parallel (starting at offset 1024, step size 16)" },
        { "-f raw -c 5 -s 1. IMG", "Sending 5 read requests, 1 bytes each, 64 in parallel (starting at offset 0, step size 1)" },
        { "-f raw -c 5 -s 0 IMG", "Sending 5 read requests, 0 bytes each, 64 in parallel (starting at offset 0, step size 0)" },
        { "-f raw -w -c 100 -d 4 --flush-interval 10 IMG", "Sending 100 write requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)\nSending flush every 10 requests" },
        { "-f raw -w -c 100 -d 4 --flush-interval=10 --no-drain --pattern 0xab IMG", "Sending 100 write requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)\nSending flush every 10 requests" },
        { "-qU -t none -n -f raw -c 10 IMG", "Sending 10 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-t directsync -i threads -f raw -w -c 10 IMG", "Sending 10 write requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-t unsafe -f raw -w -c 10 -- IMG", "Sending 10 write requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-f raw -c 1000 -d 1 -o 1020k IMG", "Sending 1000 read requests, 4096 bytes each, 1 in parallel (starting at offset 1044480, step size 4096)" },
        { "-f null-co -c 1000 null-co://", "Sending 1000 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-c 1000 --image-opts driver=raw,file.driver=null-co,file.size=1M", "Sending 1000 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
        { "-c 1000 --image-opts driver=raw,file.driver=raw,file.file.driver=null-co", "Sending 1000 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void Refusals_match_qemu_img(string args, int exitCode, string stderr)
    {
        var (code, _, err) = Verified(args);
        Assert.Equal(exitCode, code);
        Assert.Equal(stderr, err);
        if (Qemu(args) is { } q)
        {
            Assert.Equal(q.Code, code);
            Assert.Equal(q.Err, err);
        }
    }

    [Theory]
    [MemberData(nameof(Accepted))]
    public void Accepted_runs_print_qemu_img_lines(string args, string stdout)
    {
        var (code, outText, err) = Verified(args);
        Assert.True(code == 0, err);
        var lines = outText.Split('\n');
        Assert.Equal(stdout, string.Join("\n", lines[..^1]));
        Assert.Matches(@"^Run completed in \d+\.\d{3} seconds\.$", lines[^1]);
        if (Qemu(args) is { } q)
        {
            Assert.Equal(0, q.Code);
            Assert.Equal(string.Join("\n", q.Out.Split('\n')[..^1]), string.Join("\n", lines[..^1]));
        }
    }

    [Fact]
    public void Help_exits_0()
    {
        Assert.Null(BenchArgs.Parse(["-h"]));
        Assert.Null(BenchArgs.Parse(["--help", "x"]));
        Assert.Equal(0, Verified("--help").Code);
    }

    [Fact]
    public void Defaults_are_qemu_img_s()
    {
        var o = BenchArgs.Parse(["disk"])!;
        Assert.Equal((75000, 64, 4096, 4096, 0L, "writeback", false, 0), (o.Count, o.Depth, o.BufferSize, o.EffectiveStep, o.Offset, o.CacheMode, o.Write, o.FlushInterval));
        Assert.True(o.DrainOnFlush);
        Assert.Null(o.Aio);
    }

    [Fact]
    public void Cache_modes_map_as_bdrv_parse_cache_mode()
    {
        static BenchOptions P(string t) => BenchArgs.Parse(["-t", t, "x"])!;
        Assert.True(P("none").CacheDirect && !P("none").WriteThrough);
        Assert.True(P("off").CacheDirect);
        Assert.True(P("directsync").CacheDirect && P("directsync").WriteThrough);
        Assert.True(P("writethrough").WriteThrough && !P("writethrough").CacheDirect);
        Assert.True(P("unsafe").CacheNoFlush);
        Assert.False(P("writeback").CacheDirect || P("writeback").WriteThrough || P("writeback").CacheNoFlush);
        Assert.Equal("native", BenchArgs.Parse(["-n", "x"])!.Aio);
        Assert.Equal("native", BenchArgs.Parse(["-i", "io_uring", "-n", "x"])!.Aio);
        Assert.Equal("io_uring", BenchArgs.Parse(["-i", "io_uring", "x"])!.Aio);
    }

    [Fact]
    public void Depth_zero_is_refused_where_qemu_img_would_wait_forever()
    {
        var e = Assert.Throws<BenchError>(() => BenchArgs.Parse(["-d", "0", "x"]));
        Assert.Equal("Invalid queue depth specified", e.Message);
        Assert.Equal(0, BenchArgs.Parse(["-d", "0", "-c", "0", "x"])!.Depth);
    }

    /// <summary>qcow2 images (probed, -f qcow2, --image-opts) are measured through the qcow2 driver: writes allocate clusters qemu-img then sees, cleanly.</summary>
    [Fact]
    public void Qcow2_images_are_benchmarked_through_the_qcow2_driver()
    {
        var q = Path.Combine(dir, "q.qcow2");
        global::Verified.Impl.Formats.Qcow2Image.Create(q, 1 << 20);
        foreach (var args in new[] { $"-w -c 10 {q}", $"-w -f qcow2 -c 10 -o 64k {q}", $"-w -c 10 -o 128k --image-opts driver=qcow2,file.driver=file,file.filename={q}" })
        {
            var (code, outText, err) = Verified(args);
            Assert.True(code == 0, err);
            Assert.Contains("Run completed in", outText, StringComparison.Ordinal);
        }
        global::Verified.Tests.IO.Qemu.CheckClean(q);
        var map = global::Verified.Tests.IO.Qemu.Ok("qemu-img", "map", "--output=json", q);
        // Ten 4 KiB writes at each of the three offsets: each range lies in allocated data.
        var data = System.Text.Json.Nodes.JsonNode.Parse(map)!.AsArray().Where(e => e!["data"]!.GetValue<bool>())
            .Select(e => (Start: e!["start"]!.GetValue<long>(), End: e["start"]!.GetValue<long>() + e["length"]!.GetValue<long>())).ToList();
        foreach (var start in new[] { 0L, 65536, 131072 })
            Assert.Contains(data, r => r.Start <= start && start + 40960 <= r.End);
        var (rc, _, rerr) = Verified($"-c 10 {q}");
        Assert.True(rc == 0, rerr);
    }

    [Theory]
    [InlineData("1k", 1024UL)]
    [InlineData(" 5", 5UL)]
    [InlineData("+5", 5UL)]
    [InlineData("0x10", 16UL)]
    [InlineData("010", 10UL)]
    [InlineData("1.k", 1024UL)]
    [InlineData("1.5m", 1572864UL)]
    [InlineData("1b", 1UL)]
    [InlineData("8E", 9223372036854775808UL)]
    public void Sizes_parse_as_qemu_strtosz(string text, ulong value)
    {
        var r = QemuNumbers.StrToSz(text);
        Assert.Equal(QemuNumbers.SizeError.None, r.Error);
        Assert.Equal(value, r.Value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("k")]
    [InlineData(".5k")]
    [InlineData("1e3k")]
    [InlineData("5 ")]
    [InlineData("0x")]
    [InlineData("0x1.8")]
    [InlineData("0.5b")]
    public void Bad_sizes_are_invalid(string text) =>
        Assert.Equal(QemuNumbers.SizeError.Invalid, QemuNumbers.StrToSz(text).Error);

    [Fact]
    public void Hex_with_suffix_warns_and_counts()
    {
        var warnings = new List<string>();
        var o = BenchArgs.Parse(["-s", "0x10k", "x"], warnings.Add)!;
        Assert.Equal(16 << 10, o.BufferSize);
        Assert.Equal(["warning: Using a multiplier suffix on hex numbers is deprecated: 0x10k"], warnings);
    }

    private string Expand(string args) =>
        args.Replace("NOFILE", Path.Combine(dir, "missing.img"), StringComparison.Ordinal).Replace("IMG", image, StringComparison.Ordinal);

    private string Normalise(string text) => text.Replace("\r", "", StringComparison.Ordinal).TrimEnd('\n')
        .Replace(Path.Combine(dir, "missing.img"), "NOFILE", StringComparison.Ordinal).Replace(image, "IMG", StringComparison.Ordinal)
        .Replace("verified bench --help", "PROG --help", StringComparison.Ordinal).Replace("qemu-img --help", "PROG --help", StringComparison.Ordinal)
        .Replace("verified: ", "", StringComparison.Ordinal).Replace("qemu-img: ", "", StringComparison.Ordinal);

    private (int Code, string Out, string Err) Verified(string args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = BenchCommand.Run(Expand(args).Split(' ', StringSplitOptions.RemoveEmptyEntries), stdout, stderr);
        return (code, Normalise(stdout.ToString()), Normalise(stderr.ToString()));
    }

    /// <summary>The same arguments through the real qemu-img bench, or null when it is not installed.</summary>
    private (int Code, string Out, string Err)? Qemu(string args)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("bench");
        foreach (var a in Expand(args).Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
        using (p)
        {
            var outTask = p.StandardOutput.ReadToEndAsync();
            var errTask = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(QemuTimeoutMs))
            {
                p.Kill();
                throw new TimeoutException($"qemu-img bench {args} did not finish");
            }
            return (p.ExitCode, Normalise(outTask.Result), Normalise(errTask.Result));
        }
    }
}
