using Verified.Impl.Graph;
using Verified.Impl.IO;

namespace Verified.Impl.Jobs;

/// <summary>
/// A backup job (block/backup.c over block/block-copy.c): its copy-before-write filter keeps the
/// point-in-time image by copying old data to the target before guest writes land; the job copies every
/// cluster of its plan the filter has not. The plan is fixed when the job starts: every cluster
/// (sync=full), the clusters allocated in the source's own layer (sync=top), or the sync bitmap's dirty
/// clusters (sync=bitmap); the filter then copies only planned clusters too. sync=none copies nothing and
/// waits to be cancelled (fleecing). A limit (speed) cuts the copy into chunks of at most
/// <see cref="ChunkBytesMax"/>, each accounted on a <see cref="RateLimit"/>; over quota the job sleeps.
/// A failed copy is handled by the error policy of its side (read: on-source-error, write: on-target-error).
/// </summary>
public sealed class BackupJob : BlockJob, IHiddenBitmaps
{
    /// <summary>QEMU's BLOCK_COPY_MAX_BUFFER: one block-copy task copies at most this many contiguous bytes.</summary>
    public const long ChunkBytesMax = 1 << 20;

    private readonly RateLimit limit = new();
    private readonly IClock clock;
    private bool[] plan = [];
    private long nextCluster;
    private long chunkEnd;
    private int startErrno;

    internal BackupJob(string id, long seq, bool autoFinalize, bool autoDismiss, long speed, string sync, IClock clock, Action<JobEvent> emit)
        : base(id, seq, autoFinalize, autoDismiss, speed, emit)
    {
        Sync = sync;
        this.clock = clock;
        if (speed > 0) limit.SetSpeed(speed);
    }

    /// <inheritdoc/>
    public override string Type => "backup";

    /// <summary>The sync mode (full, top, none, bitmap; incremental is bitmap with on-success).</summary>
    public string Sync { get; }

    /// <summary>The policy for a failed read of the source (report, ignore, stop, enospc, auto).</summary>
    public string OnSourceError { get; init; } = "report";

    /// <summary>The policy for a failed write of the target.</summary>
    public string OnTargetError { get; init; } = "report";

    /// <summary>The sync bitmap (its node and name) and what happens to it at the end (on-success, never, always); null without one.</summary>
    internal SyncBitmap? Bitmap { get; init; }

    /// <summary>Set when a run ended on an error the policy ignored: the job wants another run at once.</summary>
    internal bool IgnoredError { get; set; }

    /// <summary>When the job may copy again (clock nanoseconds) after exceeding its rate; 0 when not sleeping.</summary>
    internal long SleepUntilNs { get; private set; }

    /// <summary>Whether the job waits for its rate limit's slice to end at <paramref name="nowNs"/>.</summary>
    internal bool Sleeping(long nowNs) => SleepUntilNs > nowNs;

    private CopyBeforeWriteDriver Cbw => (CopyBeforeWriteDriver)(Filter ?? throw new InvalidOperationException($"job '{Id}' has no filter")).Driver;

    /// <inheritdoc/>
    internal override bool HasWork => Sync != "none" && Filter is not null;

    /// <inheritdoc/>
    public IEnumerable<HiddenBitmap> HiddenBitmaps => Bitmap is { Successor: var s } b && b.Node.BitmapList.Exists(x => x.Name == b.Name && x.Frozen)
        ? [new HiddenBitmap(b.Node, s.Granularity, s.DirtyBytes, b.SuccessorStamp, b.Recording)] : [];

    /// <summary>block-job-set-speed: the new limit applies from the next chunk; a sleeping job wakes to look again (backup_set_speed kicks it).</summary>
    internal void SetSpeed(long speed)
    {
        Speed = speed;
        limit.SetSpeed(speed);
        SleepUntilNs = 0;
    }

    /// <summary>
    /// backup_run's start (backup_init_bcs_bitmap, and for sync=top block_copy_reset_unallocated): fixes the
    /// plan, tells the filter to skip the rest, and sets the length to the planned bytes.
    /// </summary>
    internal void Start()
    {
        if (!HasWork) return;
        var cbw = Cbw;
        var source = Filter!.Child("file")!.Node;
        long size = cbw.ClusterSize, length = source.Length;
        plan = new bool[cbw.ClusterCount];
        long planned = 0;
        for (long c = 0; c < plan.Length; c++)
        {
            long bytes = Math.Min(size, length - c * size);
            bool top = false;
            if (Sync == "top")
            {
                try
                {
                    top = TopAllocated(source, c * size, bytes);
                }
                catch (BlockIOException e)
                {
                    // backup_run returns the block-status error: the job fails at its first run, with no error policy.
                    startErrno = e.Errno;
                    return;
                }
            }
            plan[c] = Sync switch
            {
                "top" => top,
                "bitmap" => Bitmap!.Bits.Status(c * size, bytes) is var (dirty, run) && (dirty || run < bytes),
                _ => true,
            };
            if (plan[c]) planned += bytes;
            else cbw.Skip(c);
        }
        Len = planned;
    }

    /// <summary>Whether some byte of the range is allocated in the node's own layer (filters looked through), as bdrv_is_allocated says.</summary>
    private static bool TopAllocated(BlockNode node, long offset, long length)
    {
        for (long pos = offset; pos < offset + length;)
        {
            var (depth, bytes) = node.AllocationDepthAsync(pos, offset + length - pos).AsTask().GetAwaiter().GetResult();
            if (depth == 1) return true;
            pos += bytes;
        }
        return false;
    }

