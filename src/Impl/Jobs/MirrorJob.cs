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
/// As QEMU's mirror_run, the job's dirty bitmap on the source drives every copy: the first run marks
/// what the sync mode asks for (full: everything; top: what the source's own layer holds; none:
/// nothing) and copies the dirty clusters, clearing them; guest writes keep marking it; the pivot, with
/// I/O drained, copies what is dirty then. So the target equals the source at the pivot in every mode.
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
        var err = MarkInitial();
        // The job's length is what the first pass copies (QEMU sets the progress from the dirty count).
        if (Sync != "none") Len = Dirty!.DirtyBytes;
        err ??= CopyDirty();
        if (err is not null) Error = err;
        else Offset = Len;
        return true;
    }

    /// <summary>mirror_dirty_init: marks what the sync mode copies first; an I/O error's text, or null.</summary>
    private string? MarkInitial()
    {
        var dirty = Dirty ?? throw new InvalidOperationException($"mirror job '{Id}' has no dirty bitmap");
        if (Sync == "none") return null;
        // sync=top (the engine makes it full when the source has no backing): only the source's own layer
        // (allocation depth 1, filters looked through, as backup's sync=top asks).
        if (Sync != "top")
        {
            dirty.Mark(0, Source.Length);
            return null;
        }
        try
        {
            for (long at = 0; at < Source.Length;)
            {
                var (depth, bytes) = Source.AllocationDepthAsync(at, Source.Length - at).AsTask().GetAwaiter().GetResult();
                bytes = Math.Clamp(bytes, 1, Source.Length - at);
                if (depth == 1) dirty.Mark(at, bytes);
                at += bytes;
            }
            return null;
        }
        catch (IO.BlockIOException e)
        {
            return IO.Errnos.Strerror(e.Errno);
        }
    }

    /// <summary>
    /// Copies the clusters the dirty bitmap holds (clearing them first, so a write meanwhile marks its
    /// cluster again) in runs of at most <see cref="CopyChunkBytes"/>; an I/O error's text, or null.
    /// </summary>
    internal string? CopyDirty()
    {
        if (Dirty is not { } dirty) return null;
        var taken = dirty.TakeAll();
        long granularity = dirty.Granularity, length = Source.Length;
        bool IsSet(long bit) => (taken[bit >> 6] & (1L << (int)(bit & 63))) != 0;
        var buffer = new byte[CopyChunkBytes];
        try
        {
            for (long bit = 0; bit < dirty.Bits;)
            {
                if (!IsSet(bit))
                {
                    bit++;
                    continue;
                }
                long first = bit;
                while (bit < dirty.Bits && IsSet(bit) && (bit - first + 1) * granularity <= CopyChunkBytes) bit++;
                long at = first * granularity;
                int n = (int)Math.Min((bit - first) * granularity, length - at);
                if (n <= 0) continue;
                Source.ReadAsync(at, buffer.AsMemory(0, n)).AsTask().GetAwaiter().GetResult();
                Target.WriteAsync(at, buffer.AsMemory(0, n)).AsTask().GetAwaiter().GetResult();
            }
            return null;
        }
        catch (IO.BlockIOException e)
        {
            // The job fails with this error; its bitmap goes with it, so what was taken need not be put back.
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
