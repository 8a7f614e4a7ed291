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
    /// QEMU's two read-only texts. <paramref name="committed"/> is the graph whose file locks are held
    /// when the refresh starts (the transaction's starting graph); without it no lock is held yet, and the
    /// refresh checks the final perms of every pair of file nodes. Returns the new graph or the first error.
    /// </summary>
    public static Result<Graph> Nodes(Graph g, IEnumerable<string> list, Func<string, bool>? writableBefore = null, Graph? committed = null) =>
        Nodes(g, list, writableBefore, FileLocks.Held(committed));

    /// <summary>
    /// As above, with the lock bytes held given explicitly; refreshed file nodes add theirs to
    /// <paramref name="held"/>, so a transaction refreshing at several points keeps them until it ends.
    /// </summary>
    public static Result<Graph> Nodes(Graph g, IEnumerable<string> list, Func<string, bool>? writableBefore, Dictionary<string, (Perm Perm, Perm Unshared)> held)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(held);
        foreach (var n in TopologicalOrder(g, list))
        {
            var r = Node(g, n, writableBefore, held);
            if (!r.Ok) return r;
            g = r.Get();
        }
        return g;
    }

    /// <summary>Refreshes only the subtree of <paramref name="node"/>, with the locks of <paramref name="committed"/> held.</summary>
    public static Result<Graph> Subtree(Graph g, string node, Graph? committed = null) => Nodes(g, [node], null, committed);

    private static Result<Graph> Node(Graph g, string name, Func<string, bool>? writableBefore, Dictionary<string, (Perm Perm, Perm Unshared)> held)
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
        var lockError = FileLocks.Check(g, node, perm, shared, held);
        if (lockError is not null) return lockError;
        if (node.Driver == "file")
        {
            var old = held.GetValueOrDefault(name);
            held[name] = (old.Perm | perm, old.Unshared | (Perm.All & ~shared));
        }

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
/// in the image file, so two file nodes on one host file conflict like two processes would. While a
/// change is prepared a node holds the union of its old and new bytes (<c>raw_handle_perm_lock</c>).
/// </summary>
public static class FileLocks
{
    /// <summary>The lock bytes each locking file node of <paramref name="committed"/> holds (none without a graph).</summary>
    public static Dictionary<string, (Perm Perm, Perm Unshared)> Held(Graph? committed)
    {
        var held = new Dictionary<string, (Perm, Perm)>(StringComparer.Ordinal);
        if (committed is null) return held;
        foreach (var n in committed.Nodes.Values.Where(Locks))
        {
            var (p, s) = Permissions.Cumulative(committed, n.Name);
            held[n.Name] = (p, Perm.All & ~s);
        }
        return held;
    }

    /// <summary>
    /// The error <c>raw_check_lock_bytes</c> reports for <paramref name="node"/> taking (perm, shared) while
    /// the other locking file nodes on its filename hold <paramref name="held"/>; null if none.
    /// </summary>
    public static QmpError? Check(Graph g, Node node, Perm perm, Perm shared, IReadOnlyDictionary<string, (Perm Perm, Perm Unshared)> held)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(held);
        if (!Locks(node)) return null;
        var filename = node.Str("filename");
        var others = held.Where(kv => kv.Key != node.Name && g.Find(kv.Key) is { } o && Locks(o) && o.Str("filename") == filename)
            .Select(kv => kv.Value).ToList();
        foreach (var bit in Perms.Bits)
        {
            if ((perm & bit) != 0 && others.Any(o => (o.Unshared & bit) != 0))
                return Results.Fail($"Failed to get \"{Perms.DisplayText(bit)}\" lock");
        }
        foreach (var bit in Perms.Bits)
        {
            if ((shared & bit) == 0 && others.Any(o => (o.Perm & bit) != 0))
                return Results.Fail($"Failed to get shared \"{Perms.DisplayText(bit)}\" lock");
        }
        return null;
    }

    /// <summary>The first lock conflict between two file nodes of a settled graph, by their final perms.</summary>
    public static QmpError? CheckAll(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        foreach (var n in g.Nodes.Values.Where(Locks))
        {
            var (p, s) = Permissions.Cumulative(g, n.Name);
            var err = Check(g, n, p, s, Held(g));
            if (err is not null) return err;
        }
        return null;
    }

    private static bool Locks(Node n) => n.Driver == "file" && n.Str("locking") != "off";
}
