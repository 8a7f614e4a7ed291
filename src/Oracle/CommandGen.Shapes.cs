using System.Text.Json;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Patterns that lead random generation to QEMU's graph-mod shapes (<see cref="Shapes"/>), which uniform
/// choices seldom line up. Each pattern still draws its names, drivers and targets from the stream, and
/// builds toward its shape over several steps (a missing branch or parent first, then the change), so the
/// change itself may still be refused: that is part of what the campaign tests.
/// </summary>
public sealed partial class CommandGen
{
    /// <summary>A step toward one of the graph-mod shapes, or null when the state offers nothing to build on.</summary>
    /// <remarks>Branch moves get half the share: they need several steps on the same writer to line up.</remarks>
    private Command? ShapeStep(ModelState s) => P(4) switch
    {
        0 => SnapshotInsertion(s),
        1 or 2 => BranchMove(s),
        _ => GreedyInsertion(s),
    };

    /// <summary>
    /// should-update-child: one transaction adds a qcow2 overlay whose subtree already reaches node X (its
    /// file is X, or an inline raw node over X) and snapshots X onto it, so X's parents move to the overlay
    /// while the edge inside the overlay's subtree stays on X. X is drawn mostly from nodes that have a
    /// parent and that nobody writes (a writer would conflict with the overlay's file edge).
    /// </summary>
    private Vocabulary.Transaction? SnapshotInsertion(ModelState s)
    {
        var g = s.Graph;
        if (g.Nodes.Count == 0) return null;
        var quiet = g.Nodes.Keys.Where(n => g.ParentsOf(n).Any() && (Permissions.Cumulative(g, n).Perm & Perm.Write) == 0).ToList();
        // A qcow2 overlay opens only over a node that reads as a qcow2 image: mostly such an X.
        var opens = quiet.Where(n => Images.Qcow2OpenError(g, n) is null && !Images.HeaderReadCopiesUp(g, n)).ToList();
        var x = opens.Count > 0 && !Chance(4) ? One(opens) : quiet.Count > 0 && !Chance(4) ? One(quiet) : One(g.Nodes.Keys.ToList());
        if (Images.HeaderReadCopiesUp(g, x)) return null;
        BlockdevRef file = Chance(2) ? new BlockdevRefName(x)
            : new BlockdevRefInline(new BlockdevOptions("raw", null, ValueMap<string>.Empty, ValueList<ChildOption>.From([new("file", new BlockdevRefName(x))])));
        var overlay = FreshName(s);
        var add = new BlockdevAdd(new BlockdevOptions("qcow2", overlay, ValueMap<string>.Empty, ValueList<ChildOption>.From([new("file", file)])));
        return new Vocabulary.Transaction(ValueList<Command>.From([add, new BlockdevSnapshot(x, overlay)]), "individual");
    }

    /// <summary>
    /// parallel-exclusive-write and parallel-perm-update: a parent (device, export or node) sits on node A,
    /// which has a child edge to C. Steps: add a second branch B over C if there is none; sometimes give A another (idle)
    /// parent, so that A stays in use after the move; then move the parent's edge from A to B.
    /// </summary>
    private Command? BranchMove(ModelState s)
    {
        var g = s.Graph;
        // (parent, edge onto A, C): mostly an exclusive writer (it takes write and unshares it) on a node A that
        // passes its parents' perms down a filtered child to C: only then can the move leave a stale write on C.
        var all = RootEdges(g).Concat(NodeEdges(g))
            .SelectMany(r => g.ChildrenOf(r.Edge.Child).Select(e => (r.Parent, r.Edge, C: e.Child, Filtered: (e.Role & Role.Filtered) != 0)))
            .ToList();
        if (all.Count == 0) return null;
        var writers = all.Where(r => r.Filtered && (r.Edge.Perm & Perm.Write) != 0 && (r.Edge.Shared & Perm.Write) == 0).ToList();
        var pool = writers.Count > 0 && !Chance(4) ? writers : all;
        List<string> Branches((ReplaceParent, Edge Edge, string C, bool) r) =>
            g.ParentsOf(r.C).Select(e => e.Parent).OfType<NodeParent>().Select(p => p.Node)
                .Where(b => b != r.Edge.Child && !g.Reaches(r.Edge.Child, b) && !g.Reaches(b, r.Edge.Child)).Distinct().ToList();
        // Finish what earlier steps started: prefer a writer that already has a parallel branch to move to.
        var ready = pool.Where(r => Branches(r).Count > 0).ToList();
        if (ready.Count == 0 || Chance(6)) return new BlockdevAdd(FilterOver(s, One(pool).C));
        var pick = One(ready);
        var (parent, edge, _, _) = pick;
        // Sometimes give A an idle parent first, so that A's branch stays in use after the move.
        if (g.ParentsOf(edge.Child).Count() == 1 && Chance(2)) return new BlockdevAdd(FilterOver(s, edge.Child));
        var b = One(Branches(pick));
        if (parent is ReplaceQdevParent q && Chance(3)) return new QomSet($"/machine/peripheral/{q.QdevId}", "drive", JsonSerializer.Serialize(b));
        return new BlockdevReplace(parent, b);
    }

