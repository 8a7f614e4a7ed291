using System.Collections.Immutable;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// The series' transaction: actions run in order, each changing the graph at once; permissions are
/// refreshed once after each maximal run of graph actions (blockdev-add, blockdev-del,
/// x-blockdev-replace) and once at the end; any failure restores the exact prior graph and reports
/// only the first error. A standalone graph command is a transaction of one action.
/// </summary>
public static class Transaction
{
    /// <summary>The actions that only change the graph and leave the refresh for later.</summary>
    public static bool IsGraphAction(Command c) => c is BlockdevAdd or BlockdevDel or BlockdevReplace;

    /// <summary>The outcome: the graph after commit (or the untouched one), the name counter, the error.</summary>
    public readonly record struct Outcome(Graph Graph, long NameCounter, QmpError? Error);

    /// <summary>
    /// Runs <paramref name="actions"/> as one transaction on <paramref name="g"/>. With
    /// <paramref name="refreshEveryAction"/> it refreshes after every action instead (the "step by step"
    /// policy the series replaces), which researchers can compare with the series' policy.
    /// </summary>
    /// <remarks>
    /// With <paramref name="grouped"/> (completion-mode grouped) the classic actions refuse, as in QEMU 7.2:
    /// only backup actions support it.
    /// </remarks>
    public static Outcome Run(Graph g, long nameCounter, IReadOnlyList<Command> actions, bool refreshEveryAction = false, bool grouped = false,
        Func<string, long?>? lengths = null, Func<long, long, bool>? copied = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(actions);
        var tx = Tx.Begin(g, nameCounter) with { Lengths = lengths ?? (_ => null), Copied = copied ?? ((_, _) => false) };
        foreach (var action in actions)
        {
            if (!tx.RefreshList.IsEmpty && (refreshEveryAction || !IsGraphAction(action)))
            {
                var r = RefreshPending(tx);
                if (r.Error is not null) return new(g, tx.NameCounter, r.Error);
                tx = r.Tx;
            }
            var step = grouped && action is BlockdevSnapshot or BlockdevSnapshotSync or BitmapCommand
                ? new Step(tx, Results.Fail($"Action '{action.Name}' does not support Transaction property completion-mode = grouped"))
                : Actions.Prepare(tx, action);
            if (step.Error is not null) return new(g, step.Tx.NameCounter, step.Error);
            tx = step.Tx;
        }
        var last = RefreshPending(tx);
        if (last.Error is not null) return new(g, last.Tx.NameCounter, last.Error);
        return new(Operations.Commit(last.Tx), last.Tx.NameCounter, null);
    }

    private static Step RefreshPending(Tx tx)
    {
        var held = tx.HeldLocks();
        var r = Refresh.Nodes(tx.Graph, tx.RefreshList, null, held);
        return r.Ok ? new(tx.On(r.Get()) with { RefreshList = [], Held = held.ToImmutableDictionary(StringComparer.Ordinal) }, null) : new(tx, r.Error);
    }
}

/// <summary>One action's prepare outcome; on failure <see cref="Tx"/> still carries the name counter.</summary>
public readonly record struct Step(Tx Tx, QmpError? Error);

/// <summary>The prepare phase of each transaction action.</summary>
public static class Actions
{
    /// <summary>Prepares one action on <paramref name="tx"/>.</summary>
    public static Step Prepare(Tx tx, Command action)
    {
        ArgumentNullException.ThrowIfNull(tx);
        return action switch
        {
            BlockdevAdd a => Add(tx, a.Options),
            BlockdevDel d => Del(tx, d.NodeName),
            BlockdevReplace r => Replace(tx, r),
            BlockdevSnapshot s => Snapshots.External(tx, s.Node, s.Overlay),
            BlockdevSnapshotSync s => Snapshots.ExternalSync(tx, s),
            BitmapCommand b => Bitmaps.Apply(tx, b),
            Vocabulary.Jobs.BlockdevBackup b => BlockJobs.Backup(tx, b, tx.Lengths),
            AbortAction => new(tx, Results.Fail("Transaction aborted using Abort action")),
            _ => throw new ArgumentException($"{action.Name} is not a transaction action", nameof(action)),
        };
    }

