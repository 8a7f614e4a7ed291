using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Impl.Jobs;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Impl.Engine;

/// <summary>
/// Block jobs: blockdev-backup (a command and a transaction action), the job verbs, their queries, and
/// running jobs. Jobs advance only when <see cref="RunJobs"/> is called — by the QMP daemon's background
/// runner, or by a test or the oracle — so every run is reproducible.
/// </summary>
public sealed partial class BlockEngine
{
    private readonly Dictionary<string, BlockJob> jobs = new(StringComparer.Ordinal);
    private readonly List<JobEvent> jobEvents = [];

    /// <summary>Every job, newest first (QEMU's job list order).</summary>
    public IReadOnlyList<BlockJob> Jobs
    {
        get
        {
            lock (graphLock) return [.. jobs.Values.OrderByDescending(j => j.Seq)];
        }
    }

    /// <summary>The job events sent since the last call, oldest first; the caller delivers them.</summary>
    public IReadOnlyList<JobEvent> TakeJobEvents()
    {
        lock (graphLock)
        {
            var list = jobEvents.ToList();
            jobEvents.Clear();
            return list;
        }
    }

    /// <summary>Whether some job would advance if <see cref="RunJobs"/> were called.</summary>
    public bool HasRunnableJobs
    {
        get
        {
            lock (graphLock) return jobs.Values.Any(Runnable);
        }
    }

    private bool Runnable(BlockJob j) =>
        j.CompletionPending || (j.Status == JobStatus.Running && !j.UserPaused && j.HasWork && !(j is BackupJob b && b.Sleeping(Services.Clock.NowNs)));

    /// <summary>
    /// How long until a job that sleeps for its rate limit may copy again (nanoseconds on the engine's clock),
    /// or null when none sleeps. The daemon waits this long and runs jobs again; a test advances its clock.
    /// </summary>
    public long? JobWakeDelayNs
    {
        get
        {
            lock (graphLock)
            {
                long now = Services.Clock.NowNs;
                var sleeping = jobs.Values.OfType<BackupJob>().Where(b => b.Status == JobStatus.Running && !b.UserPaused && b.Sleeping(now)).ToList();
                return sleeping.Count == 0 ? null : sleeping.Min(b => b.SleepUntilNs) - now;
            }
        }
    }

