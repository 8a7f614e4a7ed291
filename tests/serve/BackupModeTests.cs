// Backup's modes through the daemon's dispatcher with jobs run only when told (RunJobsInBackground off):
// the rate limit on a fake clock (the bytes copied by any time stay within speed × time plus one chunk,
// and set-speed changes it live), sync=top over a layer that holds nothing (nothing copied, len 0),
// sync=top of a qcow2 overlay (with qemu-img and qemu-io when installed: only the overlay's clusters reach
// the target), sync=bitmap (only dirty clusters copied; the bitmap busy while the job lives; on-success keeps only the
// writes made meanwhile, never merges them back), and the stop error policy (BLOCK_JOB_ERROR, a pause with
// io-status failed, resume retries to the end). Images are small files in a temporary folder.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Verified.Impl.Jobs;
using Verified.Server.Qmp;
using Xunit;

namespace Verified.Tests.Serve;

public sealed class BackupModeTests
{
    /// <summary>A clock that moves only when told.</summary>
    private sealed class ManualClock : IClock
    {
        public long NowNs { get; set; } = 1_000_000_000;

        public ValueTask WaitUntilAsync(long deadlineNs, CancellationToken ct = default) => ValueTask.CompletedTask;
    }

    private const long ClusterBytes = 65536;

    /// <summary>Size of the rate-limited source: several of QEMU's 1 MiB block-copy chunks.</summary>
    private const long LimitedBytes = 8 * BackupJob.ChunkBytesMax;

    /// <summary>The limit used: 2 MiB/s, a fifth of a chunk per 100 ms slice.</summary>
    private const long SpeedBytesPerSecond = 2 << 20;

    /// <summary>Clock steps taken before the limited job must have ended (its bytes at its speed, plus slack of a few slices).</summary>
    private const int LimitedStepsMax = (int)(LimitedBytes * 10 / SpeedBytesPerSecond) + 10;

    private static (BlockEngine Engine, QmpDispatcher D, List<string> Events) Engine(ManualClock? clock = null)
    {
        var engine = new BlockEngine(new EngineServices { Clock = clock ?? new ManualClock() });
        var d = new QmpDispatcher(engine) { RunJobsInBackground = false };
        var events = new List<string>();
        d.Subscribe(e => events.Add(e.Name switch
        {
            "JOB_STATUS_CHANGE" => e.Data!["status"]!.GetValue<string>(),
            "BLOCK_JOB_ERROR" => $"ERROR {e.Data!["operation"]} {e.Data!["action"]}",
            _ => e.Name,
        }));
        return (engine, d, events);
    }

    private static void Ok(QmpDispatcher d, string cmd, JsonObject args)
    {
        var r = d.Run(cmd, args);
        Assert.True(r.IsOk, $"{cmd}: {r.Error?.Desc}");
    }

    private static JsonObject NullCo(string name, long size, bool zeroes) =>
        new() { ["driver"] = "null-co", ["node-name"] = name, ["size"] = size, ["read-zeroes"] = zeroes };

