using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.Jobs;

/// <summary>
/// A mirror job (block/mirror.c): a <c>mirror_top</c> filter above the source (child <c>backing</c>), the
/// target held by the job's own BlockBackend taking write and sharing only write-unchanged. The job copies
/// the source to the target, becomes ready, and on complete the target replaces the source (pivot); a soft
/// cancel after ready ends it without the pivot.
/// </summary>
/// <remarks>
/// Verified copies the whole source when the job runs and once more, with I/O drained, just before the
/// pivot, instead of tracking dirty clusters: the target equals the source at the pivot either way.
/// </remarks>
public sealed class MirrorJob : BlockJob, IO.IHiddenBitmaps
{
    /// <summary>The largest single copy, in bytes (QEMU's default mirror buffer is 1 MiB).</summary>
    public const int CopyChunkBytes = 1 << 20;

    internal MirrorJob(string id, long seq, bool autoFinalize, bool autoDismiss, long speed, string sync, BlockNode source, BlockNode target,
        Action<JobEvent> emit) : base(id, seq, autoFinalize, autoDismiss, speed, emit)
    {
        Sync = sync;
        Source = source;
        Target = target;
    }

    /// <inheritdoc/>
    public override string Type => "mirror";

    /// <summary>The sync mode (full, top, none).</summary>
    public string Sync { get; }

    /// <summary>The node mirrored.</summary>
    internal BlockNode Source { get; }

    /// <summary>The node written.</summary>
    internal BlockNode Target { get; }

    /// <summary>Granularity of the job's dirty bitmap (QEMU's default when the target reports no cluster size).</summary>
    public const long DirtyGranularity = 65536;

    /// <summary>The job's dirty bitmap on the source (writes during the job), until the job ends.</summary>
    internal DirtyBits? Dirty { get; set; }

    /// <summary>The dirty bitmap's creation stamp.</summary>
    internal long DirtyStamp { get; set; }

    /// <inheritdoc/>
    public IEnumerable<IO.HiddenBitmap> HiddenBitmaps =>
        Dirty is { } d ? [new IO.HiddenBitmap(Source, d.Granularity, d.DirtyBytes, DirtyStamp, Recording: true)] : [];

    /// <summary>The job's BlockBackend on the target, until the job ends.</summary>
    internal MirrorTargetParent? TargetParent { get; set; }

    /// <summary>Whether the job has reached ready once (it then has no work of its own left).</summary>
    internal bool ReachedReady { get; set; }

    /// <summary>Whether the target is to replace the source when the job ends (job-complete).</summary>
    internal bool ShouldComplete { get; set; }

    /// <inheritdoc/>
    internal override bool HasWork => !ReachedReady;

    /// <inheritdoc/>
    internal override bool Work()
    {
        // mirror_run checks the sizes before it sets the job's length.
        if (Source.Length != Target.Length)
        {
            Error = "Source and target image have different sizes";
            return true;
        }
        if (Sync != "none") Len = Source.Length;
        var err = CopyAll();
        if (err is not null) Error = err;
        else Offset = Len;
        return true;
    }

    /// <summary>Copies the source to the target in chunks (bounded by the length); an I/O error's text, or null.</summary>
    internal string? CopyAll()
    {
        if (Sync == "none") return null;
        var buffer = new byte[CopyChunkBytes];
        try
        {
            for (long at = 0; at < Source.Length; at += CopyChunkBytes)
            {
                int n = (int)Math.Min(CopyChunkBytes, Source.Length - at);
                Source.ReadAsync(at, buffer.AsMemory(0, n)).AsTask().GetAwaiter().GetResult();
                Target.WriteAsync(at, buffer.AsMemory(0, n)).AsTask().GetAwaiter().GetResult();
            }
            return null;
        }
        catch (IO.BlockIOException e)
        {
            return IO.Errnos.Strerror(e.Errno);
        }
    }
}

/// <summary>The mirror job's BlockBackend on its target: anonymous, takes write, shares only write-unchanged.</summary>
public sealed class MirrorTargetParent : RootParent
{
    internal MirrorTargetParent(long seq, IO.IoGate gate) : base("", seq, gate)
    {
    }

    /// <inheritdoc/>
    public override string Description => "an unnamed block device";

    /// <inheritdoc/>
    public override string GraphName => "";

    /// <inheritdoc/>
    public override (Perm Perm, Perm Shared) Wants => (Perm.Write, Perm.WriteUnchanged);
}
