using System.Text.RegularExpressions;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Recognises, in one step of a random campaign, QEMU's five graph-mod shapes (tests/unit/test-bdrv-graph-mod.c)
/// as generalised to graphs QMP can build. Each recogniser is a pure function of (state before, command,
/// state after, reply); where a shape is defined by a counterfactual ("this would have failed with stale
/// perms / a non-topological order / step-by-step checking") the recogniser evaluates the counterfactual on
/// the model. spec/shapes.md states each definition; the names are QEMU's test names.
/// </summary>
public static partial class Shapes
{
    /// <summary>A refused change whose permission conflict is between two edges of one parent or one subtree.</summary>
    public const string UpdatePermTree = "update-perm-tree";

    /// <summary>A node replacement that keeps an edge lying inside the new node's subtree on the old node.</summary>
    public const string ShouldUpdateChild = "should-update-child";

    /// <summary>An exclusive writer moved off a node whose stale write on a shared child would conflict.</summary>
    public const string ParallelExclusiveWrite = "parallel-exclusive-write";

    /// <summary>Write moved between two live parallel branches over one base; only topological order accepts it.</summary>
    public const string ParallelPermUpdate = "parallel-perm-update";

    /// <summary>A filter inserted under an exclusive writer that step-by-step checking would refuse.</summary>
    public const string AppendGreedyFilter = "append-greedy-filter";

    /// <summary>The five shape names, in QEMU's test order.</summary>
    public static readonly IReadOnlyList<string> All =
        [UpdatePermTree, ShouldUpdateChild, ParallelExclusiveWrite, ParallelPermUpdate, AppendGreedyFilter];