    /// <summary>
    /// Runs every runnable job, oldest first, to its next state: its work done (or failed), it moves on as
    /// QEMU's job_completed does (waiting, pending, and with auto-finalize on to concluded, with
    /// auto-dismiss on to null). Returns the number of jobs that moved.
    /// </summary>
    public int RunJobs()
    {
        lock (graphLock)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            int moved = 0;
            foreach (var job in jobs.Values.OrderBy(j => j.Seq).ToList())
            {
                if (job.CompletionPending)
                {
                    job.CompletionPending = false;
                    moved++;
                    Completed(job);
                    continue;
                }
                if (!Runnable(job)) continue;
                var (status, offset) = (job.Status, job.Offset);
                if (!job.Work())
                {
                    // Work stopped short (a rate limit's sleep, an error that stopped the job): it moved if anything changed,
                    // or if it ignored an error and wants to retry (the daemon's runner bounds the retries per kick).
                    if (job.Status != status || job.Offset != offset || job is BackupJob { IgnoredError: true }) moved++;
                    if (job is BackupJob b) b.IgnoredError = false;
                    continue;
                }
                moved++;
                if (job is MirrorJob { Error: null } m) Ready(m);
                else Completed(job);
            }
            return moved;
        }
    }

    /// <summary><c>job_transition_to_ready</c>: the mirror has caught up; it waits for complete or cancel.</summary>
    private static void Ready(MirrorJob m)
    {
        m.ReachedReady = true;
        m.Move(JobStatus.Ready);
        m.Emit("BLOCK_JOB_READY", new JsonObject { ["device"] = m.Id, ["len"] = m.Len, ["offset"] = m.Offset, ["speed"] = m.Speed, ["type"] = m.Type });
    }

    /// <summary><c>job_completed</c>: a failed job aborts; a successful one waits, then is pending, then finalizes if it may.</summary>
    private void Completed(BlockJob job)
    {
        if (job.Error is not null || job.Cancelled)
        {
            job.Move(JobStatus.Aborting);
            FinalizeJob(job);
            return;
        }
        job.Move(JobStatus.Waiting);
        job.Move(JobStatus.Pending);
        if (job.AutoFinalize) FinalizeJob(job);
        else job.Emit("BLOCK_JOB_PENDING", new JsonObject { ["type"] = job.Type, ["id"] = job.Id });
    }

    /// <summary><c>job_finalize_single</c>: clean up (edges and filter go), send the end event, conclude, dismiss if automatic.</summary>
    private void FinalizeJob(BlockJob job)
    {
        if (job.Cancelled && job.Status != JobStatus.Aborting) job.Move(JobStatus.Aborting);
        // backup_commit / backup_abort: the sync bitmap's fate, while the filter still knows what is left to copy.
        if (job is BackupJob bj) bj.CleanupBitmap(succeeded: job.Error is null && !job.Cancelled);
        CleanJob(job);
        if (job.IsBlockJob) job.Emit(job.Cancelled ? "BLOCK_JOB_CANCELLED" : "BLOCK_JOB_COMPLETED", job.EndInfo());
        job.Move(JobStatus.Concluded);
        if (job.AutoDismiss) DismissJob(job);
    }

    private void DismissJob(BlockJob job)
    {
        job.Move(JobStatus.Null);
        jobs.Remove(job.Id);
    }

    /// <summary>
    /// What a job leaves when it ends (backup_clean, mirror_exit_common): a mirror's BlockBackend on the target
    /// goes first, then on a completed mirror the target replaces the source (pivot), then the job's edges
    /// go (each node refreshed, loosening), then its filter is dropped: its parents move to what it filtered.
    /// </summary>
    private void CleanJob(BlockJob job)
    {
        if (job is CreateJob cj) CleanCreate(cj);
        if (job is MirrorJob m)
        {
            // mirror_run's last pass, with I/O drained: what guest writes dirtied since the first copy.
            bool pivot = m.ShouldComplete && !m.Cancelled && m.Error is null;
            if (pivot && m.CopyDirty() is { } copyErr) (m.Error, pivot) = (copyErr, false);
            if (m.Dirty is { } dirty)
            {
                m.Source.JobBitmaps.Remove(dirty);
                m.Dirty = null;
            }
            if (m.TargetParent is { } bb)
            {
                DetachRoot(bb);
                m.TargetParent = null;
            }
            if (pivot) Pivot(m);
        }
        foreach (var e in job.Edges.ToList()) DetachAndRelease(e);
        job.Edges.Clear();
        if (job.Filter is not { } filter) return;
        job.Filter = null;
        if (filter.Deleted) return;
        var below = (filter.Child("file") ?? filter.Child("backing"))!.Node;
        MoveParents(filter, below);
        if (!filter.Deleted && filter.RefCount == 0) Delete(filter);
    }

    /// <summary>The mirror's pivot (after its last copy): every parent of the source but the job's moves to the target.</summary>
    private void Pivot(MirrorJob m)
    {
        foreach (var e in m.Edges.ToList()) DetachAndRelease(e);
        m.Edges.Clear();
        MoveParents(m.Source, m.Target);
    }

    /// <summary><c>bdrv_replace_node</c> outside a transaction, for a change that only loosens or keeps perms.</summary>
    private void MoveParents(BlockNode from, BlockNode to)
    {
        var tran = new UndoLog(Services.Mutation);
        var refresh = new List<BlockNode>();
        ReplaceNode(tran, from, to, refresh);
        var err = Rules.Refresher.Refresh([to, from, .. Enumerable.Reverse(refresh)], tran);
        // A filter's parents are fine on what it filtered (it asked for no less); a pivot's were checked by the job's perms.
        System.Diagnostics.Debug.Assert(err is null, $"moving the parents of {from.Name} to {to.Name} failed: {err}");
        if (err is null) tran.Commit();
        else tran.Abort();
    }

    /// <summary>
    /// A drained section as running jobs see it: QEMU 7.2 pauses every running job whose nodes are drained
    /// (all of them for <c>bdrv_drain_all</c>, <paramref name="below"/> and what lies above it otherwise)
    /// and resumes it when the section ends, which clients see as a pause and a resume.
    /// </summary>
    private void DrainBlip(BlockNode? below)
    {
        foreach (var job in jobs.Values.OrderBy(j => j.Seq))
        {
            // Drains pause jobs through their nodes (child_job); a create job has none.
            if (!job.IsBlockJob || job.UserPaused || job.Status is not (JobStatus.Running or JobStatus.Ready)) continue;
            if (below is not null && !job.Edges.Exists(e => Reaches(e.Node, below))) continue;
            var status = job.Status;
            job.Move(status == JobStatus.Ready ? JobStatus.Standby : JobStatus.Paused);
            job.Move(status);
        }
    }

    /// <summary>qmp_transaction's <c>bdrv_drain_all</c> before any action, as jobs see it; never fails.</summary>
    private QmpError? DrainAll()
    {
        DrainBlip(null);
        return null;
    }

    /// <summary>A job command (verbs on an existing job); QEMU's lookup errors, then its checks in order.</summary>
    private QmpError? JobVerbCommand(JobCommand c)
    {
        if (!jobs.TryGetValue(c.Id, out var job) || (c.IsBlockJobCommand && !job.IsBlockJob))
            return c.IsBlockJobCommand ? new QmpError(ErrorClass.DeviceNotActive, $"Block job '{c.Id}' not found") : QmpError.Generic("Job not found");
        switch (c.Verb)
        {
            case JobVerb.Pause:
                if (job.Refusal(JobVerb.Pause) is { } np) return np;
                if (job.UserPaused) return QmpError.Generic("Job is already paused");
                job.UserPaused = true;
                if (job.Status == JobStatus.Running) job.Move(JobStatus.Paused);
                else if (job.Status == JobStatus.Ready) job.Move(JobStatus.Standby);
                return null;
            case JobVerb.Resume:
                if (!job.UserPaused) return QmpError.Generic("Can't resume a job that was not paused");
                if (job.Refusal(JobVerb.Resume) is { } nr) return nr;
                Resume(job);
                if (job is MirrorJob { ShouldComplete: true, Status: JobStatus.Ready } rm) rm.CompletionPending = true;
                return null;
            case JobVerb.SetSpeed:
                if (job.Refusal(JobVerb.SetSpeed) is { } ns) return ns;
                if (c.Speed < 0) return QmpError.Generic("Parameter 'speed' expects a non-negative value");
                if (job is BackupJob sb) sb.SetSpeed(c.Speed);
                else job.Speed = c.Speed;
                return null;
            case JobVerb.Cancel:
                if (job.Refusal(JobVerb.Cancel) is { } nc) return nc;
                if (job.UserPaused) Resume(job);
                if (job is MirrorJob { Status: JobStatus.Ready } soft && c.IsBlockJobCommand && !c.Force)
                {
                    // mirror_cancel: a soft cancel of a ready mirror ends it as completed, without the pivot.
                    soft.ShouldComplete = false;
                    soft.CompletionPending = true;
                    return null;
                }
                job.Cancelled = true;
                job.Error = "Operation canceled";
                // A backup waiting to be cancelled ends within the command (as measured on QEMU 7.2); a mirror's
                // coroutine ends in a bottom half after the reply.
                if (job is MirrorJob { Status: JobStatus.Running or JobStatus.Ready or JobStatus.Standby } cancelled) cancelled.CompletionPending = true;
                else FinalizeJob(job);
                return null;
            case JobVerb.Complete:
                // Only a ready job takes complete, and only a mirror becomes ready.
                if (job.Refusal(JobVerb.Complete) is { } ncomp) return ncomp;
                if (job is not MirrorJob cm) return QmpError.Generic($"The active block job '{job.Id}' cannot be completed");
                cm.ShouldComplete = true;
                // A mirror in standby completes once resumed.
                if (cm.Status == JobStatus.Ready) cm.CompletionPending = true;
                return null;
            case JobVerb.Finalize:
                if (job.Refusal(JobVerb.Finalize) is { } nf) return nf;
                FinalizeJob(job);
                return null;
            case JobVerb.Dismiss:
                if (job.Refusal(JobVerb.Dismiss) is { } nd) return nd;
                DismissJob(job);
                return null;
            default:
                return job.Refusal(c.Verb) ?? QmpError.Generic("Job type does not support change");
        }
    }

    private static void Resume(BlockJob job)
    {
        // block_job_user_resume: the io-status an error left is reset.
        job.IoStatus = "ok";
        job.UserPaused = false;
        if (job.Status == JobStatus.Paused) job.Move(JobStatus.Running);
        else if (job.Status == JobStatus.Standby) job.Move(JobStatus.Ready);
    }

    /// <summary>
    /// blockdev-backup's prepare, in QEMU 7.2's order (blockdev_backup_prepare, do_backup_common,
    /// backup_job_create, block_job_create): lookups, bitmap checks, same node, op blockers, sizes, the
    /// filter inserted above the source (parents move onto it unless a cycle would form), the job and
    /// its edges. The job starts when the transaction commits; an abort removes it and the filter.
    /// </summary>
    private QmpError? Backup(UndoLog tran, BlockdevBackup b)
    {
        if (!Live(b.Device, out var source)) return QmpError.Generic($"Cannot find device='{b.Device}' nor node-name='{b.Device}'");
        if (!Live(b.Target, out var target)) return QmpError.Generic($"Cannot find device='{b.Target}' nor node-name='{b.Target}'");
        // blockdev_backup_prepare drains the source until the transaction's clean phase.
        DrainBlip(source);
        if (BackupBitmapArgs(b, source) is { } bad) return bad;
        // do_backup_common's desugaring: incremental is bitmap with on-success.
        var (sync, mode) = b.Sync == "incremental" ? ("bitmap", "on-success") : (b.Sync, b.BitmapMode);
        if (source == target) return QmpError.Generic("Source and target cannot be the same");
        if ((JobBlocker(source) ?? JobBlocker(target)) is { } busy) return busy;
        // backup_job_create: a bitmap the job will write (any mode but never) must be writable (BDRV_BITMAP_DEFAULT:
        // a read-only bitmap of a read-only image is refused); then it gets its successor (and is busy), before the size check.
        if (b.Bitmap is not null && mode != "never"
            && BitmapCheck(source, source.BitmapList.Find(x => x.Name == b.Bitmap)!, readOnlyOk: false, inconsistentOk: false) is { } readOnly)
            return readOnly;
        var syncBitmap = b.Bitmap is null ? null : FreezeSyncBitmap(tran, source, b.Bitmap, mode!);
        if (source.Length != target.Length) return QmpError.Generic("Source and target image have different sizes");
        var filter = InsertBackupFilter(tran, source, target, b.FilterNodeName);
        if (filter.Error is not null) return filter.Error;
        var id = b.JobId ?? "";
        if (!Names.IsWellFormed(id)) return QmpError.Generic($"Invalid job ID '{id}'");
        if (jobs.ContainsKey(id)) return QmpError.Generic($"Job ID '{id}' already in use");
        var job = new BackupJob(id, NextSeq(), b.AutoFinalize, b.AutoDismiss, Math.Max(0, b.Speed ?? 0), sync, Services.Clock, jobEvents.Add)
        {
            Len = source.Length, OnSourceError = b.OnSourceError, OnTargetError = b.OnTargetError, Bitmap = syncBitmap,
        };
        jobs.Add(id, job);
        job.Move(JobStatus.Created);
        tran.Add(abort: () =>
        {
            if (job.Status == JobStatus.Null) return; // failed early (below)
            // job_cancel_sync on a job that never started: it aborts, concludes and goes.
            job.Cancelled = true;
            job.Move(JobStatus.Aborting);
            job.Move(JobStatus.Concluded);
            job.Move(JobStatus.Null);
            jobs.Remove(id);
        });
        // block_job_create: the main node edge (refreshing the filter, which now has a parent and so takes
        // more below), then the speed; a failure of either ends the created job at once (job_early_fail).
        AttachJobEdge(tran, job, "main node", filter.Node!);
        var early = Rules.Refresher.Refresh([filter.Node!], tran)
            ?? (b.Speed < 0 ? QmpError.Generic("Parameter 'speed' expects a non-negative value") : null);
        if (early is not null)
        {
            DismissJob(job);
            return early;
        }
        job.Filter = filter.Node;
        AttachJobEdge(tran, job, "target", target);
        if (Rules.Refresher.Refresh([target], tran) is { } perr) return perr;
        // The job starts at commit; the transaction's drained section then ends, which QEMU 7.2 shows as a pause and a resume.
        tran.Add(abort: null, commit: () =>
        {
            job.Move(JobStatus.Running);
            job.Start();
            job.Move(JobStatus.Paused);
            job.Move(JobStatus.Running);
        });
        return null;
    }

    /// <summary>do_backup_common's checks of the bitmap arguments, in QEMU 7.2's order.</summary>
    private QmpError? BackupBitmapArgs(BlockdevBackup b, BlockNode source)
    {
        if (b.Sync is "incremental" or "bitmap" && b.Bitmap is null) return QmpError.Generic($"must provide a valid bitmap name for '{b.Sync}' sync mode");
        if (b.Sync == "incremental" && b.BitmapMode is not (null or "on-success"))
            return QmpError.Generic("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
        var mode = b.Sync == "incremental" ? "on-success" : b.BitmapMode;
        if (b.Bitmap is null) return mode is null ? null : QmpError.Generic("Cannot specify bitmap sync mode without a bitmap");
        if (!source.BitmapList.Exists(x => x.Name == b.Bitmap)) return QmpError.Generic($"Bitmap '{b.Bitmap}' could not be found");
        if (mode is null) return QmpError.Generic("Bitmap sync mode must be given when providing a bitmap");
        // do_backup_common: bdrv_dirty_bitmap_check with BDRV_BITMAP_ALLOW_RO (busy, then inconsistent).
        if (BitmapCheck(source, source.BitmapList.Find(x => x.Name == b.Bitmap)!, readOnlyOk: true, inconsistentOk: false) is { } unusable) return unusable;
        if (b.Sync == "none") return QmpError.Generic("sync mode 'none' does not produce meaningful bitmap outputs");
        if (mode == "never" && b.Sync != "bitmap")
            return QmpError.Generic($"Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '{b.Sync}'");
        return null;
    }

    /// <summary>
    /// bdrv_dirty_bitmap_create_successor: the sync bitmap stops recording and is busy; an anonymous successor
    /// (recording as the bitmap did) takes the writes made while the job lives. Undone on abort (reclaim).
    /// </summary>
    private static SyncBitmap FreezeSyncBitmap(UndoLog tran, BlockNode source, string name, string mode)
    {
        int i = source.BitmapList.FindIndex(x => x.Name == name);
        var bm = source.BitmapList[i];
        var bits = bm.Bits ?? new DirtyBits(bm.Granularity, source.Length);
        var successor = new DirtyBits(bm.Granularity, source.Length);
        source.BitmapList[i] = bm with { Frozen = true, Bits = bits };
        if (bm.Enabled) source.JobBitmaps.Add(successor);
        tran.Add(abort: () =>
        {
            int k = source.BitmapList.FindIndex(x => x.Name == name);
            bits.Merge(successor);
            source.BitmapList[k] = source.BitmapList[k] with { Frozen = false };
            source.JobBitmaps.Remove(successor);
        });
        return new SyncBitmap(source, name, bits, mode, successor, IO.BitmapStamps.Next(), bm.Enabled);
    }

    /// <summary>
    /// blockdev-mirror in QEMU 7.2's order (qmp_blockdev_mirror, blockdev_mirror_common, mirror_start,
    /// mirror_start_job): the source must be a root node, then the target, op blockers, the sync mode, not
    /// into itself; the mirror_top filter is appended above the source; then the job (id checks, speed),
    /// its BlockBackend on the target (a conflict here ends the created job at once), its edges, and it runs.
    /// </summary>
    private QmpError? Mirror(BlockdevMirror c)
    {
        if (!Live(c.Device, out var source)) return QmpError.Generic($"Cannot find device='{c.Device}' nor node-name='{c.Device}'");
        if (source.Parents.Any(e => e.Parent is not RootParent)) return QmpError.Generic("Need a root block node");
        if (!Live(c.Target, out var target)) return QmpError.Generic($"Cannot find device='{c.Target}' nor node-name='{c.Target}'");
        if ((JobBlocker(source) ?? JobBlocker(target)) is { } busy) return busy;
        if (c.Sync is "incremental" or "bitmap") return QmpError.Generic($"Sync mode '{c.Sync}' not supported");
        if (source == target) return QmpError.Generic("Can't mirror node into itself");
        var tran = new UndoLog(Services.Mutation);
        var err = MirrorPrepare(tran, c, source, target);
        if (err is not null)
        {
            tran.Abort();
            return err;
        }
        tran.Commit();
        // job_start enters the job's coroutine at once: with I/O that does not wait (as on null-co) it runs
        // to ready before the reply; a failure ends the job after the reply.
        var job = jobs[c.JobId ?? ""];
        if (job.Work())
        {
            if (job.Error is null) Ready((MirrorJob)job);
            else job.CompletionPending = true;
        }
        return null;
    }

    private QmpError? MirrorPrepare(UndoLog tran, BlockdevMirror c, BlockNode source, BlockNode target)
    {
        var topOptions = new BlockdevOptions("mirror_top", c.FilterNodeName, ValueMap<string>.Empty, ValueList<ChildOption>.Empty);
        var (top, err) = Open(tran, topOptions, null, false);
        if (err is not null) return err;
        // Without a filter-node-name the filter is implicit: it shows its child's file names (QEMU's bs->implicit).
        top!.Implicit = c.FilterNodeName is null;
        err = Append(tran, top!, source);
        if (err is not null) return err;
        var id = c.JobId ?? "";
        if (!Names.IsWellFormed(id)) return QmpError.Generic($"Invalid job ID '{id}'");
        if (jobs.ContainsKey(id)) return QmpError.Generic($"Job ID '{id}' already in use");
        var job = new MirrorJob(id, NextSeq(), c.AutoFinalize, c.AutoDismiss, c.Speed ?? 0, c.Sync == "top" && top!.Child("backing")!.Node.Child("backing") is null ? "full" : c.Sync,
            source, target, jobEvents.Add) { Filter = top };
        jobs.Add(id, job);
        job.Move(JobStatus.Created);
        // mirror_start_job's dirty bitmap on the source: it records guest writes for as long as the job lives.
        var dirty = new DirtyBits(MirrorJob.DirtyGranularity, source.Length);
        (job.Dirty, job.DirtyStamp) = (dirty, IO.BitmapStamps.Next());
        source.JobBitmaps.Add(dirty);
        tran.Add(abort: () => source.JobBitmaps.Remove(dirty));
        AttachJobEdge(tran, job, "main node", top!, Perm.ConsistentRead, Perm.ConsistentRead | Perm.Write | Perm.WriteUnchanged);
        err = Rules.Refresher.Refresh([top!], tran);
        if (err is null && c.Speed < 0) err = QmpError.Generic("Parameter 'speed' expects a non-negative value");
        if (err is null)
        {
            var bb = new MirrorTargetParent(NextSeq(), Io);
            AttachRootEdge(tran, bb, target, bb.Wants.Perm, bb.Wants.Shared);
            err = Rules.Refresher.Refresh([target], tran);
            job.TargetParent = bb;
        }
        if (err is not null)
        {
            // job_early_fail: the created job goes straight to null; the filter goes with the transaction.
            job.Edges.Clear();
            DismissJob(job);
            return err;
        }
        AttachJobEdge(tran, job, "source", source, Perm.None, Perm.ConsistentRead | Perm.Write | Perm.WriteUnchanged);
        AttachJobEdge(tran, job, "target", target);
        err = Rules.Refresher.Refresh([source, target], tran);
        System.Diagnostics.Debug.Assert(err is null, "edges taking nothing cannot conflict");
        tran.Add(abort: () => jobs.Remove(id), commit: () => job.Move(JobStatus.Running));
        return err;
    }

    /// <summary>bdrv_cbw_append: open the filter over the source and target, then move the source's parents onto it.</summary>
    private (BlockNode? Node, QmpError? Error) InsertBackupFilter(UndoLog tran, BlockNode source, BlockNode target, string? nodeName)
    {
        var spec = new JsonObject
        {
            ["driver"] = "copy-before-write", ["file"] = source.Name, ["target"] = target.Name,
            // QEMU 7.2's filter: no restriction on the source until it has parents (DECISIONS.md 2).
            ["x-perm-scheme"] = "upstream",
        };
        if (nodeName is not null) spec["node-name"] = nodeName;
        var (opts, perr) = BlockdevSchema.Parse(spec);
        if (perr is not null) return (null, perr);
        var (node, err) = Open(tran, opts!, null, false);
        err ??= Rules.Refresher.Refresh([node!], tran);
        if (err is not null) return (null, err with { Desc = "Could not create node: " + err.Desc });
        ReplaceNode(tran, source, node!, []);
        err = Rules.Refresher.Refresh([node!], tran);
        return err is null ? (node, null) : (null, err with { Desc = "Could not replace node: " + err.Desc });
    }

    private BdrvChild AttachJobEdge(UndoLog tran, BlockJob job, string name, BlockNode node, Perm perm = Perm.None, Perm shared = Perm.All)
    {
        // block_job_add_bdrv: fixed perms; the caller refreshes the node.
        var edge = new BdrvChild(NextSeq(), job, name, node, Role.None) { Perm = perm, Shared = shared };
        node.ParentList.Add(edge);
        node.RefCount++;
        job.Edges.Insert(0, edge);
        tran.Add(abort: () =>
        {
            node.ParentList.Remove(edge);
            node.RefCount--;
            job.Edges.Remove(edge);
        });
        return edge;
    }

    /// <summary>A job's op blocker on a node it holds: QEMU's text for every blocked operation.</summary>
    private static QmpError? JobBlocker(BlockNode n)
    {
        foreach (var e in n.Parents)
        {
            if (e.Parent is BlockJob j) return QmpError.Generic($"Node '{n.Name}' is busy: block device is in use by block job: {j.Type}");
        }
        return null;
    }

    /// <summary>The mirror jobs' BlockBackends on their targets (listed with the other backends).</summary>
    private IEnumerable<RootParent> JobBackends() =>
        jobs.Values.OfType<MirrorJob>().Select(m => m.TargetParent).Concat<RootParent?>(jobs.Values.OfType<CreateJob>().Select(c => c.Backend)).OfType<RootParent>();

    private JsonArray JobQuery(string command) => command == "query-jobs"
        ? new JsonArray([.. jobs.Values.OrderByDescending(j => j.Seq).Select(j => (JsonNode)j.JobInfo())])
        : new JsonArray([.. jobs.Values.Where(j => j.IsBlockJob).OrderByDescending(j => j.Seq).Select(j => (JsonNode)j.BlockJobInfo())]);
}
