// Crash safety of the qcow2 driver's metadata ordering: a separate Verified process writes a qcow2
// image (`verified bench -w`, flushing every few requests so refcount blocks, L2 tables and L1 entries
// are written back all the time; 512-byte clusters and a stride, so nearly every request allocates data
// clusters, L2 tables and refcount blocks and the refcount table has to move) and is killed with SIGKILL
// after a random delay, many times over the same image. After every kill `qemu-img check` must find no
// error (leaked clusters are allowed, as QEMU allows them), and the image must still open in Verified.
// `verified serve` cannot take guest writes yet (the NBD server is another engineer's work in progress),
// so the writing process is `verified bench`; it goes through the same engine, driver and file code.
using System.Diagnostics;
using Verified.Impl.Formats;
using Xunit;

namespace Verified.Tests.IO;

public sealed class Qcow2CrashTests : IDisposable
{
    /// <summary>Kills per scenario (each a process start, some writing, a SIGKILL and a qemu-img check).</summary>
    private const int Kills = 8;

    /// <summary>The kill comes this long after the start, uniformly: from before the image is open to well into the writes.</summary>
    private const int DelayMinMs = 300, DelayMaxMs = 1500;

    /// <summary>Longest a killed process may take to go away.</summary>
    private const int ExitWaitMs = 10_000;

