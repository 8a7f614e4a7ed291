// Block jobs through the daemon's dispatcher. The comparison theory runs each tests/serve/jobs/*.jsonl
// sequence on qemu-storage-daemon 7.2 and on verified serve and requires zero differences in outcomes,
// error texts, events (timestamps aside), graph bytes, edges with perms and node lists (see
// Comparison). The facts drive a dispatcher whose jobs run only when told (RunJobsInBackground off),
// so each status a job passes through, and each event, is checked at a known point.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Server.Qmp;
using Verified.Vocabulary.Jobs;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Serve;

public class JobTests(ITestOutputHelper output)
{
    public static TheoryData<string> Sequences()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "jobs"), "*.jsonl").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(f));
        return data;
    }

    // The same job sequence gets the same answers, events and graphs from QEMU 7.2 and from verified serve.
    [QemuTheory]
    [MemberData(nameof(Sequences))]
    public void Job_sequences_get_the_same_answers_as_from_QEMU(string file)
    {
        var steps = Comparison.LoadScenario(Path.Combine(AppContext.BaseDirectory, "jobs", file));
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        var (diffs, compared) = Comparison.Run(steps, qemu, verified);
        output.WriteLine($"{file}: {compared} commands compared, {diffs.Count} differences");
        foreach (var d in diffs) output.WriteLine(d);
        Assert.True(compared > 0);
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    private static (BlockEngine Engine, QmpDispatcher Dispatcher, List<string> Events) Manual()
    {
        var engine = new BlockEngine();
        var d = new QmpDispatcher(engine) { RunJobsInBackground = false };
        var events = new List<string>();
        d.Subscribe(e => events.Add(e.Name == "JOB_STATUS_CHANGE" ? e.Data!["status"]!.GetValue<string>() : e.Name));
        foreach (var n in new[] { "src", "tgt" })
        {
            var r = d.Run("blockdev-add", new JsonObject { ["driver"] = "null-co", ["node-name"] = n, ["size"] = 1048576L, ["read-zeroes"] = true });
            Assert.True(r.IsOk, r.Error?.Desc);
        }
        return (engine, d, events);
    }

    private static JsonObject Backup(string id, string sync, bool autoFinalize = true) =>
        new() { ["job-id"] = id, ["device"] = "src", ["target"] = "tgt", ["sync"] = sync, ["auto-finalize"] = autoFinalize };

    // A full backup stays running until the jobs run; then it goes through waiting, pending, completed, concluded, null, and its filter goes.
    [Fact]
    public void Full_backup_runs_to_the_end_only_when_jobs_run()
    {
        var (engine, d, events) = Manual();
        using (engine)
        using (d)
        {
            Assert.True(d.Run("blockdev-backup", Backup("j0", "full")).IsOk);
            Assert.Equal(["created", "running", "paused", "running"], events);
            Assert.Equal(JobStatus.Running, Assert.Single(engine.Jobs).Status);
            Assert.Contains(engine.Nodes, n => n.DriverName == "copy-before-write");
            events.Clear();
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"], events);
            Assert.Empty(engine.Jobs);
            Assert.DoesNotContain(engine.Nodes, n => n.DriverName == "copy-before-write");
            Assert.Equal(0, d.RunJobs());
        }
    }

    // Without auto-finalize a finished job waits in pending; a paused job does not run; finalize ends it.
    [Fact]
    public void Paused_jobs_do_not_run_and_pending_jobs_wait_for_finalize()
    {
        var (engine, d, events) = Manual();
        using (engine)
        using (d)
        {
            Assert.True(d.Run("blockdev-backup", Backup("j0", "full", autoFinalize: false)).IsOk);
            Assert.True(d.Run("job-pause", new JsonObject { ["id"] = "j0" }).IsOk);
            Assert.Equal(0, d.RunJobs());
            Assert.Equal(JobStatus.Paused, engine.Jobs[0].Status);
            Assert.True(d.Run("job-resume", new JsonObject { ["id"] = "j0" }).IsOk);
            events.Clear();
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["waiting", "pending", "BLOCK_JOB_PENDING"], events);
            var refused = d.Run("job-dismiss", new JsonObject { ["id"] = "j0" });
            Assert.Equal("Job 'j0' in state 'pending' cannot accept command verb 'dismiss'", refused.Error!.Desc);
            Assert.True(d.Run("job-finalize", new JsonObject { ["id"] = "j0" }).IsOk);
            Assert.Empty(engine.Jobs);
        }
    }

    // A sync=none backup never finishes by itself; cancel removes the filter and puts the source's parents back.
    [Fact]
    public void Cancel_restores_the_graph_a_backup_changed()
    {
        var (engine, d, events) = Manual();
        using (engine)
        using (d)
        {
            var before = engine.Edges().Select(e => e.ToString()).Order(StringComparer.Ordinal).ToList();
            Assert.True(d.Run("blockdev-backup", Backup("j0", "none")).IsOk);
            Assert.Equal(0, d.RunJobs());
            Assert.Equal(JobStatus.Running, engine.Jobs[0].Status);
            Assert.True(d.Run("block-job-cancel", new JsonObject { ["device"] = "j0" }).IsOk);
            Assert.Contains("BLOCK_JOB_CANCELLED", events);
            Assert.Empty(engine.Jobs);
            Assert.Equal(before, engine.Edges().Select(e => e.ToString()).Order(StringComparer.Ordinal).ToList());
        }
    }

    /// <summary>Image size for the data tests: a few copy-before-write clusters.</summary>
    private const int ImageBytes = 4 * 65536;

    private static (BlockEngine Engine, QmpDispatcher Dispatcher, string Dir) Files(params string[] names)
    {
        var dir = Directory.CreateTempSubdirectory("verified-jobs.").FullName;
        var engine = new BlockEngine();
        var d = new QmpDispatcher(engine) { RunJobsInBackground = false };
        foreach (var n in names)
        {
            var path = Path.Combine(dir, n + ".img");
            File.WriteAllBytes(path, Enumerable.Range(0, ImageBytes).Select(i => (byte)(n[0] + i / 65536)).ToArray());
            var r = d.Run("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = n, ["filename"] = path });
            Assert.True(r.IsOk, r.Error?.Desc);
        }
        return (engine, d, dir);
    }

    /// <summary>A writable export on <c>src</c>: the guest's way in.</summary>
    private static void ExportSource(QmpDispatcher d, string dir)
    {
        Assert.True(d.Run("nbd-server-start", new JsonObject { ["addr"] = new JsonObject { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = Path.Combine(dir, "nbd.sock") } } }).IsOk);
        Assert.True(d.Run("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e0", ["node-name"] = "src", ["writable"] = true }).IsOk);
    }

    private static byte[] Read(BlockEngine engine, string node)
    {
        var buf = new byte[ImageBytes];
        var read = engine.FindNode(node)!.ReadAsync(0, buf);
        // File reads complete synchronously here; a helper may wait (the analyzer's rule is for test bodies).
        read.AsTask().Wait();
        return buf;
    }

    // sync=full: the target ends equal to the source as it was when the job started, whatever was written through the export meanwhile.
    [Fact]
    public async Task Full_backup_copies_the_source_as_it_was_at_the_start()
    {
        var (engine, d, dir) = Files("src", "tgt");
        try
        {
            ExportSource(d, dir);
            var before = Read(engine, "src");
            Assert.True(d.Run("blockdev-backup", Backup("j0", "full")).IsOk);
            // Guest writes land after the job started and before it ran: the filter copies the old data first.
            var export = engine.Exports.Single();
            await export.WriteAsync(65536 + 100, new byte[] { 1, 2, 3 });
            await export.WriteAsync(3 * 65536, new byte[4096]);
            Assert.NotEqual(before, Read(engine, "src"));
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(before, Read(engine, "tgt"));
            Assert.Empty(engine.Jobs);
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // A mirror is ready after its first run; job-complete moves the source's users onto the target, which then holds the source's data.
    [Fact]
    public async Task Mirror_complete_pivots_to_a_target_equal_to_the_source()
    {
        var (engine, d, dir) = Files("src", "tgt");
        try
        {
            ExportSource(d, dir);
            Assert.True(d.Run("blockdev-mirror", new JsonObject { ["job-id"] = "m0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" }).IsOk);
            Assert.Equal(JobStatus.Ready, engine.Jobs[0].Status);
            Assert.Equal("mirror_top", engine.Exports[0].Root!.Node.DriverName);
            // Written after ready: the pivot still leaves the target equal to the source.
            await engine.Exports[0].WriteAsync(7, new byte[] { 9, 9, 9 });
            Assert.True(d.Run("job-complete", new JsonObject { ["id"] = "m0" }).IsOk);
            Assert.Equal(JobStatus.Ready, engine.Jobs[0].Status); // completion comes at the next run, after the reply
            Assert.Equal(1, d.RunJobs());
            Assert.Empty(engine.Jobs);
            Assert.Equal("tgt", engine.Exports[0].Root!.Node.Name);
            Assert.Equal(Read(engine, "src"), Read(engine, "tgt"));
            Assert.DoesNotContain(engine.Nodes, n => n.DriverName == "mirror_top");
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // sync=none copies nothing at first; what the guest writes during the job reaches the target at the pivot
    // (the job's dirty bitmap), and nothing else of the source does.
    [Fact]
    public async Task Mirror_sync_none_pivots_with_the_writes_made_during_the_job()
    {
        var (engine, d, dir) = Files("src", "tgt");
        try
        {
            ExportSource(d, dir);
            var target = Read(engine, "tgt");
            Assert.True(d.Run("blockdev-mirror", new JsonObject { ["job-id"] = "m0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "none" }).IsOk);
            Assert.Equal(JobStatus.Ready, engine.Jobs[0].Status);
            Assert.Equal(target, Read(engine, "tgt"));
            var written = new byte[] { 9, 9, 9 };
            await engine.Exports[0].WriteAsync(2 * 65536 + 7, written);
            Assert.True(d.Run("job-complete", new JsonObject { ["id"] = "m0" }).IsOk);
            Assert.Equal(1, d.RunJobs());
            Assert.Empty(engine.Jobs);
            Assert.Equal("tgt", engine.Exports[0].Root!.Node.Name);
            // The dirtied cluster came from the source whole; every other cluster is the target's own.
            var source = Read(engine, "src");
            var expected = (byte[])target.Clone();
            Array.Copy(source, 2 * 65536, expected, 2 * 65536, 65536);
            Assert.Equal(expected, Read(engine, "tgt"));
        }
        finally
        {
            d.Dispose();
            engine.Dispose();
            Directory.Delete(dir, true);
        }
    }

    // block-job-cancel after ready ends the mirror as completed but leaves the users on the source.
    [Fact]
    public void Soft_cancel_after_ready_leaves_the_source_in_place()
    {
        var (engine, d, events) = Manual();
        using (engine)
        using (d)
        {
            Assert.True(d.Run("blockdev-mirror", new JsonObject { ["job-id"] = "m0", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" }).IsOk);
            Assert.Equal(["created", "running", "ready", "BLOCK_JOB_READY"], events);
            events.Clear();
            Assert.True(d.Run("block-job-cancel", new JsonObject { ["device"] = "m0" }).IsOk);
            Assert.Equal(1, d.RunJobs());
            Assert.Equal(["waiting", "pending", "BLOCK_JOB_COMPLETED", "concluded", "null"], events);
            Assert.Empty(engine.Edges());
            Assert.DoesNotContain(engine.Nodes, n => n.DriverName == "mirror_top");
        }
    }
}
