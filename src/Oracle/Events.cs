using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Classifies campaign steps into the events the series is about, so a summary can show that a campaign
/// reached them and how often: a filter inserted under a live device or export in one transaction (and
/// removed the same way), fleecing set up (copy-before-write under a live parent with a snapshot-access
/// view exported), a read of such a view after the source was written (the point-in-time check), and a qcow2
/// node that opened the backing chain its image header names.
/// </summary>
public static class Events
{
    /// <summary>The events step <paramref name="c"/> (taking <paramref name="before"/> to <paramref name="after"/>, answered <paramref name="reply"/>) is an instance of.</summary>
    public static IEnumerable<string> Classify(ModelState before, Command c, ModelState after, Reply reply)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        ArgumentNullException.ThrowIfNull(reply);
        if (!reply.IsOk) yield break;
        foreach (var j in JobCoverage(before, c, after)) yield return j;
        var adds = c is Vocabulary.Transaction tr ? tr.Actions.OfType<BlockdevAdd>() : c is BlockdevAdd one ? [one] : [];
        if (adds.Any(a => a.Options is { Driver: Images.Qcow2, NodeName: { } n } o && o.Child("backing") is null && after.Graph.ChildEdge(n, "backing") is not null))
            yield return "qcow2: backing chain opened from the image header";
        switch (c)
        {
            case Vocabulary.Transaction t when t.Actions.Any(a => a is BlockdevReplace):
                var roots = RootChildren(before.Graph);
                var rootsAfter = RootChildren(after.Graph);
                foreach (var (parent, child) in rootsAfter)
                {
                    if (!roots.TryGetValue(parent, out var old) || old == child) continue;
                    var now = after.Graph.Nodes[child];
                    if (Drivers.IsFilter(now.Driver) && after.Graph.ChildEdge(child, "file")?.Child == old)
                        yield return now.Driver == "copy-before-write" ? "series: copy-before-write inserted under a live parent" : "series: filter inserted under a live parent";
                    else if (before.Graph.Find(old) is { } was && Drivers.IsFilter(was.Driver) && before.Graph.ChildEdge(old, "file")?.Child == child)
                        yield return "series: filter removed under a live parent";
                }
                break;
            case BlockExportAdd e when after.Graph.Find(e.NodeName) is { Driver: "snapshot-access" }:
                yield return "series: fleecing view exported";
                break;
            case IoStep { IsWrite: false } io when after.Graph.Exports.ContainsKey(io.Root)
                && after.Graph.RootEdge(new ExportParent(io.Root)) is { } edge && after.Graph.Nodes[edge.Child].Driver == "snapshot-access"
                && after.Data.Copied.Values.Any(set => !set.IsEmpty):
                yield return "series: point-in-time read after copy-before-write copied";
                break;
        }
    }

    private static Dictionary<Parent, string> RootChildren(Graph g)
    {
        var d = new Dictionary<Parent, string>();
        foreach (var e in g.Edges)
            if (e.Parent is DeviceParent or ExportParent) d[e.Parent] = e.Child;
        return d;
    }

    /// <summary>Job coverage: backups started by sync mode, verbs accepted by the status they found, statuses jobs moved through.</summary>
    private static IEnumerable<string> JobCoverage(ModelState before, Command c, ModelState after)
    {
        switch (c)
        {
            case Vocabulary.Jobs.BlockdevBackup b:
                yield return $"job: backup started, sync={b.Sync}";
                if (b.OnSourceError != Vocabulary.Jobs.BlockdevBackup.OnErrorDefault) yield return $"job: backup started, on-source-error={b.OnSourceError}";
                if (b.OnTargetError != Vocabulary.Jobs.BlockdevBackup.OnErrorDefault) yield return $"job: backup started, on-target-error={b.OnTargetError}";
                break;
            case Vocabulary.Jobs.JobCommand j when before.Graph.Jobs.TryGetValue(j.Id, out var job):
                yield return $"job: {j.Name} accepted in {Vocabulary.Jobs.JobTables.Name(job.Status)}";
                break;
            case JobRunStep:
                foreach (var job in before.Graph.Jobs.Values)
                {
                    var now = after.Graph.Jobs.TryGetValue(job.Id, out var n) ? Vocabulary.Jobs.JobTables.Name(n.Status) : "null";
                    if (now != Vocabulary.Jobs.JobTables.Name(job.Status)) yield return $"job: ran from {Vocabulary.Jobs.JobTables.Name(job.Status)} to {now}";
                    else if (now == "running" && job.Sync != "none" && job.Filter is not null) yield return "job: ran and stays running (an ignored error)";
                }
                break;
        }
    }
}
