// blockdev-create's job through the daemon's dispatcher, with jobs run only when told
// (RunJobsInBackground off), so each status change is checked at a known point: the job is created and
// running within the command and ends only when the jobs run (its work waits for I/O); a failure before
// any I/O ends it within the command; it is not a block job and never dismisses itself; its BlockBackend
// holds the node it formats until it ends, and a cancel before it runs releases what it held. The
// comparison with QEMU itself is tests/serve/jobs/create.jsonl (JobTests) and CreateInteropTests.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Server.Qmp;
using Verified.Vocabulary.Jobs;
using Xunit;

namespace Verified.Tests.Serve;

public sealed class CreateJobTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("verified-create.").FullName;
    private readonly BlockEngine engine = new();
    private readonly QmpDispatcher d;
    private readonly List<string> events = [];

    public CreateJobTests()
    {
        d = new QmpDispatcher(engine) { RunJobsInBackground = false };
        d.Subscribe(e => events.Add(e.Name == "JOB_STATUS_CHANGE" ? e.Data!["status"]!.GetValue<string>() : e.Name));
    }

    public void Dispose()
    {
        d.Dispose();
        engine.Dispose();
        Directory.Delete(dir, recursive: true);
    }

    private string P(string name) => Path.Combine(dir, name);

    private static JsonObject Create(string id, JsonObject options) => new() { ["job-id"] = id, ["options"] = options };

    private JsonObject FileOptions(string name, long size) => new() { ["driver"] = "file", ["filename"] = P(name), ["size"] = size };

    private Verified.Impl.Graph.BlockNode NodeF() => engine.Nodes.Single(n => n.Name == "f");

    private JsonArray QueryJobs() => d.Run("query-jobs", []).Return!.AsArray();

    // A file create is created and running within the command, waits until the jobs run, then concludes and stays until dismissed.
    [Fact]
    public void A_create_job_ends_only_when_jobs_run_and_stays_until_dismissed()
    {
        Assert.True(d.Run("blockdev-create", Create("c0", FileOptions("a.raw", 1L << 20))).IsOk);
        Assert.Equal(["created", "running"], events);
        Assert.Equal(JobStatus.Running, Assert.Single(engine.Jobs).Status);
        Assert.Equal(0, new FileInfo(P("a.raw")).Length);
        events.Clear();
        Assert.Equal(1, d.RunJobs());
        Assert.Equal(["waiting", "pending", "concluded"], events);
        Assert.Equal(1 << 20, new FileInfo(P("a.raw")).Length);
        var job = Assert.Single(QueryJobs())!;
        Assert.Equal("{\"current-progress\":1,\"status\":\"concluded\",\"total-progress\":1,\"type\":\"create\",\"id\":\"c0\"}", job.ToJsonString());
        Assert.Empty(d.Run("query-block-jobs", []).Return!.AsArray());
        Assert.Equal("Block job 'c0' not found", d.Run("block-job-dismiss", new JsonObject { ["id"] = "c0" }).Error!.Desc);
        Assert.True(d.Run("job-dismiss", new JsonObject { ["id"] = "c0" }).IsOk);
        Assert.Empty(engine.Jobs);
        Assert.Equal(0, d.RunJobs());
    }

    // A check that fails before any I/O (a missing file node) ends the job within the command, with progress 1 of 1.
    [Fact]
    public void A_failure_before_any_IO_ends_the_job_within_the_command()
    {
        var qcow2 = new JsonObject { ["driver"] = "qcow2", ["file"] = "nosuch", ["size"] = 1L << 20 };
        Assert.True(d.Run("blockdev-create", Create("q0", qcow2)).IsOk);
        Assert.Equal(["created", "running", "aborting", "concluded"], events);
        Assert.Equal(0, d.RunJobs());
        var job = Assert.Single(QueryJobs())!;
        Assert.Equal("Cannot find device='nosuch' nor node-name='nosuch'", job["error"]!.GetValue<string>());
        Assert.Equal(1, job["current-progress"]!.GetValue<long>());
        Assert.DoesNotContain("BLOCK_JOB_COMPLETED", events);
    }

    // The job's BlockBackend holds the file node (write and resize) until the job ends; a cancel before it runs releases it and writes nothing.
    [Fact]
    public void Cancel_before_the_job_runs_releases_its_backend_and_writes_nothing()
    {
        File.WriteAllBytes(P("q.qcow2"), []);
        Assert.True(d.Run("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "f", ["filename"] = P("q.qcow2") }).IsOk);
        JsonObject Qcow2() => new() { ["driver"] = "qcow2", ["file"] = "f", ["size"] = 1L << 20 };
        Assert.True(d.Run("blockdev-create", Create("q0", Qcow2())).IsOk);
        Assert.Contains(NodeF().Parents, e => e.Parent is Verified.Impl.Jobs.CreateBackend);
        Assert.Equal("Job ID 'q0' already in use", d.Run("blockdev-create", Create("q0", Qcow2())).Error!.Desc);
        Assert.True(d.Run("job-cancel", new JsonObject { ["id"] = "q0" }).IsOk);
        Assert.Equal(JobStatus.Concluded, Assert.Single(engine.Jobs).Status);
        Assert.DoesNotContain(NodeF().Parents, e => e.Parent is Verified.Impl.Jobs.CreateBackend);
        Assert.Equal(0, d.RunJobs());
        Assert.Equal(0, new FileInfo(P("q.qcow2")).Length);
        // The node is free again: a second create formats it.
        Assert.True(d.Run("job-dismiss", new JsonObject { ["id"] = "q0" }).IsOk);
        Assert.True(d.Run("blockdev-create", Create("q1", Qcow2())).IsOk);
        Assert.Equal(1, d.RunJobs());
        Assert.Null(Assert.Single(QueryJobs())!["error"]);
        Assert.Equal(Verified.Impl.Formats.Qcow2Image.Layout(1 << 20, null, null, 16), File.ReadAllBytes(P("q.qcow2")));
    }

    // Options the schema refuses change nothing: no job, no file.
    [Fact]
    public void Schema_errors_create_no_job_and_no_file()
    {
        var bad = FileOptions("x.raw", 1);
        bad["preallocation"] = "bogus";
        Assert.Equal("Parameter 'preallocation' does not accept value 'bogus'", d.Run("blockdev-create", Create("c0", bad)).Error!.Desc);
        Assert.Equal("Driver does not support blockdev-create", d.Run("blockdev-create", Create("c0", new JsonObject { ["driver"] = "raw" })).Error!.Desc);
        Assert.Equal("Invalid job ID '1x'", d.Run("blockdev-create", Create("1x", FileOptions("x.raw", 1))).Error!.Desc);
        Assert.Empty(engine.Jobs);
        Assert.Empty(events);
        Assert.False(File.Exists(P("x.raw")));
    }
}