    /// <inheritdoc/>
    internal override bool Work()
    {
        if (!HasWork) return false;
        if (startErrno != 0)
        {
            Error = Errnos.Strerror(startErrno);
            return true;
        }
        var cbw = Cbw;
        bool mutant = Filter!.Mutation == Engine.EngineMutation.BackupCopiesCurrentData;
        long size = cbw.ClusterSize;
        // Bounded by the cluster count: each pass copies (or finds copied, or skips) one cluster.
        for (; nextCluster < plan.Length; nextCluster++)
        {
            long c = nextCluster;
            if (!plan[c]) continue;
            if (c >= chunkEnd && cbw.ToCopy(c) && !StartChunk(cbw, c)) return false;
            var r = mutant ? new CopyBeforeWriteDriver.CopyResult(cbw.CopyClusterAgainForMutant(c), false)
                : cbw.CopyClusterForJobAsync(c).AsTask().GetAwaiter().GetResult();
            if (r.Errno != 0)
            {
                chunkEnd = c;
                return Failed(r);
            }
            Offset = Math.Min(Len, Offset + Math.Min(size, cbw.Length - c * size));
        }
        return true;
    }

    /// <summary>block_copy_dirty_clusters' rate check before a task: over quota the job sleeps; else the task's bytes are accounted.</summary>
    private bool StartChunk(CopyBeforeWriteDriver cbw, long first)
    {
        long end = first;
        while (end < plan.Length && plan[end] && cbw.ToCopy(end) && (end - first + 1) * cbw.ClusterSize <= ChunkBytesMax) end++;
        chunkEnd = end;
        if (Speed == 0) return true;
        long now = clock.NowNs;
        long wait = limit.Delay(now, 0);
        if (wait > 0)
        {
            SleepUntilNs = now + wait;
            chunkEnd = first;
            return false;
        }
        limit.Delay(now, Math.Min(end * cbw.ClusterSize, cbw.Length) - first * cbw.ClusterSize);
        return true;
    }

    /// <summary>block_job_error_action: the side's policy decides; BLOCK_JOB_ERROR tells clients. Returns whether the job ends.</summary>
    private bool Failed(CopyBeforeWriteDriver.CopyResult r)
    {
        string action = ErrorAction(r.Read ? OnSourceError : OnTargetError, r.Errno);
        Emit("BLOCK_JOB_ERROR", new System.Text.Json.Nodes.JsonObject { ["device"] = Id, ["operation"] = r.Read ? "read" : "write", ["action"] = action });
        switch (action)
        {
            case "report":
                Error = Errnos.Strerror(r.Errno);
                return true;
            case "stop":
                // The pause is the user's to end (job-resume retries the copy); io-status tells why.
                if (!UserPaused)
                {
                    UserPaused = true;
                    Move(Vocabulary.Jobs.JobStatus.Paused);
                }
                IoStatus = r.Errno == Errnos.ENOSPC ? "nospace" : "failed";
                return false;
            default:
                // ignore: the copy is tried again on the next run (QEMU retries at once).
                IgnoredError = true;
                return false;
        }
    }

    /// <summary>QEMU's BlockErrorAction for a policy and errno: enospc and auto stop on ENOSPC and report anything else.</summary>
    public static string ErrorAction(string policy, int errno) => policy switch
    {
        "enospc" or "auto" => errno == Errnos.ENOSPC ? "stop" : "report",
        "stop" or "ignore" => policy,
        _ => "report",
    };

    /// <summary>
    /// backup_cleanup_sync_bitmap: on success (or always) the bitmap becomes its successor (the writes made
    /// during the job); otherwise the successor's bits go back into it; after a failure with always, the
    /// clusters left uncopied are added. The bitmap is no longer busy.
    /// </summary>
    internal void CleanupBitmap(bool succeeded)
    {
        if (Bitmap is not { } b || Filter is null) return;
        int i = b.Node.BitmapList.FindIndex(x => x.Name == b.Name && x.Frozen);
        if (i < 0) return;
        var bm = b.Node.BitmapList[i];
        bool abdicate = (succeeded || b.Mode == "always") && b.Mode != "never";
        if (abdicate)
        {
            b.Bits.Clear();
            b.Bits.Merge(b.Successor);
            // The successor takes the name: it is the newer bitmap.
            b.Node.BitmapList.RemoveAt(i);
            b.Node.BitmapList.Add(bm with { Frozen = false, Stamp = b.SuccessorStamp });
        }
        else
        {
            b.Bits.Merge(b.Successor);
            b.Node.BitmapList[i] = bm with { Frozen = false };
        }
        if (!succeeded && b.Mode == "always")
        {
            var cbw = Cbw;
            for (long c = 0; c < cbw.ClusterCount; c++)
            {
                if (cbw.ToCopy(c)) b.Bits.Mark(c * cbw.ClusterSize, cbw.ClusterSize);
            }
        }
        b.Node.JobBitmaps.Remove(b.Successor);
    }
}

/// <summary>A backup's sync bitmap: where it is, its contents, the anonymous successor recording writes during the job, and the mode.</summary>
internal sealed record SyncBitmap(BlockNode Node, string Name, DirtyBits Bits, string Mode, DirtyBits Successor, long SuccessorStamp, bool Recording);
