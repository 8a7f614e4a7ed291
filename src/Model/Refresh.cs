using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// Permission refresh (<c>bdrv_list_refresh_perms</c>): the union of the subtrees of a list of nodes in
/// one topological order (parents before children), then per node: the pairwise check, the read-only
/// check, the driver's check (file locking), and the recomputation of its child edges.
/// </summary>
public static class Refresh
{
    /// <summary>
    /// QEMU's <c>bdrv_topological_dfs</c> over each list element in turn with one shared found-set:
    /// a node is placed before everything below it. Children are visited newest first.
    /// </summary>
    public static IReadOnlyList<string> TopologicalOrder(Graph g, IEnumerable<string> list)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(list);
        var found = new HashSet<string>(StringComparer.Ordinal);
        var postorder = new List<string>();
        foreach (var n in list)
        {
            if (g.Find(n) is not null) Visit(g, n, found, postorder);
        }
        postorder.Reverse(); // each node was "prepended" after its subtree
        return postorder;
    }

    private static void Visit(Graph g, string node, HashSet<string> found, List<string> postorder)
    {
        if (!found.Add(node)) return;
        foreach (var e in g.ChildrenOf(node)) Visit(g, e.Child, found, postorder);
        postorder.Add(node);
    }

    /// <summary>
    /// Refreshes the subtrees of <paramref name="list"/> on graph <paramref name="g"/>. Nodes are read-only
    /// checked against their current flag; <paramref name="writableBefore"/> (for reopen) picks between
    /// QEMU's two read-only texts. Returns the graph with recomputed edges, or the first error.
    /// </summary>
    public static Result<Graph> Nodes(Graph g, IEnumerable<string> list, Func<string, bool>? writableBefore = null)
    {
        ArgumentNullException.ThrowIfNull(g);
        foreach (var n in TopologicalOrder(g, list))
        {
            var r = Node(g, n, writableBefore);
            if (!r.Ok) return r;
            g = r.Get();
        }
        return g;
    }

    /// <summary>Refreshes only the subtree of <paramref name="node"/>.</summary>
    public static Result<Graph> Subtree(Graph g, string node) => Nodes(g, [node]);

    private static Result<Graph> Node(Graph g, string name, Func<string, bool>? writableBefore)
    {
        var conflict = Permissions.Conflict(g, name);
        if (conflict is not null) return conflict;

        var node = g.Nodes[name];
        var (perm, shared) = Permissions.Cumulative(g, name);
        if ((perm & (Perm.Write | Perm.WriteUnchanged)) != 0 && !node.Writable)
        {
            bool wasWritable = writableBefore?.Invoke(name) ?? false;
            return Results.Fail(wasWritable ? $"Read-only block node '{name}' cannot support read-write users" : "Block node is read-only");
        }
        var lockError = FileLocks.Check(g, node, perm, shared);
        if (lockError is not null) return lockError;

        foreach (var e in g.ChildrenOf(name).ToList())
        {
            var (p, s) = Drivers.ChildPerm(g, node, e, perm, shared);
            if (p != e.Perm || s != e.Shared) g = g.Replace(e, e with { Perm = p, Shared = s });
        }
        return g;
    }
}

/// <summary>
/// The file driver's permission hook: QEMU locks one byte per permission and per unshared permission
/// in the image file, so two file nodes on one host file conflict like two processes would.
/// </summary>
public static class FileLocks
{
    /// <summary>
    /// The error <c>raw_check_lock_bytes</c> reports for <paramref name="node"/> taking (perm, shared),
    /// tested against every other locking file node on the same filename; null if none. QEMU skips the
    /// test when perms only narrow; in a graph without lock conflicts (invariant I10) that skip changes
    /// no outcome, so the model always tests.
    /// </summary>
    public static QmpError? Check(Graph g, Node node, Perm perm, Perm shared)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(node);
        if (node.Driver != "file" || node.Str("locking") == "off") return null;
        var filename = node.Str("filename");
        var others = g.Nodes.Values.Where(o => o.Name != node.Name && o.Driver == "file" && o.Str("locking") != "off"
            && o.Str("filename") == filename).Select(o => Permissions.Cumulative(g, o.Name)).ToList();
        foreach (var bit in Perms.Bits)
        {
            if ((perm & bit) != 0 && others.Any(o => (o.Shared & bit) == 0))
                return Results.Fail($"Failed to get \"{Perms.DisplayText(bit)}\" lock");
        }
        foreach (var bit in Perms.Bits)
        {
            if ((shared & bit) == 0 && others.Any(o => (o.Perm & bit) != 0))
                return Results.Fail($"Failed to get shared \"{Perms.DisplayText(bit)}\" lock");
        }
        return null;
    }
}
