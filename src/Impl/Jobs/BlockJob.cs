using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Impl.Jobs;

/// <summary>An event a job sends (QMP name and data, members in QEMU's order).</summary>
public sealed record JobEvent(string Name, JsonObject Data);

/// <summary>
/// A block job (QEMU's Job + BlockJob): a parent whose edges keep fixed perms and stay at their node
/// when nodes are replaced; its status lives on a <see cref="JobStateMachine"/> built from QEMU's tables,
/// so a forbidden move throws (QEMU asserts) and a refused verb gets QEMU's text.
/// </summary>
/// <remarks>Not thread-safe: the engine calls it under its graph lock.</remarks>
public abstract class BlockJob : IBlockParent
{
    private readonly JobStateMachine machine = new();
    private readonly Action<JobEvent> emit;

    internal BlockJob(string id, long seq, bool autoFinalize, bool autoDismiss, long speed, Action<JobEvent> emit)
    {
        Id = id;
        Seq = seq;
        AutoFinalize = autoFinalize;
        AutoDismiss = autoDismiss;
        Speed = speed;
        this.emit = emit;
    }

    /// <summary>The job id.</summary>
    public string Id { get; }

    /// <summary>Creation stamp (QEMU lists jobs newest first).</summary>
    public long Seq { get; }

    /// <summary>The QAPI job type (<c>backup</c>, <c>mirror</c>).</summary>
    public abstract string Type { get; }

    /// <summary>The current status.</summary>
    public JobStatus Status => machine.Status;

    /// <summary>Whether the job is a block job (listed by query-block-jobs, sends BLOCK_JOB_* events); a create job is not.</summary>
    public virtual bool IsBlockJob => true;

    /// <summary>Finalizes by itself once pending (auto-finalize).</summary>
    public bool AutoFinalize { get; }

    /// <summary>Goes away by itself once concluded (auto-dismiss).</summary>
    public bool AutoDismiss { get; }

    /// <summary>The rate limit in bytes per second (0 = none); a backup enforces it (see <see cref="RateLimit"/>).</summary>
    public long Speed { get; internal set; }

    /// <summary>The block job's io-status: <c>ok</c>, or after an error that stopped it <c>failed</c> / <c>nospace</c> until resumed.</summary>
    public string IoStatus { get; internal set; } = "ok";

    /// <summary>Paused by the user (job-pause, or an error with the stop policy).</summary>
    public bool UserPaused { get; internal set; }

    /// <summary>Cancel was requested.</summary>
    public bool Cancelled { get; internal set; }

    /// <summary>Bytes done (QEMU's progress_current, the block-job <c>offset</c>).</summary>
    public long Offset { get; internal set; }

    /// <summary>Bytes in all (QEMU's progress_total, the block-job <c>len</c>).</summary>
    public long Len { get; internal set; }

    /// <summary>
    /// The job has finished (its work done or failed, complete or a soft cancel asked) and moves on at the
    /// next <c>RunJobs</c>, as QEMU's job_exit runs from a bottom half after the command that caused it.
    /// </summary>
    internal bool CompletionPending { get; set; }

    /// <summary>The error the job failed with (strerror text), or null.</summary>
    public string? Error { get; internal set; }

    /// <summary>The job's edges, newest first (QEMU prepends to job->nodes).</summary>
    internal List<BdrvChild> Edges { get; } = [];

    /// <inheritdoc/>
    public string Description => $"{Type} job '{Id}'";

    /// <inheritdoc/>
    public string GraphName => Id;

    /// <inheritdoc/>
    public bool StaysAtNode => true;

    /// <summary>QEMU's refusal of <paramref name="verb"/> now, or null.</summary>
    public QmpError? Refusal(JobVerb verb) => machine.Apply(Id, verb);

    /// <summary><c>job_state_transition</c>: moves and sends JOB_STATUS_CHANGE when the status changes.</summary>
    internal void Move(JobStatus to)
    {
        var from = Status;
        machine.Move(to);
        if (from != to) Emit("JOB_STATUS_CHANGE", new JsonObject { ["status"] = JobTables.Name(to), ["id"] = Id });
    }

    internal void Emit(string name, JsonObject data) => emit(new JobEvent(name, data));

    /// <summary>BLOCK_JOB_COMPLETED / BLOCK_JOB_CANCELLED's members, in QEMU's order.</summary>
    internal JsonObject EndInfo()
    {
        var o = new JsonObject { ["device"] = Id, ["len"] = Len, ["offset"] = Offset, ["speed"] = Speed, ["type"] = Type };
        if (Error is not null && !Cancelled) o["error"] = Error;
        return o;
    }

    /// <summary>Whether the job has work left that running would do (a sync=none backup never has: it only waits).</summary>
    internal abstract bool HasWork { get; }

    /// <summary>Does the job's work while it runs; returns true once the work is done (or failed, setting <see cref="Error"/>).</summary>
    internal abstract bool Work();

    /// <summary>The filter node the job inserted above its source (removed when the job ends), or null once removed.</summary>
    internal BlockNode? Filter { get; set; }

    /// <summary>The name of the filter the job inserted, or null once it is gone.</summary>
    public string? FilterName => Filter?.Name;

    /// <summary><c>query-jobs</c> entry, in QEMU's member order.</summary>
    public JsonObject JobInfo()
    {
        var o = new JsonObject { ["current-progress"] = Offset, ["status"] = JobTables.Name(Status), ["total-progress"] = Len, ["type"] = Type, ["id"] = Id };
        if (Error is not null) o["error"] = Error;
        return o;
    }

    /// <summary><c>query-block-jobs</c> entry, in QEMU's member order.</summary>
    public JsonObject BlockJobInfo() => new()
    {
        ["auto-finalize"] = AutoFinalize, ["io-status"] = IoStatus, ["device"] = Id, ["auto-dismiss"] = AutoDismiss, ["busy"] = false,
        ["len"] = Len, ["offset"] = Offset, ["status"] = JobTables.Name(Status), ["paused"] = Status is JobStatus.Paused or JobStatus.Standby,
        ["speed"] = Speed, ["ready"] = JobTables.IsReady(Status), ["type"] = Type,
    };
}