    /// <summary>
    /// The shapes step (<paramref name="before"/>, <paramref name="command"/>) → (<paramref name="after"/>,
    /// <paramref name="reply"/>) is an instance of (none, one, or several), each name at most once.
    /// </summary>
    public static IEnumerable<string> Classify(ModelState before, Command command, ModelState after, Reply reply)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(after);
        ArgumentNullException.ThrowIfNull(reply);
        var found = new List<string>();
        if (IsUpdatePermTree(before.Graph, reply)) found.Add(UpdatePermTree);
        if (!reply.IsOk) return found;
        var (b, a) = (before.Graph, after.Graph);
        if (ReferenceEquals(b.Edges, a.Edges)) return found; // every accepted shape moves an edge or changes its perms; objects, bitmaps and the like do neither
        if (IsShouldUpdateChild(b, command, a)) found.Add(ShouldUpdateChild);
        if (IsParallelExclusiveWrite(b, a)) found.Add(ParallelExclusiveWrite);
        if (IsParallelPermUpdate(b, a)) found.Add(ParallelPermUpdate);
        if (IsAppendGreedyFilter(before, command, a)) found.Add(AppendGreedyFilter);
        return found;
    }

    [GeneratedRegex(@"^Permission conflict on node '([^']*)': permissions '[^']*' are both required by node '([^']*)' \(uses node '[^']*' as '([^']*)' child\) and unshared by node '([^']*)' \(uses node '[^']*' as '([^']*)' child\)\.$")]
    private static partial Regex NodePairConflict();

    /// <summary>
    /// update-perm-tree: the step was refused with a permission conflict on node C between two node-parent
    /// edges (P, x) and (Q, y) of C such that (1) P = Q, or some node T of the graph before reaches both P and
    /// Q (the two edges belong to one subtree); and (2) exactly one of the two edges was already there (same
    /// parent, name and child C) before the step: the step added a second path from that subtree to C.
    /// </summary>
    /// <remarks>
    /// The conflict is read from the reply: it is the model's own text (<see cref="Permissions.ConflictText"/>),
    /// which names both parents and both child names, so nothing has to be re-run. Conflicts with a device or
    /// an export are never of this shape: a root parent has one edge.
    /// </remarks>
    public static bool IsUpdatePermTree(Graph before, Reply reply)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(reply);
        // The prefix test spares the regex on the many refusals of other kinds.
        if (reply.Error is not { } error || !error.Desc.StartsWith("Permission conflict", StringComparison.Ordinal)
            || NodePairConflict().Match(error.Desc) is not { Success: true } m) return false;
        string c = m.Groups[1].Value, p = m.Groups[2].Value, x = m.Groups[3].Value, q = m.Groups[4].Value, y = m.Groups[5].Value;
        bool oneSubtree = p == q || (before.Find(p) is not null && before.Find(q) is not null
            && before.Nodes.Keys.Any(t => t != c && before.Reaches(t, p) && before.Reaches(t, q)));
        bool oldP = before.ChildEdge(p, x)?.Child == c, oldQ = before.ChildEdge(q, y)?.Child == c;
        return oneSubtree && oldP != oldQ;
    }

    /// <summary>
    /// should-update-child: an accepted <c>blockdev-snapshot</c> (alone or in a transaction: QMP's node
    /// replacement, <c>bdrv_append</c>) of node X with overlay N, after which N's backing is X, where (1) some
    /// other edge e into X has its parent P inside N's subtree (P = N or N reaches P) and still points to X
    /// afterwards (redirecting it, as a replace-all would, closes the loop N → … → P → N), and (2) at least one
    /// parent edge X had before the step now points to N (a real insertion, not an append over an unused node).
    /// </summary>
    /// <remarks>e may be older than the step or added earlier in the same transaction (before the snapshot).</remarks>
    public static bool IsShouldUpdateChild(Graph before, Command command, Graph after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(after);
        foreach (var snap in Actions(command).OfType<BlockdevSnapshot>())
        {
            string x = snap.Node, n = snap.Overlay;
            if (after.ChildEdge(n, "backing") is not { } backing || backing.Child != x) continue;
            bool kept = after.ParentsOf(x).Any(e => e.Id != backing.Id && e.Parent is NodeParent p && after.Reaches(n, p.Node));
            var now = ById(after);
            bool moved = before.ParentsOf(x).Any(e => now.TryGetValue(e.Id, out var e1) && e1.Child == n);
            if (kept && moved) return true;
        }
        return false;
    }

    /// <summary>
    /// parallel-exclusive-write: an accepted step in which an exclusive writer edge w (it takes and unshares
    /// write) on node A moved to node B ≠ A, A was left without parents (or deleted), and A's edge s to a node
    /// C held write before, where B = C or B reaches C (A and B are parallel paths onto C), and s, had it kept
    /// its stale perms, would conflict on write with an edge onto C that arrived through B: the step succeeded
    /// only because A's stale perms were dropped in the same refresh as B's new ones were checked.
    /// </summary>
    public static bool IsParallelExclusiveWrite(Graph before, Graph after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        var now = ById(after);
        // Only an exclusive writer that moved can start this shape; most steps move none, so check that first.
        foreach (var w in before.Edges.Where(e => IsExclusiveWriter(e) && now.TryGetValue(e.Id, out var m) && m.Child != e.Child))
        {
            string a = w.Child, b = now[w.Id].Child;
            if (after.Find(a) is not null && after.ParentsOf(a).Any()) continue;
            foreach (var s in before.ChildrenOf(a).Where(s => (s.Perm & Perm.Write) != 0))
            {
                string c = s.Child;
                if (b != c && !after.Reaches(b, c)) continue;
                if (now.TryGetValue(s.Id, out var s1) && (s1.Perm & Perm.Write) != 0) continue;
                bool viaB(Edge t) => b == c ? t.Id == w.Id : t.Parent is NodeParent tp && (tp.Node == b || after.Reaches(b, tp.Node));
                if (after.ParentsOf(c).Any(t => t.Id != s.Id && viaB(t) && ConflictsOnWrite(s, t))) return true;
            }
        }
        return false;
    }

    /// <summary>
    /// parallel-perm-update: an accepted step after which write has moved between two parallel branches over
    /// one base C: edges s (A → C) and t (B → C) exist before and after, A ≠ B and neither reaches the other;
    /// s held write before and not after, t holds write after and did not before; A still has a parent after
    /// (its branch stays in use, unlike parallel-exclusive-write); and s's old perms conflict on write with t's
    /// new ones. That pair is what a non-topological refresh would check C with if it reached C through B's
    /// branch before updating A's (a depth-first order, possible because the branches are parallel): only the
    /// topological order, which refreshes both branches before C, accepts the step.
    /// </summary>
    public static bool IsParallelPermUpdate(Graph before, Graph after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        var now = ById(after);
        // s: a node-parent edge that stayed on its child and lost write; most steps have none.
        foreach (var s0 in before.Edges.Where(e => e.Parent is NodeParent && (e.Perm & Perm.Write) != 0
            && now.TryGetValue(e.Id, out var e1) && e1.Child == e.Child && (e1.Perm & Perm.Write) == 0))
        {
            string c = s0.Child, a = ((NodeParent)s0.Parent).Node;
            if (!after.ParentsOf(a).Any()) continue;
            var then = ById(before);
            foreach (var t1 in after.ParentsOf(c).Where(t => t.Id != s0.Id && t.Parent is NodeParent && (t.Perm & Perm.Write) != 0))
            {
                if (!then.TryGetValue(t1.Id, out var t0) || t0.Child != c || (t0.Perm & Perm.Write) != 0) continue;
                string b = ((NodeParent)t1.Parent).Node;
                if (a == b || after.Reaches(a, b) || after.Reaches(b, a)) continue;
                if (ConflictsOnWrite(s0, t1)) return true;
            }
        }
        return false;
    }

    /// <summary>
    /// append-greedy-filter: an accepted transaction that adds a node F and moves onto F an edge w that was an
    /// exclusive writer on node X before, where F's edge to X is a filtered child; and the same actions under
    /// the step-by-step policy (refresh after every action: F's perms on X checked while w still sits on X)
    /// are refused with a permission conflict on X.
    /// </summary>
    /// <remarks>
    /// A standalone <c>x-blockdev-replace</c> onto an existing filter never qualifies: the filter's perms as a
    /// branch were checked when it was added, so step-by-step and the series agree on it.
    /// </remarks>
    public static bool IsAppendGreedyFilter(ModelState before, Command command, Graph after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(after);
        if (command is not Vocabulary.Transaction t) return false;
        var b = before.Graph;
        foreach (var add in t.Actions.OfType<BlockdevAdd>())
        {
            if (add.Options.NodeName is not { } f || b.Find(f) is not null || after.Find(f) is null) continue;
            foreach (var edge in after.ChildrenOf(f).Where(e => (e.Role & Role.Filtered) != 0))
            {
                string x = edge.Child;
                var then = ById(b);
                bool writerMoved = after.ParentsOf(f).Any(w => then.TryGetValue(w.Id, out var w0) && w0.Child == x && IsExclusiveWriter(w0));
                if (!writerMoved) continue;
                var stepwise = Model.Transaction.Run(b, before.NameCounter, t.Actions, refreshEveryAction: true);
                if (stepwise.Error?.Desc.StartsWith($"Permission conflict on node '{x}'", StringComparison.Ordinal) == true) return true;
            }
        }
        return false;
    }

    /// <summary>Takes write and does not share it.</summary>
    private static bool IsExclusiveWriter(Edge e) => (e.Perm & Perm.Write) != 0 && (e.Shared & Perm.Write) == 0;

    /// <summary>One of the two edges needs write and the other does not share it.</summary>
    private static bool ConflictsOnWrite(Edge s, Edge t) =>
        (t.Perm & Perm.Write & ~s.Shared) != 0 || (s.Perm & Perm.Write & ~t.Shared) != 0;

    private static Dictionary<long, Edge> ById(Graph g) => g.Edges.ToDictionary(e => e.Id);

    /// <summary>The command itself, or a transaction's actions.</summary>
    private static System.Collections.Immutable.ImmutableArray<Command> Actions(Command c) => c is Vocabulary.Transaction t ? t.Actions.Items : [c];
}
