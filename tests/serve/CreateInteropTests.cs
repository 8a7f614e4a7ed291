// Images made by blockdev-create, on qemu-storage-daemon 7.2 and on verified serve side by side: for
// each case (file images with each preallocation, qcow2 images over a range of versions, cluster sizes,
// refcount widths, sizes, with lazy refcounts and a backing file, over an empty and over a non-empty
// file, and a wrapped negative size that fails half way) both peers run the same commands, then the two
// files must be equal byte for byte and in length, `qemu-img info --output=json` must print the same
// (temporary directories aside), each job must end with the same error (or none), and every qcow2
// image Verified made must pass `qemu-img check`. Runs when QEMU is installed.
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Serve;

public class CreateInteropTests(ITestOutputHelper output)
{
    /// <summary>How many times a job's status is polled before the test gives up on it.</summary>
    private const int JobPollsMax = 500;

    /// <summary>Pause between polls.</summary>
    private const int JobPollMs = 10;

    /// <summary>One image: a file create (and, for qcow2, the qcow2 create over it), as blockdev-create options.</summary>
    private sealed record Case(string Name, JsonObject File, JsonObject? Qcow2 = null);

    private static JsonObject FileOpts(string name, long size, string? prealloc = null)
    {
        var o = new JsonObject { ["driver"] = "file", ["filename"] = $"@TMP@/{name}", ["size"] = size };
        if (prealloc is not null) o["preallocation"] = prealloc;
        return o;
    }

    private static JsonObject Qcow2Opts(long size, params (string Key, JsonNode Value)[] extra)
    {
        var o = new JsonObject { ["driver"] = "qcow2", ["file"] = "f", ["size"] = size };
        foreach (var (k, v) in extra) o[k] = v;
        return o;
    }

    private static readonly Case[] Cases =
    [
        new("raw-tiny", FileOpts("raw-tiny", 100)),
        new("raw-sparse", FileOpts("raw-sparse", 1L << 20)),
        new("raw-full", FileOpts("raw-full", 70000, "full")),
        new("raw-falloc", FileOpts("raw-falloc", 131072, "falloc")),
        new("q-default", FileOpts("q-default", 0), Qcow2Opts(64L << 20)),
        new("q-empty", FileOpts("q-empty", 0), Qcow2Opts(0)),
        new("q-v2", FileOpts("q-v2", 0), Qcow2Opts(1L << 20, ("version", "v2"), ("cluster-size", 4096))),
        new("q-small-clusters", FileOpts("q-small-clusters", 0), Qcow2Opts(64L << 20, ("cluster-size", 512))),
        new("q-big-clusters", FileOpts("q-big-clusters", 0), Qcow2Opts(10L << 20, ("cluster-size", 2L << 20))),
        new("q-1tib", FileOpts("q-1tib", 0), Qcow2Opts(1L << 40)),
        new("q-rc1", FileOpts("q-rc1", 0), Qcow2Opts(16L << 20, ("refcount-bits", 1), ("cluster-size", 512))),
        new("q-rc2", FileOpts("q-rc2", 0), Qcow2Opts(16L << 20, ("refcount-bits", 2))),
        new("q-rc4", FileOpts("q-rc4", 0), Qcow2Opts(16L << 20, ("refcount-bits", 4))),
        new("q-rc8", FileOpts("q-rc8", 0), Qcow2Opts(16L << 20, ("refcount-bits", 8))),
        new("q-rc32", FileOpts("q-rc32", 0), Qcow2Opts(16L << 20, ("refcount-bits", 32))),
        new("q-rc64", FileOpts("q-rc64", 0), Qcow2Opts(16L << 20, ("refcount-bits", 64), ("cluster-size", 4096))),
        new("q-backing", FileOpts("q-backing", 0), Qcow2Opts(32L << 20, ("lazy-refcounts", true),
            ("backing-file", "/nonexistent/base.qcow2"), ("backing-fmt", "qcow2"), ("compression-type", "zlib"))),
        new("q-over-data", FileOpts("q-over-data", 1L << 20, "full"), Qcow2Opts(8L << 20, ("cluster-size", 4096))),
        new("q-negative", FileOpts("q-negative", 0), Qcow2Opts(-512)),
    ];