    // At every step of a fake clock, a limited backup has copied at most speed × elapsed time plus one chunk; it still ends; set-speed 0 lifts the limit at once.
    [Fact]
    public void Rate_limit_bounds_the_bytes_copied_by_any_time()
    {
        var clock = new ManualClock();
        var (engine, d, _) = Engine(clock);
        using (engine)
        using (d)
        {
            Ok(d, "blockdev-add", NullCo("src", LimitedBytes, true));
            Ok(d, "blockdev-add", NullCo("tgt", LimitedBytes, true));
            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full", ["speed"] = SpeedBytesPerSecond });
            var job = engine.Jobs.Single();
            long start = clock.NowNs;
            int steps = 0;
            for (; engine.Jobs.Count > 0 && steps < LimitedStepsMax; steps++)
            {
                d.RunJobs();
                if (engine.Jobs.Count == 0) break;
                long elapsedNs = clock.NowNs - start;
                long allowed = SpeedBytesPerSecond * elapsedNs / 1_000_000_000 + BackupJob.ChunkBytesMax;
                Assert.True(job.Offset <= allowed, $"{job.Offset} bytes copied after {elapsedNs} ns; at most {allowed} allowed");
                Assert.True(engine.JobWakeDelayNs is > 0, "a limited job that has not ended sleeps");
                clock.NowNs += RateLimit.SliceNs;
            }
            Assert.Empty(engine.Jobs);
            // It took about its bytes at its speed: not less than (bytes - one chunk) / speed.
            long tookNs = clock.NowNs - start;
            Assert.True(tookNs >= (LimitedBytes - BackupJob.ChunkBytesMax) * 1_000_000_000 / SpeedBytesPerSecond, $"ended after {tookNs} ns");

            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j1", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full", ["speed"] = 1L });
            d.RunJobs();
            Assert.Equal(BackupJob.ChunkBytesMax, engine.Jobs.Single().Offset);
            d.RunJobs();
            Assert.Equal(BackupJob.ChunkBytesMax, engine.Jobs.Single().Offset);
            Ok(d, "block-job-set-speed", new JsonObject { ["device"] = "j1", ["speed"] = 0L });
            d.RunJobs();
            Assert.Empty(engine.Jobs);
        }
    }

    // sync=top of a null-co node without read-zeroes (nothing allocated): nothing is copied, len and offset are 0, the target keeps its bytes.
    [Fact]
    public void Top_backup_of_a_layer_that_holds_nothing_copies_nothing()
    {
        var (engine, d, events) = Engine();
        var dir = Directory.CreateTempSubdirectory("verified-backup.").FullName;
        try
        {
            var path = Path.Combine(dir, "tgt.img");
            File.WriteAllBytes(path, Enumerable.Repeat((byte)7, (int)(4 * ClusterBytes)).ToArray());
            Ok(d, "blockdev-add", NullCo("src", 4 * ClusterBytes, false));
            Ok(d, "blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "tgt", ["filename"] = path });
            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "top", ["auto-dismiss"] = false });
            Assert.Equal(1, d.RunJobs());
            var info = engine.Jobs.Single().JobInfo();
            Assert.Equal(0, info["total-progress"]!.GetValue<long>());
            Assert.Equal(0, info["current-progress"]!.GetValue<long>());
            Assert.Contains("BLOCK_JOB_COMPLETED", events);
            Ok(d, "job-dismiss", new JsonObject { ["id"] = "j0" });
            Ok(d, "blockdev-del", new JsonObject { ["node-name"] = "tgt" });
            Assert.All(File.ReadAllBytes(path), b => Assert.Equal(7, b));
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // sync=top of a qcow2 overlay (images made and checked by qemu-img / qemu-io): only the overlay's own clusters reach the target, len counts them.
    [QemuFact]
    public void Top_backup_of_a_qcow2_overlay_copies_only_its_own_clusters()
    {
        var (engine, d, _) = Engine();
        var dir = Directory.CreateTempSubdirectory("verified-backup.").FullName;
        try
        {
            string F(string n) => Path.Combine(dir, n);
            void Tool(string program, params string[] args)
            {
                var r = NbdTools.Run(program, args);
                Assert.True(r.Exit == 0, $"{program} {string.Join(' ', args)}: {r.Out}{r.Err}");
            }
            Tool("qemu-img", "create", "-f", "qcow2", F("base.qcow2"), "1M");
            Tool("qemu-io", "-c", "write -P 1 0 128k", F("base.qcow2"));
            Tool("qemu-img", "create", "-f", "qcow2", "-b", F("base.qcow2"), "-F", "qcow2", F("top.qcow2"), "1M");
            Tool("qemu-io", "-c", "write -P 3 64k 128k", "-c", "write -P 4 960k 64k", F("top.qcow2"));
            Tool("qemu-img", "create", "-f", "raw", F("t.raw"), "1M");
            Tool("qemu-io", "-f", "raw", "-c", "write -P 9 0 1M", F("t.raw"));
            Ok(d, "blockdev-add", new JsonObject { ["driver"] = "qcow2", ["node-name"] = "base", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = F("base.qcow2") } });
            Ok(d, "blockdev-add", new JsonObject { ["driver"] = "qcow2", ["node-name"] = "top", ["backing"] = "base", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = F("top.qcow2") } });
            Ok(d, "blockdev-add", new JsonObject { ["driver"] = "raw", ["node-name"] = "tgt", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = F("t.raw") } });
            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j0", ["device"] = "top", ["target"] = "tgt", ["sync"] = "top", ["auto-dismiss"] = false });
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(3 * ClusterBytes, engine.Jobs.Single().Len);
            Assert.Equal(3 * ClusterBytes, engine.Jobs.Single().Offset);
            Ok(d, "job-dismiss", new JsonObject { ["id"] = "j0" });
            Ok(d, "blockdev-del", new JsonObject { ["node-name"] = "tgt" });
            // Cluster 0 lives in the base only: not copied (the target keeps 9); the overlay's three clusters are.
            Tool("qemu-io", "-f", "raw", "-c", "read -P 9 0 64k", "-c", "read -P 3 64k 128k", "-c", "read -P 9 192k 768k", "-c", "read -P 4 960k 64k", F("t.raw"));
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // sync=bitmap copies only the bitmap's dirty clusters; the bitmap is busy meanwhile; on-success leaves in it only the writes made during the job.
    [Theory]
    [InlineData("on-success", 1)]
    [InlineData("never", 2)]
    public async Task Bitmap_backup_copies_dirty_clusters_and_settles_the_bitmap(string mode, int clustersLeft)
    {
        var (engine, d, _) = Engine();
        var dir = Directory.CreateTempSubdirectory("verified-backup.").FullName;
        try
        {
            foreach (var (n, fill) in new[] { ("src", (byte)1), ("tgt", (byte)2) })
            {
                var path = Path.Combine(dir, n + ".img");
                File.WriteAllBytes(path, Enumerable.Repeat(fill, (int)(4 * ClusterBytes)).ToArray());
                Ok(d, "blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = n, ["filename"] = path });
            }
            Ok(d, "nbd-server-start", new JsonObject { ["addr"] = new JsonObject { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = Path.Combine(dir, "nbd.sock") } } });
            Ok(d, "block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "src", ["writable"] = true });
            Ok(d, "block-dirty-bitmap-add", new JsonObject { ["node"] = "src", ["name"] = "b0" });
            var export = engine.Exports.Single();
            await export.WriteAsync(ClusterBytes + 10, new byte[] { 9, 9, 9 });
            Ok(d, "blockdev-backup", new JsonObject
            {
                ["job-id"] = "j0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "bitmap", ["bitmap"] = "b0", ["bitmap-mode"] = mode, ["auto-finalize"] = false,
            });
            // A write during the job goes to the successor, not into the bitmap being copied.
            await export.WriteAsync(3 * ClusterBytes, new byte[] { 5 });
            var clear = d.Run("block-dirty-bitmap-clear", new JsonObject { ["node"] = "src", ["name"] = "b0" });
            Assert.Equal("Bitmap 'b0' is currently in use by another operation and cannot be used", clear.Error?.Desc);
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(ClusterBytes, engine.Jobs.Single().Len);
            Ok(d, "job-finalize", new JsonObject { ["id"] = "j0" });
            var bitmap = engine.FindNode("src")!.Bitmaps.Single();
            Assert.False(bitmap.Frozen);
            Assert.Equal(clustersLeft * ClusterBytes, bitmap.Bits!.DirtyBytes);
            var tgt = new byte[4 * ClusterBytes];
            await engine.FindNode("tgt")!.ReadAsync(0, tgt);
            Assert.Equal([2, 1, 9, 1, 2], new[] { tgt[0], tgt[ClusterBytes], tgt[ClusterBytes + 10], tgt[2 * ClusterBytes - 1], tgt[3 * ClusterBytes] });
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // on-source-error=stop: a read error sends BLOCK_JOB_ERROR (read, stop) and pauses the job with io-status failed; resume retries and the job ends.
    [Fact]
    public void Stop_policy_pauses_the_job_and_resume_retries()
    {
        var (engine, d, events) = Engine();
        using (engine)
        using (d)
        {
            Ok(d, "blockdev-add", new JsonObject
            {
                ["driver"] = "raw", ["node-name"] = "src",
                ["file"] = new JsonObject
                {
                    ["driver"] = "blkdebug", ["node-name"] = "dbg", ["image"] = NullCo("null", 4 * ClusterBytes, true),
                    ["inject-error"] = new JsonArray(new JsonObject { ["event"] = "read_aio", ["errno"] = (long)Errnos.EIO, ["once"] = true }),
                },
            });
            Ok(d, "blockdev-add", NullCo("tgt", 4 * ClusterBytes, true));
            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full", ["on-source-error"] = "stop" });
            events.Clear();
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["ERROR read stop", "paused"], events);
            var info = engine.Jobs.Single().BlockJobInfo();
            Assert.Equal("failed", info["io-status"]!.GetValue<string>());
            Assert.Equal(0, d.RunJobs());
            events.Clear();
            Ok(d, "job-resume", new JsonObject { ["id"] = "j0" });
            Assert.Equal("ok", engine.Jobs.Single().IoStatus);
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["running", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"], events);
        }
    }

    // on-target-error=ignore: a write error once sends BLOCK_JOB_ERROR (write, ignore); that run counts as a move (the job wants another), and the next run ends it.
    [Fact]
    public void Ignore_policy_retries_at_the_next_run()
    {
        var (engine, d, events) = Engine();
        using (engine)
        using (d)
        {
            Ok(d, "blockdev-add", NullCo("src", 4 * ClusterBytes, true));
            Ok(d, "blockdev-add", new JsonObject
            {
                ["driver"] = "raw", ["node-name"] = "tgt",
                ["file"] = new JsonObject
                {
                    ["driver"] = "blkdebug", ["node-name"] = "dbg", ["image"] = NullCo("null", 4 * ClusterBytes, true),
                    ["inject-error"] = new JsonArray(new JsonObject { ["event"] = "write_aio", ["errno"] = (long)Errnos.EIO, ["once"] = true }),
                },
            });
            Ok(d, "blockdev-backup", new JsonObject { ["job-id"] = "j0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full", ["on-target-error"] = "ignore" });
            events.Clear();
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["ERROR write ignore"], events);
            Assert.Equal("running", engine.Jobs.Single().JobInfo()["status"]!.GetValue<string>());
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["ERROR write ignore", "waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"], events);
        }
    }

    // The policies map to actions as block_job_error_action does: enospc and auto stop only on ENOSPC.
    [Theory]
    [InlineData("report", Errnos.ENOSPC, "report")]
    [InlineData("ignore", Errnos.EIO, "ignore")]
    [InlineData("stop", Errnos.EIO, "stop")]
    [InlineData("enospc", Errnos.ENOSPC, "stop")]
    [InlineData("enospc", Errnos.EIO, "report")]
    [InlineData("auto", Errnos.ENOSPC, "stop")]
    [InlineData("auto", Errnos.EIO, "report")]
    public void Error_policies_pick_QEMUs_action(string policy, int errno, string action) =>
        Assert.Equal(action, BackupJob.ErrorAction(policy, errno));
}