    private readonly string dir = Directory.CreateTempSubdirectory("verified-crash-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    /// <summary>SIGKILL at random points never leaves a corrupt image; leaks at most.</summary>
    /// <remarks>
    /// bench wraps its offset modulo the image size, so a request may not straddle the end (that fails with
    /// EIO, in qemu-img bench too): every start offset is <paramref name="phase"/> past a MiB boundary and
    /// offset, step and size keep every request's residue modulo the step where it ends inside the image,
    /// while still crossing cluster boundaries (1536 bytes at 3000 mod 8192 straddle a 4 KiB cluster).
    /// </remarks>
    [Theory]
    [InlineData(9, false, "-s 4096 -S 65536 -d 8 --flush-interval 8", 0, 11)]
    [InlineData(12, true, "-s 1536 -S 8192 -d 16 --flush-interval 16", 3000, 12)]
    [InlineData(16, false, "-s 65536 -S 196608 -d 4 --flush-interval 4", 0, 13)]
    public void Sigkill_while_writing_never_corrupts_the_image(int clusterBits, bool withBacking, string benchArgs, int phase, int seed)
    {
        const long size = 256L << 20;
        var image = Path.Combine(dir, "crash.qcow2");
        string? backing = null;
        if (withBacking)
        {
            backing = Path.Combine(dir, "base.qcow2");
            Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", backing, "256M");
            Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 64M", backing);
        }
        Qcow2Image.Create(image, size, backing, backing is null ? null : "qcow2", clusterBits);
        var rng = new Random(seed);
        for (int i = 0; i < Kills; i++)
        {
            int delay = rng.Next(DelayMinMs, DelayMaxMs);
            long offset = (rng.NextInt64(0, 64) << 20) + phase;
            var args = $"bench -w -f qcow2 -c 100000000 -o {offset} {benchArgs} {image}";
            KillAfter(args, delay);
            var (code, output) = Qemu.Run("qemu-img", "check", "-f", "qcow2", image);
            Assert.True(code is 0 or 3 && !output.Contains("ERROR", StringComparison.Ordinal),
                $"replay: cluster_bits={clusterBits} backing={withBacking} kill {i} after {delay} ms of 'verified {args}': qemu-img check exited {code}:\n{output}");
            using var q = new Qcow2Node(image, backing, readOnly: true);
            Assert.Equal(size, q.Node.Length);
        }
    }

    /// <summary>
    /// The same, at every write boundary instead of at random times: a fixed workload (allocating writes,
    /// partial writes over a backing image, zero writes, discards that free clusters, flushes) runs on a fresh
    /// image with every file write after the n-th failing, which leaves the file exactly as a process killed
    /// between write n and n+1 would; for every n, qemu-img check must find no error.
    /// </summary>
    [Fact]
    public void Stopping_after_any_write_never_corrupts_the_image()
    {
        var backing = Path.Combine(dir, "base.qcow2");
        Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", backing, "1M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 512k", backing);
        var image = Path.Combine(dir, "stop.qcow2");
        int total = Workload(image, backing, int.MaxValue);
        Assert.True(total > 50, $"the workload wrote only {total} times");
        Qemu.CheckClean(image); // uninterrupted, the image is clean and leak-free
        for (int n = 0; n < total; n += Math.Max(1, total / StopPointsMax))
        {
            Workload(image, backing, n);
            var (code, output) = Qemu.Run("qemu-img", "check", "-f", "qcow2", image);
            Assert.True(code is 0 or 3 && !output.Contains("ERROR", StringComparison.Ordinal),
                $"replay: stop after write {n} of {total}: qemu-img check exited {code}:\n{output}");
        }
    }

    /// <summary>Most stop points tried (the workload's writes are sampled evenly beyond this).</summary>
    private const int StopPointsMax = 400;

    /// <summary>Runs the workload on a new image, every write to it after the <paramref name="stopAfter"/>-th failing; returns the writes made.</summary>
    private static int Workload(string image, string backing, int stopAfter)
    {
        Qcow2Image.Create(image, 1 << 20, backing, "qcow2", clusterBits: 9);
        int writes = 0;
        var storage = new Verified.Impl.IO.HostStorage
        {
            Injector = (file, op) => op == Verified.Impl.IO.HostOp.Write && file == image && Interlocked.Increment(ref writes) > stopAfter ? 5 : 0,
        };
        using (var e = new Verified.Impl.Engine.BlockEngine(new Verified.Impl.IO.EngineServices { Storage = storage }))
        {
            string J(string x) => System.Text.Json.JsonSerializer.Serialize(x);
            var opts = "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"qcow2\",\"node-name\":\"q\",\"discard\":\"unmap\","
                + "\"file\":{\"driver\":\"file\",\"filename\":" + J(image) + "},"
                + "\"backing\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":" + J(backing) + "}}}}";
            Assert.True(e.Execute(System.Text.Json.Nodes.JsonNode.Parse(opts)!.AsObject()).IsOk);
            var q = e.FindNode("q")!;
            var rng = new Random(3);
            try
            {
                for (int i = 0; i < 60; i++)
                {
                    long off = rng.NextInt64(0, (1 << 20) - 70_000);
                    switch (i % 6)
                    {
                        case 0 or 1 or 2:
                            q.WriteAsync(off, new byte[1 + rng.Next(20_000)]).AsTask().GetAwaiter().GetResult();
                            break;
                        case 3:
                            q.WriteZeroesAsync(off, rng.Next(1, 70_000), rng.Next(2) == 0 ? Verified.Impl.IO.WriteFlags.MayUnmap : 0).AsTask().GetAwaiter().GetResult();
                            break;
                        case 4:
                            q.DiscardAsync(off, rng.Next(1, 70_000)).AsTask().GetAwaiter().GetResult();
                            break;
                        default:
                            q.FlushAsync().AsTask().GetAwaiter().GetResult();
                            break;
                    }
                }
                q.FlushAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (IOException)
            {
                // The "crash": from here on nothing reaches the file.
            }
        }
        return writes;
    }

    /// <summary>Starts a Verified process (the CLI built next to this test assembly) and SIGKILLs it after <paramref name="delayMs"/>.</summary>
    private static void KillAfter(string args, int delayMs)
    {
        var bin = AppContext.BaseDirectory;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "exec", "--runtimeconfig", Path.Combine(bin, "Verified.Tests.IO.runtimeconfig.json"), Path.Combine(bin, "verified.dll") })
            psi.ArgumentList.Add(a);
        foreach (var a in args.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        // (The message reads the output only when the process ended: reading it earlier would wait for the end.)
        if (p.WaitForExit(delayMs)) Assert.Fail($"verified {args} ended before the kill: {stdout.Result}{stderr.Result}");
        p.Kill(); // SIGKILL on Linux
        Assert.True(p.WaitForExit(ExitWaitMs), "the killed process did not go away");
    }
}