    // An image blockdev-create makes on Verified has QEMU's bytes, QEMU's qemu-img info, QEMU's job outcome, and passes qemu-img check.
    [QemuFact]
    public void Images_made_by_blockdev_create_equal_QEMUs()
    {
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        using var cq = qemu.Connect();
        using var cv = verified.Connect();
        cq.Negotiate();
        cv.Negotiate();
        var diffs = new List<string>();
        foreach (var c in Cases)
        {
            var outcomes = new[] { (cq, qemu), (cv, verified) }.Select(x => Make(x.Item1, x.Item2, c)).ToList();
            if (outcomes[0] != outcomes[1]) diffs.Add($"{c.Name}: job outcomes differ:\n  qemu:     {outcomes[0]}\n  verified: {outcomes[1]}");
            var (pq, pv) = (Path.Combine(qemu.TmpDir, c.Name), Path.Combine(verified.TmpDir, c.Name));
            var (bq, bv) = (File.ReadAllBytes(pq), File.ReadAllBytes(pv));
            if (!bq.AsSpan().SequenceEqual(bv)) diffs.Add($"{c.Name}: bytes differ (qemu {bq.Length} bytes, verified {bv.Length} bytes, first difference at {FirstDifference(bq, bv)})");
            var (iq, iv) = (Info(pq, qemu.TmpDir), Info(pv, verified.TmpDir));
            if (iq != iv) diffs.Add($"{c.Name}: qemu-img info differs:\n  qemu:     {iq}\n  verified: {iv}");
            if (c.Qcow2 is not null && outcomes[1] == "ok")
            {
                var check = NbdTools.Run("qemu-img", "check", pv);
                if (check.Exit != 0) diffs.Add($"{c.Name}: qemu-img check failed ({check.Exit}): {check.Out}{check.Err}");
            }
            output.WriteLine($"{c.Name}: {bv.Length} bytes, job {outcomes[1]}");
        }
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    /// <summary>Runs a case on one peer; returns the jobs' outcomes ("ok" or their errors).</summary>
    private static string Make(QmpClient c, Peer p, Case k)
    {
        var outcome = RunJob(c, p, k.Name + "-file", k.File);
        if (k.Qcow2 is null) return outcome;
        Ok(c.Execute("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "f", ["filename"] = Path.Combine(p.TmpDir, k.Name) }));
        outcome += "; " + RunJob(c, p, k.Name + "-qcow2", k.Qcow2);
        Ok(c.Execute("blockdev-del", new JsonObject { ["node-name"] = "f" }));
        return outcome;
    }

    /// <summary>blockdev-create, then waits for the job to conclude, dismisses it, and returns its error or "ok".</summary>
    private static string RunJob(QmpClient c, Peer p, string id, JsonObject options)
    {
        var opts = JsonNode.Parse(options.ToJsonString().Replace("@TMP@", p.TmpDir, StringComparison.Ordinal))!;
        Ok(c.Execute("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = opts }));
        for (int poll = 0; poll < JobPollsMax; poll++)
        {
            var job = c.Execute("query-jobs")["return"]!.AsArray().Single(j => j!["id"]!.GetValue<string>() == id)!;
            if (job["status"]!.GetValue<string>() == "concluded")
            {
                Ok(c.Execute("job-dismiss", new JsonObject { ["id"] = id }));
                return job["error"]?.GetValue<string>() ?? "ok";
            }
            Thread.Sleep(JobPollMs);
        }
        throw new TimeoutException($"{p.Name}: job {id} did not conclude");
    }

    private static void Ok(JsonObject reply) => Assert.True(reply.ContainsKey("return"), reply.ToJsonString());

    private static string Info(string path, string tmp)
    {
        var r = NbdTools.Run("qemu-img", "info", "--output=json", path);
        return (r.Out + r.Err).Replace(tmp, "@TMP@", StringComparison.Ordinal);
    }

    private static long FirstDifference(byte[] a, byte[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
        {
            if (a[i] != b[i]) return i;
        }
        return n;
    }
}
