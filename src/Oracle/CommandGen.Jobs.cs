using Verified.Model;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Oracle;

/// <summary>
/// Backup jobs and their verbs: a backup between nodes whose length the model knows (mostly of equal
/// length; sometimes a missing node, a bad id or a negative speed), a verb on an existing job (sometimes
/// a missing one), or a run of the jobs to their next status.
/// </summary>
public sealed partial class CommandGen
{
    private static readonly string[] JobIds = ["j0", "j1", "j2"];

    private static readonly string[] SyncModes = ["none", "full", "full", "top", "incremental"];

    private Command JobStep(ModelState s)
    {
        var jobs = s.Graph.Jobs.Keys.ToList();
        if (io && Chance(3) && PointInTime(s) is { } pit) return pit;
        if (jobs.Count == 0 || Chance(5)) return Backup(s);
        var paused = s.Graph.Jobs.Values.Where(j => j.UserPaused).Select(j => j.Id).ToList();
        if (paused.Count > 0 && !Chance(4)) return new JobCommand(Chance(4) ? "block-job-resume" : "job-resume", JobVerb.Resume, One(paused));
        var id = Chance(10) ? "nosuch" : One(jobs);
        return P(11) switch
        {
            // Pause twice as often as the other verbs: most jobs end at their first run, so a pause rarely finds one running.
            0 or 10 => new JobCommand("job-pause", JobVerb.Pause, id),
            1 => new JobCommand(Chance(2) ? "job-resume" : "block-job-resume", JobVerb.Resume, id),
            2 or 9 => new JobCommand(Chance(4) ? "block-job-cancel" : "job-cancel", JobVerb.Cancel, id),
            3 => new JobCommand("block-job-set-speed", JobVerb.SetSpeed, id, Chance(6) ? -1 : P(1 << 20)),
            4 => new JobCommand("job-finalize", JobVerb.Finalize, id),
            5 => new JobCommand("job-dismiss", JobVerb.Dismiss, id),
            6 => new JobCommand("job-complete", JobVerb.Complete, id),
            _ => JobRunStep.Instance,
        };
    }

    /// <summary>
    /// The point-in-time pattern: a full backup of what a device or export sits on, a guest write through
    /// that device or export while the job waits to run, then the run: the target must hold the old data.
    /// </summary>
    private BlockdevBackup? PointInTime(ModelState s)
    {
        var roots = Roots(s);
        if (roots.Count == 0) return null;
        var (id, _, edge) = One(roots);
        if (OverPreallocate(s.Graph, edge.Child)) return null;
        long length = Data.Length(s, edge.Child)!.Value;
        var targets = s.Graph.Nodes.Values.Where(n => n.Name != edge.Child && !n.ReadOnly && n.Driver == "file" && Machine.KnownLength(s, n.Name) == length).ToList();
        if (targets.Count == 0) return null;
        int count = 1 + P(16);
        long sector = P((int)Math.Max(1, Math.Min(HotSectors, length / Data.Sector - count + 1)));
        pending.Enqueue(new IoStep(id, true, sector * Data.Sector, count * Data.Sector, (byte)(1 + P(255))));
        pending.Enqueue(JobRunStep.Instance);
        return new BlockdevBackup(One(JobIds), edge.Child, One(targets).Name, "full", null, null, AutoFinalize: true, AutoDismiss: true, FilterNodeName: null);
    }

    private BlockdevBackup Backup(ModelState s)
    {
        // The model checks sizes only where it knows them: pick nodes it does (or a missing one).
        // Not over preallocate: its length is QEMU's data_end, cached while a parent holds write and resize
        // (even across a child replacement), which the model does not follow.
        var known = s.Graph.Nodes.Keys.Where(n => Machine.KnownLength(s, n) is not null && !OverPreallocate(s.Graph, n)).ToList();
        string source = known.Count > 0 && !Chance(10) ? One(known) : "nosuch";
        var same = known.Where(n => n != source && Machine.KnownLength(s, n) == Machine.KnownLength(s, source)).ToList();
        // A writable target mostly: a read-only one is refused (the filter writes to it).
        if (same.Count > 1 && !Chance(4) && same.Where(n => !s.Graph.Nodes[n].ReadOnly).ToList() is { Count: > 0 } writable) same = writable;
        string target = same.Count > 0 && !Chance(6) ? One(same) : known.Count > 0 && !Chance(10) ? One(known) : "nosuch";
        var sync = One(SyncModes);
        // sync=top only where the model can tell what the source's own layer holds (not a qcow2 image).
        if (sync == "top" && s.Graph.Find(source) is not null && BlockJobs.TopLayer(s.Graph, source) == BlockJobs.Layer.Unknown) sync = "full";
        return new BlockdevBackup(Chance(12) ? "1bad" : One(JobIds), source, target, sync, null, Chance(12) ? -1 : null,
            AutoFinalize: !Chance(4), AutoDismiss: !Chance(4), FilterNodeName: null, OnSourceError: Policy(), OnTargetError: Policy());
    }

    /// <summary>The error policies, the default (report) most often.</summary>
    private static readonly string[] Policies = ["report", "report", "stop", "ignore", "enospc"];

    private string Policy() => One(Policies);

    /// <summary>Whether reads of <paramref name="node"/> pass a preallocate node (through file and image children).</summary>
    private static bool OverPreallocate(Graph g, string node) => Data.DownPrimary(g, node).Any(n => n.Driver == "preallocate");
}
