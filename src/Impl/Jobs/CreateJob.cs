using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.Jobs;

/// <summary>
/// A <c>create</c> job (block/create.c): not a block job, so it has no edges, no speed and no BLOCK_JOB_*
/// events, and <c>query-block-jobs</c> does not list it; it never dismisses itself. Its progress is 0 of 1
/// until its work ends, then 1 of 1 whether it succeeded or not (blockdev_create_run). What it does before
/// its first wait for I/O happens within the command; <see cref="Rest"/> is what is left after.
/// </summary>
public sealed class CreateJob : BlockJob
{
    internal CreateJob(string id, long seq, Action<JobEvent> emit)
        : base(id, seq, autoFinalize: true, autoDismiss: false, speed: 0, emit)
    {
        Len = 1;
    }

    /// <inheritdoc/>
    public override string Type => "create";

    /// <inheritdoc/>
    public override bool IsBlockJob => false;

    /// <summary>The work left after the command (returns the job's error, or null), or null once done.</summary>
    internal Func<string?>? Rest { get; set; }

    /// <summary>Releases what <see cref="Rest"/> would have used, should the job end without running it (a cancel).</summary>
    internal Action? Release { get; set; }

    /// <summary>The job's temporary BlockBackend on the node it formats (qcow2 on a named node), or null.</summary>
    internal CreateBackend? Backend { get; set; }

    /// <inheritdoc/>
    internal override bool HasWork => Rest is not null;

    /// <summary>Ends the job's work with <paramref name="error"/> (null: success); its progress becomes 1 of 1.</summary>
    internal void Done(string? error)
    {
        System.Diagnostics.Debug.Assert(Status == Vocabulary.Jobs.JobStatus.Running, "a create job's work ends while it runs");
        System.Diagnostics.Debug.Assert(Offset == 0, "a create job's work ends once");
        Error = error;
        Offset = 1;
        Rest = null;
        Release = null;
    }

    /// <inheritdoc/>
    internal override bool Work()
    {
        if (Rest is not { } rest) return false;
        Done(rest());
        return true;
    }
}

/// <summary>
/// qcow2_co_create's BlockBackend on the image's file: anonymous, takes write and resize, shares everything
/// (so a parent that does not share resize, such as a read-only export, refuses it with QEMU's conflict text).
/// </summary>
public sealed class CreateBackend : RootParent
{
    internal CreateBackend(long seq, IO.IoGate gate) : base("", seq, gate)
    {
    }

    /// <inheritdoc/>
    public override string Description => "an unnamed block device";

    /// <inheritdoc/>
    public override string GraphName => "";

    /// <inheritdoc/>
    public override (Perm Perm, Perm Shared) Wants => (Perm.Write | Perm.Resize, Perm.All);
}