    /// <summary>blockdev-add: open the tree without perms, own it, queue it for the refresh.</summary>
    public static Step Add(Tx tx, BlockdevOptions o)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(o);
        if (o.NodeName is null) return new(tx, Results.Fail("'node-name' must be specified for the root node"));
        var opened = Operations.Open(tx, o, null, false, null);
        if (opened.Error is not null) return new(opened.Tx, opened.Error);
        var g = opened.Tx.Graph;
        return new(opened.Tx.On(g.With(g.Nodes[opened.Name] with { MonitorOwned = true })).NeedsRefresh(opened.Name), null);
    }

    /// <summary>blockdev-del: QEMU's refusals in QEMU's order, then drop the monitor's reference transactionally.</summary>
    public static Step Del(Tx tx, string name)
    {
        ArgumentNullException.ThrowIfNull(tx);
        var g = tx.Graph;
        if (g.Live(name) is not { } node) return new(tx, Results.Fail($"Failed to find node with node-name='{name}'"));
        if (g.ParentsOf(name).Any(e => e.Parent is DeviceParent or ExportParent)) return new(tx, Results.Fail($"Node {name} is in use"));
        var blocker = BlockJobs.Blocker(g, name) ?? Blockers.Find(g, name);
        if (blocker is not null) return new(tx, blocker);
        if (!node.MonitorOwned) return new(tx, Results.Fail($"Node {name} is not owned by the monitor"));
        if (g.RefCount(name) > 1) return new(tx, Results.Fail($"Block device {name} is in use"));
        return new(Operations.UnrefTran(tx.On(g.With(node with { MonitorOwned = false })), name), null);
    }

    /// <summary>x-blockdev-replace: find the parent's edge and the new child, refuse cycles, move the edge.</summary>
    public static Step Replace(Tx tx, BlockdevReplace r)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(r);
        var g = tx.Graph;
        Edge? edge;
        switch (r.Parent)
        {
            case ReplaceDriverParent d:
                if (g.Live(d.NodeName) is null) return new(tx, Results.Fail($"Block driver node with node-name '{d.NodeName}' not found"));
                edge = g.ChildEdge(d.NodeName, d.Child);
                if (edge is null) return new(tx, Results.Fail($"Block driver node '{d.NodeName}' doesn't have child named '{d.Child}'"));
                break;
            case ReplaceQdevParent q:
                if (Devices.Resolve(g, q.QdevId) is not { } dev) return new(tx, new QmpError(ErrorClass.DeviceNotFound, $"Device '{q.QdevId}' not found"));
                if (!dev.IsBlock) return new(tx, Results.Fail("Device does not have a block device backend"));
                edge = g.RootEdge(new DeviceParent(dev.Id));
                if (edge is null) return new(tx, Results.Fail($"Device '{q.QdevId}' is empty, nothing to replace"));
                break;
            case ReplaceExportParent x:
                if (!g.Exports.ContainsKey(x.ExportId)) return new(tx, Results.Fail($"Export '{x.ExportId}' not found"));
                edge = g.RootEdge(new ExportParent(x.ExportId));
                if (edge is null) return new(tx, Results.Fail($"Export '{x.ExportId}' is empty, nothing to replace"));
                break;
            default:
                throw new ArgumentException("unknown parent type", nameof(r));
        }
        if (g.Live(r.NewChild) is null) return new(tx, Results.Fail($"Node '{r.NewChild}' not found"));
        // QEMU 7.2 asserts (aborts) on moving an edge to the node it is on; Verified leaves it be.
        if (edge.Child == r.NewChild) return new(tx, null);
        if (Operations.Frozen(g, edge) is { } frozen) return new(tx, frozen);
        if (edge.Parent is NodeParent np && g.Reaches(r.NewChild, np.Node))
            return new(tx, Results.Fail($"Making '{r.NewChild}' a {edge.Name} child of '{np.Node}' would create a cycle"));
        return new(Operations.ReplaceChild(tx, edge, r.NewChild), null);
    }
}

/// <summary>QEMU's op blockers, derived from the graph: a backing file is busy for most operations.</summary>
public static class Blockers
{
    /// <summary>The "busy" error for <paramref name="node"/>, naming its newest backing parent; null if free.</summary>
    public static QmpError? Find(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        var cow = g.ParentsOf(node).FirstOrDefault(e => (e.Role & Role.Cow) != 0 && e.Parent is NodeParent);
        return cow is null ? null
            : Results.Fail($"Node '{node}' is busy: node is used as backing hd of '{((NodeParent)cow.Parent).Node}'");
    }
}
