using System.Collections.Immutable;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Model;

/// <summary>
/// Backup jobs (spec/jobs.md): blockdev-backup's prepare, the job verbs, and running jobs to their next
/// status. Statuses move only as QEMU's tables allow (<see cref="JobTables"/>); a job's edges take nothing
/// and share everything, and stay at their node when nodes are replaced.
/// </summary>
public static class BlockJobs
{
    /// <summary>QEMU's op-blocker text for a node a job holds; null when no job holds it.</summary>
    public static QmpError? Blocker(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        return g.ParentsOf(node).FirstOrDefault(e => e.Parent is JobParent) is { Parent: JobParent jp }
            ? Results.Fail($"Node '{node}' is busy: block device is in use by block job: {g.Jobs[jp.Id].Type}") : null;
    }

    /// <summary>
    /// blockdev-backup's prepare in QEMU 7.2's order; <paramref name="length"/> tells node lengths (null:
    /// unknown, and then the size check is skipped). The job is running once the transaction commits.
    /// </summary>
    public static Step Backup(Tx tx, BlockdevBackup b, Func<string, long?> length)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(length);
        var g = tx.Graph;
        if (g.Live(b.Device) is null) return new(tx, Results.Fail($"Cannot find device='{b.Device}' nor node-name='{b.Device}'"));
        if (g.Live(b.Target) is null) return new(tx, Results.Fail($"Cannot find device='{b.Target}' nor node-name='{b.Target}'"));
        if (b.Sync is "incremental" or "bitmap" && b.Bitmap is null) return new(tx, Results.Fail($"must provide a valid bitmap name for '{b.Sync}' sync mode"));
        if (b.Bitmap is not null)
        {
            if (!g.Nodes[b.Device].Bitmaps.Any(x => x.Name == b.Bitmap)) return new(tx, Results.Fail($"Bitmap '{b.Bitmap}' could not be found"));
            if (b.Sync != "incremental") return new(tx, Results.Fail("Bitmap sync mode must be given when providing a bitmap"));
        }
        if (b.Device == b.Target) return new(tx, Results.Fail("Source and target cannot be the same"));
        if ((Blocker(g, b.Device) ?? Blocker(g, b.Target)) is { } busy) return new(tx, busy);
        if (length(b.Device) is { } ls && length(b.Target) is { } lt && ls != lt) return new(tx, Results.Fail("Source and target image have different sizes"));
        var filter = InsertFilter(tx, b);
        if (filter.Error is not null) return filter;
        tx = filter.Tx;
        var cbw = tx.Graph.NodesInOrder[^1].Name;
        var id = b.JobId ?? "";
        if (!Names.IsWellFormed(id)) return new(tx, Results.Fail($"Invalid job ID '{id}'"));
        if (tx.Graph.Jobs.ContainsKey(id)) return new(tx, Results.Fail($"Job ID '{id}' already in use"));
        var (g2, seq) = tx.Graph.TakeSeq();
        var job = new Job(id, "backup", seq)
        {
            Status = JobStatus.Running, Sync = b.Sync, AutoFinalize = b.AutoFinalize, AutoDismiss = b.AutoDismiss, Speed = b.Speed ?? 0, Filter = cbw,
            Length = length(b.Device), OnSourceError = b.OnSourceError, OnTargetError = b.OnTargetError,
            Top = b.Sync == "top" ? TopLayer(tx.Graph, b.Device) : Layer.Full,
        };
        // block_job_create: the main node edge (the filter now has a parent and takes more below), then the speed.
        var r = Refreshed(tx.On(AttachJobEdge(g2 with { Jobs = g2.Jobs.SetItem(id, job) }, id, "main node", cbw)), [cbw]);
        if (r.Error is not null) return new(tx, r.Error);
        if (b.Speed < 0) return new(tx, Results.Fail("Parameter 'speed' expects a non-negative value"));
        r = Refreshed(r.Tx.On(AttachJobEdge(r.Tx.Graph, id, "target", b.Target)), [b.Target]);
        return r.Error is null ? r : new(tx, r.Error);
    }

    /// <summary>A refresh point inside the transaction: the lock bytes it takes stay held until the end (as QEMU keeps them).</summary>
    private static Step Refreshed(Tx tx, IEnumerable<string> nodes)
    {
        var held = tx.HeldLocks();
        var r = Refresh.Nodes(tx.Graph, nodes, null, held);
        return r.Ok ? new(tx.On(r.Get()) with { Held = held.ToImmutableDictionary(StringComparer.Ordinal) }, null) : new(tx, r.Error);
    }

    /// <summary>bdrv_cbw_append: open the filter (QEMU 7.2's permission scheme) over source and target, then move the source's parents onto it.</summary>
    private static Step InsertFilter(Tx tx, BlockdevBackup b)
    {
        var scalars = ValueMap<string>.Empty.SetItem("x-perm-scheme", "\"upstream\"");
        var o = new BlockdevOptions("copy-before-write", b.FilterNodeName, scalars,
            ValueList<ChildOption>.From([new ChildOption("file", new BlockdevRefName(b.Device)), new ChildOption("target", new BlockdevRefName(b.Target))]));
        var opened = Operations.Open(tx, o, null, false, null);
        if (opened.Error is not null) return new(opened.Tx, opened.Error);
        var refreshList = opened.Tx.RefreshList;
        var r = Refreshed(opened.Tx, [opened.Name]);
        if (r.Error is not null) return new(opened.Tx, r.Error with { Desc = "Could not create node: " + r.Error.Desc });
        tx = Operations.ReplaceNode(r.Tx, b.Device, opened.Name);
        r = Refreshed(tx, [opened.Name]);
        return r.Error is null ? new(r.Tx with { RefreshList = refreshList }, null) : new(tx, r.Error with { Desc = "Could not replace node: " + r.Error.Desc });
    }

    private static Graph AttachJobEdge(Graph g, string job, string name, string node)
    {
        var (g2, seq) = g.TakeSeq();
        return g2 with { Edges = g2.Edges.Add(new Edge(seq, new JobParent(job), name, node, Role.None, Perm.None, Perm.All, seq)) };
    }

    /// <summary>A job verb (job-*, block-job-*), with QEMU's lookup errors and checks in order.</summary>
    public static Result<ModelState> Verb(ModelState s, JobCommand c)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(c);
        var g = s.Graph;
        if (!g.Jobs.TryGetValue(c.Id, out var job))
            return c.IsBlockJobCommand ? new QmpError(ErrorClass.DeviceNotActive, $"Block job '{c.Id}' not found") : Results.Fail("Job not found");
        var refused = JobTables.ApplyVerb(job.Id, job.Status, c.Verb);
        switch (c.Verb)
        {
            case JobVerb.Pause:
                if (refused is not null) return refused;
                if (job.UserPaused) return Results.Fail("Job is already paused");
                return With(s, job with { UserPaused = true, Status = Paused(job.Status) });
            case JobVerb.Resume:
                if (!job.UserPaused) return Results.Fail("Can't resume a job that was not paused");
                return refused is not null ? refused : With(s, Resumed(job));
            case JobVerb.SetSpeed:
                if (refused is not null) return refused;
                return c.Speed < 0 ? Results.Fail("Parameter 'speed' expects a non-negative value") : With(s, job with { Speed = c.Speed });
            case JobVerb.Cancel:
                if (refused is not null) return refused;
                job = (job.UserPaused ? Resumed(job) : job) with { Cancelled = true };
                return Finalize(With(s, job), job);
            case JobVerb.Complete:
                return refused ?? Results.Fail($"The active block job '{job.Id}' cannot be completed");
            case JobVerb.Finalize:
                return refused is not null ? refused : Finalize(s, job);
            case JobVerb.Dismiss:
                return refused is not null ? refused : s with { Graph = g with { Jobs = g.Jobs.Remove(job.Id) } };
            default:
                return refused ?? Results.Fail("Job type does not support change");
        }
    }

    private static JobStatus Paused(JobStatus s) => s switch { JobStatus.Running => JobStatus.Paused, JobStatus.Ready => JobStatus.Standby, _ => s };

    private static Job Resumed(Job j) => j with
    {
        UserPaused = false,
        Status = j.Status switch { JobStatus.Paused => JobStatus.Running, JobStatus.Standby => JobStatus.Ready, _ => j.Status },
    };

    private static ModelState With(ModelState s, Job j) => s with { Graph = s.Graph with { Jobs = s.Graph.Jobs.SetItem(j.Id, j) } };

    /// <summary>
    /// Runs every running, unpaused job with work (a sync=full or top backup), oldest first: it copies what
    /// its filter has not, then waits, is pending, and finalizes if it may. A failed copy aborts the job.
    /// </summary>
    public static ModelState Run(ModelState s)
    {
        ArgumentNullException.ThrowIfNull(s);
        foreach (var job in s.Graph.Jobs.Values.OrderBy(j => j.Seq).ToList())
        {
            if (job.Status != JobStatus.Running || job.UserPaused || job.Sync == "none" || job.Filter is null) continue;
            var cbw = s.Graph.Nodes[job.Filter];
            int errno = 0;
            bool read = true;
            bool bytesKnown = Data.Predictable(s, cbw.Name);
            // Where the bytes are unknown (a null-co source without read-zeroes) the copy still meets the
            // host faults in order; the target's file then holds bytes the model does not know.
            var source = s.Graph.ChildEdge(cbw.Name, "file")!.Child;
            var top = job.Top;
            if (top == Layer.Empty)
            {
                // sync=top over a layer that holds nothing (null-co without read-zeroes): nothing to copy.
                s = Finish(s, job, 0);
                continue;
            }
            if (top == Layer.Unknown)
            {
                // Which clusters the layer holds is not modelled: the target's bytes become unknown (the generator
                // makes sync=top backups only of layers the model can tell, so no fault meets such a copy).
                if (s.Graph.ChildEdge(cbw.Name, "target") is { } ut) s = Forget(s, ut.Child);
                s = Finish(s, job, 0);
                continue;
            }
            if (ReadsRefused(s.Graph, source)) errno = ENOTSUP;
            else if (job.Length is { } start && (Smaller(s, source, start) || s.Graph.ChildEdge(cbw.Name, "target") is { } tgt0 && Smaller(s, tgt0.Child, start)))
            {
                // The source or the target shrank under the job (a child replaced): the copy reads or writes past
                // its end and fails, after copying what lay before; the model stops predicting the target's bytes.
                errno = EINVAL;
                bytesKnown = false;
                // The end that is shorter fails first (a cluster is read before it is written).
                read = Smaller(s, source, start) && !(s.Graph.ChildEdge(cbw.Name, "target") is { } t0 && Data.Size(s, t0.Child) < Data.Size(s, source));
            }
            // The copy needs both ends' bytes traced (an earlier job may have left the target's file unknown).
            else if (Data.Length(s, source) is not null && s.Graph.ChildEdge(cbw.Name, "target") is { } tg && Data.Length(s, tg.Child) is not null)
                (s, errno, read) = Data.CopyAll(s, cbw);
            else
            {
                bytesKnown = false;
                // Not traced, the copy still starts at cluster 0: a fault armed on the file it reads or writes first fails it.
                if (job.Length is > 0)
                {
                    errno = FileAtStart(s.Graph, source) is { } rf && HostFaults.Of(s.Graph, rf, "read") is var re and not 0 ? re : 0;
                    if (errno == 0 && s.Graph.ChildEdge(cbw.Name, "target") is { } tf)
                    {
                        read = false;
                        // A snapshot-access node on the way down refuses the write before it reaches any file.
                        errno = WritesRefused(s.Graph, tf.Child) ? ENOTSUP
                            : FileAtStart(s.Graph, tf.Child) is { } wf && HostFaults.Of(s.Graph, wf, "write") is var we and not 0 ? we : 0;
                    }
                }
            }
            if (!bytesKnown && s.Graph.ChildEdge(cbw.Name, "target") is { } t) s = Forget(s, t.Child);
            // The copy starts with cluster 0: over a qcow2 image's file it replaces the header with the source's.
            if (!ReadsRefused(s.Graph, source) && job.Length is > 0 && s.Graph.ChildEdge(cbw.Name, "target") is { } tgt1
                && FileAtStart(s.Graph, tgt1.Child) is { } overwritten && s.Graph.ImageFormats.GetOr(overwritten, Images.Qcow2) == Images.Qcow2)
            {
                bool qcow2Copied = FileAtStart(s.Graph, source) is { } from && s.Graph.ImageFormats.GetOr(from, Images.Qcow2) == Images.Qcow2;
                // The header comes with the backing file name it records, if any.
                var backings = qcow2Copied && s.Graph.HeaderBackings.TryGetValue(FileAtStart(s.Graph, source)!, out var hb)
                    ? s.Graph.HeaderBackings.SetItem(overwritten, hb) : s.Graph.HeaderBackings.Remove(overwritten);
                s = s with { Graph = s.Graph with { ImageFormats = s.Graph.ImageFormats.SetItem(overwritten, qcow2Copied ? Images.Qcow2 : RawFormat), HeaderBackings = backings } };
            }
            s = errno == 0 ? Finish(s, job, 0) : Failed(s, job, errno, read);
        }
        return s;
    }

    /// <summary>
    /// block_job_error_action: the failed side's policy decides. report ends the job; stop pauses it as a user
    /// pause would (resume retries); ignore leaves it running to try again at the next run.
    /// </summary>
    private static ModelState Failed(ModelState s, Job job, int errno, bool read) =>
        ErrorAction(read ? job.OnSourceError : job.OnTargetError, errno) switch
        {
            "stop" => With(s, job with { UserPaused = true, Status = JobStatus.Paused }),
            "ignore" => s,
            _ => Finish(s, job, errno),
        };

    /// <summary>QEMU's action for an error policy and errno: enospc and auto stop on ENOSPC and report anything else.</summary>
    public static string ErrorAction(string policy, int errno) => policy switch
    {
        "enospc" or "auto" => errno == ENOSPC ? "stop" : "report",
        "stop" or "ignore" => policy,
        _ => "report",
    };

    /// <summary>errno of a full disk.</summary>
    private const int ENOSPC = 28;

    /// <summary>job_completed: a failed job (errno, error policy report) aborts; else it waits, is pending, and finalizes if it may.</summary>
    private static ModelState Finish(ModelState s, Job job, int errno)
    {
        if (errno != 0) return Finalize(With(s, job with { Status = JobStatus.Aborting }), job with { Status = JobStatus.Aborting }).Get();
        if (!job.AutoFinalize) return With(s, job with { Status = JobStatus.Pending });
        return Finalize(s, job with { Status = JobStatus.Pending }).Get();
    }

    /// <summary>What a source's own layer holds, as bdrv_is_allocated tells sync=top.</summary>
    public enum Layer
    {
        /// <summary>Every cluster (a protocol node, raw, null-co with read-zeroes): sync=top copies like full.</summary>
        Full,

        /// <summary>No cluster (null-co without read-zeroes).</summary>
        Empty,

        /// <summary>Some clusters, which the model does not follow (a qcow2 image).</summary>
        Unknown,
    }

    /// <summary>The source's own layer below its filters: a format with its own allocation (qcow2) is unknown to the model; null-co holds data only with read-zeroes.</summary>
    public static Layer TopLayer(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        // Block status looks through QEMU's filters only: Verified's own x- test filters answer for themselves (all allocated).
        var n = Data.DownPrimary(g, node).FirstOrDefault(x => !Drivers.IsFilter(x.Driver) || x.Driver.StartsWith("x-", StringComparison.Ordinal));
        return n?.Driver switch
        {
            "qcow2" => Layer.Unknown,
            { } d when d.StartsWith("x-", StringComparison.Ordinal) => Layer.Full,
            "null-co" or "null-aio" => n.Options.GetOr("read-zeroes", "false") == "true" ? Layer.Full : Layer.Empty,
            _ => Layer.Full,
        };
    }

    /// <summary>The format a file gets when a copy puts anything but a qcow2 header at its start.</summary>
    private const string RawFormat = "raw";

    /// <summary>The host file that byte 0 of <paramref name="node"/> lands on (through filters and raw without offset), or null.</summary>
    private static string? FileAtStart(Graph g, string node)
    {
        for (var n = g.Find(node); n is not null;)
        {
            switch (n.Driver)
            {
                case "file":
                    return n.Str("filename");
                case "raw" when n.Options.GetOr("offset", "0") == "0":
                    n = g.Find(g.ChildEdge(n.Name, "file")?.Child ?? "");
                    break;
                case "throttle" or "copy-on-read" or "preallocate" or "blkdebug" or "compress" or "copy-before-write":
                    n = g.Find(g.ChildEdge(n.Name, "file")?.Child ?? g.ChildEdge(n.Name, "image")?.Child ?? "");
                    break;
                default:
                    return null;
            }
        }
        return null;
    }

    /// <summary>errno of a read snapshot-access cannot serve (its file is not copy-before-write).</summary>
    private const int ENOTSUP = 95;

    /// <summary>Whether <paramref name="node"/> is now known to be shorter than <paramref name="length"/> bytes.</summary>
    private static bool Smaller(ModelState s, string node, long length) => Data.Size(s, node) is { } now && now < length;

    /// <summary>errno of a read past a node's end.</summary>
    private const int EINVAL = 22;

    /// <summary>Whether reads of <paramref name="node"/> reach a snapshot-access node over anything but copy-before-write: they fail, so the copy does.</summary>
    private static bool ReadsRefused(Graph g, string node) =>
        Data.DownPrimary(g, node).FirstOrDefault(n => n.Driver == "snapshot-access") is { } sa
        && g.ChildEdge(sa.Name, "file") is { } c && g.Nodes[c.Child].Driver != "copy-before-write";

    /// <summary>Whether writes to <paramref name="node"/> reach a snapshot-access node (which refuses every write).</summary>
    private static bool WritesRefused(Graph g, string node) => Data.DownPrimary(g, node).Any(n => n.Driver == "snapshot-access");

    /// <summary>What the model can no longer predict: the host file under <paramref name="node"/> got bytes it does not know.</summary>
    private static ModelState Forget(ModelState s, string node)
    {
        for (var n = s.Graph.Find(node); n is not null; n = s.Graph.Find(s.Graph.ChildEdge(n.Name, "file")?.Child ?? ""))
        {
            if (n.Driver == "file" && n.Str("filename") is { } f)
            {
                // The bytes become unknown; the file keeps its size (a backup writes within it).
                var opaque = s.Data.Files.TryGetValue(f, out var known) ? s.Data.OpaqueSizes.SetItem(f, known.Size) : s.Data.OpaqueSizes;
                return s with { Data = s.Data with { Files = s.Data.Files.Remove(f), OpaqueSizes = opaque } };
            }
        }
        return s;
    }

    /// <summary><c>job_finalize_single</c>: the job's edges go, then its filter; it concludes, and goes if auto-dismiss.</summary>
    private static Result<ModelState> Finalize(ModelState s, Job job)
    {
        var g = Operations.DetachRoot(s.Graph, new JobParent(job.Id));
        if (job.Filter is { } filter && g.Find(filter) is not null)
        {
            var below = g.ChildEdge(filter, "file")!.Child;
            var tx = Operations.ReplaceNode(Tx.Begin(g, s.NameCounter), filter, below);
            var r = Refresh.Nodes(tx.Graph, [below, filter, .. tx.RefreshList]);
            if (r.Ok) g = Operations.Commit(tx.On(r.Get()));
        }
        var done = job with { Status = JobStatus.Concluded, Filter = null };
        g = job.AutoDismiss ? g with { Jobs = g.Jobs.Remove(job.Id) } : g with { Jobs = g.Jobs.SetItem(job.Id, done) };
        return s with { Graph = g };
    }
}