    /// <summary>
    /// append-greedy-filter: one transaction inserts, under a device or export on node X, a filter whose own
    /// perms on X unshare write (strict copy-before-write, or blkdebug told to unshare write): as a branch
    /// beside a writer it would be refused, as an inserted filter it is not.
    /// </summary>
    private Vocabulary.Transaction? GreedyInsertion(ModelState s)
    {
        var roots = RootEdges(s.Graph).ToList();
        if (roots.Count == 0) return null;
        var (parent, edge) = One(roots);
        var name = FreshName(s);
        BlockdevOptions filter = Chance(2)
            ? new("copy-before-write", name, ValueMap<string>.Empty,
                ValueList<ChildOption>.From([new("file", new BlockdevRefName(edge.Child)), new("target", Child(s, 1))]))
            : new("blkdebug", name, ValueMap<string>.Empty.SetItem("unshare-child-perms", "[\"write\"]"),
                ValueList<ChildOption>.From([new("image", new BlockdevRefName(edge.Child))]));
        return new Vocabulary.Transaction(ValueList<Command>.From([new BlockdevAdd(filter), new BlockdevReplace(parent, name)]), "individual");
    }

    /// <summary>A pass-through filter of a random kind over <paramref name="node"/>.</summary>
    private BlockdevOptions FilterOver(ModelState s, string node)
    {
        var driver = One(["throttle", "raw", "preallocate", "copy-on-read", "blkdebug"]);
        var scalars = driver == "throttle" ? ValueMap<string>.Empty.SetItem("throttle-group", JsonSerializer.Serialize(One(["tg0", "tg1"]))) : ValueMap<string>.Empty;
        return new BlockdevOptions(driver, FreshName(s), scalars, ValueList<ChildOption>.From([new(driver == "blkdebug" ? "image" : "file", new BlockdevRefName(node))]));
    }

    /// <summary>Every node-parent edge, as an x-blockdev-replace parent (node and child name) with the edge.</summary>
    private static IEnumerable<(ReplaceParent Parent, Edge Edge)> NodeEdges(Graph g) =>
        g.Edges.Where(e => e.Parent is NodeParent).Select(e => ((ReplaceParent)new ReplaceDriverParent(((NodeParent)e.Parent).Node, e.Name), e));

    /// <summary>Every attached device and export, as an x-blockdev-replace parent with its root edge.</summary>
    private static IEnumerable<(ReplaceParent Parent, Edge Edge)> RootEdges(Graph g) =>
        g.Devices.Values.Where(d => d.IsBlock).Select(d => ((ReplaceParent)new ReplaceQdevParent(d.Id), g.RootEdge(new DeviceParent(d.Id))))
            .Concat(g.Exports.Values.Select(x => ((ReplaceParent)new ReplaceExportParent(x.Id), g.RootEdge(new ExportParent(x.Id)))))
            .Where(r => r.Item2 is not null).Select(r => (r.Item1, r.Item2!));
}
