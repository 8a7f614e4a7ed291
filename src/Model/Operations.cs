using System.Collections.Immutable;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>The outcome of opening a node tree: the transaction state, the root's name, or the error.</summary>
public readonly record struct Opened(Tx Tx, string Name, QmpError? Error);

/// <summary>
/// Graph operations without permission update (the series' <c>*_noperm</c> / <c>*_tran</c> helpers): each
/// changes the graph at once and records in the refresh list what must be rechecked; the caller refreshes.
/// </summary>
public static class Operations
{
    /// <summary>The context QEMU gives every error of opening a node's backing child.</summary>
    public const string BackingFailed = "Could not open backing file: ";

    /// <summary>
    /// Opens a node tree from blockdev options (<c>bdrv_open</c> with BDRV_O_NOPERM): a non-protocol
    /// driver's <c>file</c> subtree first, then the node's name, then its other children in order.
    /// </summary>
    /// <remarks>On failure the returned <see cref="Opened.Tx"/> still carries the advanced name counter.</remarks>
    public static Opened Open(Tx tx, BlockdevOptions o, bool? inheritedReadOnly, bool asBacking, long? inheritsFrom) =>
        Open(tx, o, inheritedReadOnly, asBacking, inheritsFrom, ValueList<string>.Empty);

    /// <summary>Longest chain of header-named backing files opened below one node (QEMU 7.2 has none; a loop hangs it).</summary>
    public const int HeaderBackingDepthMax = 64;

    private static Opened Open(Tx tx, BlockdevOptions o, bool? inheritedReadOnly, bool asBacking, long? inheritsFrom, ValueList<string> headerChain)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(o);
        o = o.WithInheritedForceShare();
        bool readOnly = o.ReadOnly ?? (asBacking || (inheritedReadOnly ?? false));
        var opened = new List<(string Key, string Node)>();
        var file = o.Child("file");
        if (!Drivers.IsProtocol(o.Driver) && file is { Ref: not null })
        {
            var r = OpenChild(tx, file, readOnly, parentSeq: null);
            if (r.Error is not null) return r;
            tx = r.Tx;
            opened.Add(("file", r.Name));
        }

        string name;
        if (o.NodeName is null)
        {
            name = Names.Generated(tx.NameCounter);
            tx = tx with { NameCounter = tx.NameCounter + 1 };
        }
        else
        {
            var err = CheckNewName(tx.Graph, o.NodeName);
            if (err is not null) return new(tx, "", err);
            name = o.NodeName;
        }
        var (g, seq) = tx.Graph.TakeSeq();
        var node = new Node(name, o.Driver, readOnly, MonitorOwned: false, AutoNamed: o.NodeName is null, o.Scalars,
            ValueList<Bitmap>.Empty, seq) { InheritsFrom = inheritsFrom };
        tx = tx.On(g.With(node));
        // The file subtree was opened before this node had a name; it inherits from this node all the same.
        if (file?.Ref is BlockdevRefInline && opened.Count == 1)
            tx = tx.On(tx.Graph.With(tx.Graph.Nodes[opened[0].Node] with { InheritsFrom = seq }));

        // The format driver opens (and a qcow2 node reads its header) after its file child, before its backing child.
        if (o.Driver == Images.Qcow2 && opened.Count == 1 && Images.Qcow2OpenError(tx.Graph, opened[0].Node, tx.Copied) is { } headerErr)
            return new(tx, name, headerErr);

        foreach (var c in o.Children)
        {
            if (c.Ref is null) continue; // backing: null
            string child;
            if (opened.FirstOrDefault(x => x.Key == c.Key) is { Node: not null } pre) child = pre.Node;
            else
            {
                var r = OpenChild(tx, c, readOnly, seq);
                // QEMU's bdrv_open_backing_file prepends its context to whatever failed below (references too).
                if (r.Error is not null) return c.Key == "backing" ? r with { Error = r.Error with { Desc = BackingFailed + r.Error.Desc } } : r;
                (tx, child) = (r.Tx, r.Name);
            }
            tx = tx.On(AttachChild(tx.Graph, name, c.Key, child, Drivers.ChildRole(o.Driver, c.Key, o.Scalars)));
        }
        // No backing option at all (not even null): the backing file the image's header names, read-only, inheriting from it.
        if (o.Driver == Images.Qcow2 && o.Child("backing") is null && opened.Count == 1
            && Images.HeaderBackingOptions(tx.Graph, opened[0].Node, tx.Copied) is { } hb)
        {
            var full = hb.Driver == "file" ? hb.StrOption("filename")! : hb.Child("file")!.Ref is BlockdevRefInline f ? f.Options.StrOption("filename")! : "";
            if (headerChain.Contains(full)) return new(tx, name, Results.Fail($"{BackingFailed}Backing file '{full}' creates an infinite loop."));
            if (headerChain.Count >= HeaderBackingDepthMax) return new(tx, name, Results.Fail($"{BackingFailed}Backing chain longer than {HeaderBackingDepthMax} images"));
            if (o.Scalars.TryGetValue("force-share", out var fs)) hb = hb with { Scalars = hb.Scalars.SetItem("force-share", fs) };
            var r = Open(tx, hb, readOnly, asBacking: true, seq, ValueList<string>.From([.. headerChain, full]));
            if (r.Error is not null) return new(r.Tx, name, r.Error with { Desc = BackingFailed + r.Error.Desc });
            tx = r.Tx.On(AttachChild(r.Tx.Graph, name, "backing", r.Name, Drivers.ChildRole(o.Driver, "backing", o.Scalars)));
        }
        var driverErr = DriverOpenCheck(tx.Graph, tx.Graph.Nodes[name]);
        return new(tx, name, driverErr);
    }

    private static Opened OpenChild(Tx tx, ChildOption c, bool parentReadOnly, long? parentSeq)
    {
        switch (c.Ref)
        {
            case BlockdevRefName n:
                return new(tx, n.Name, tx.Graph.Live(n.Name) is null
                    ? Results.Fail($"Cannot find device='{n.Name}' nor node-name='{n.Name}'") : null);
            case BlockdevRefInline i:
                // Inline children inherit read-only; a backing file is read-only unless asked otherwise.
                return Open(tx, i.Options, parentReadOnly, c.Key == "backing", parentSeq);
            default:
                throw new ArgumentException("null child reference", nameof(c));
        }
    }

    /// <summary>QEMU's node-name checks in its order: well-formed, unique, short enough.</summary>
    public static QmpError? CheckNewName(Graph g, string name)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!Names.IsWellFormed(name)) return Results.Fail($"Invalid node-name: '{name}'");
        if (g.Find(name) is not null) return Results.Fail($"Duplicate nodes with node-name='{name}'");
        if (name.Length > Names.NodeNameLengthMax) return Results.Fail("Node name too long");
        return null;
    }

    /// <summary>Checks a driver makes when it opens, after its children are attached.</summary>
    private static QmpError? DriverOpenCheck(Graph g, Node n)
    {
        switch (n.Driver)
        {
            case "file":
                return HostFaults.OpenError(g, n);
            case "throttle":
                var group = n.Str("throttle-group")!;
                return g.Objects.TryGetValue(group, out var o) && o.Type == "throttle-group"
                    ? null : Results.Fail($"Throttle group '{group}' does not exist");
            case "compress":
                // filter-compress needs a driver that takes compressed writes: qcow2, or a filter that
                // passes them on (copy-on-read, throttle), as measured on QEMU 7.2.
                var under = g.Nodes[g.ChildEdge(n.Name, "file")!.Child];
                return under.Driver is "qcow2" or "copy-on-read" or "throttle" ? null : Results.Fail($"Compression is not supported for underlying format: {under.Driver}");
            case "copy-on-read" when n.Str("bottom") is { } bottom:
                if (g.Find(bottom) is not { } b) return Results.Fail($"Bottom node '{bottom}' not found");
                if (Drivers.IsFilter(b.Driver)) return Results.Fail($"Bottom node '{bottom}' is a filter");
                // QEMU 7.2 spins forever freezing a chain that never reaches such a bottom; Verified refuses it.
                return Chain(g, g.ChildEdge(n.Name, "file")?.Child).Contains(bottom) ? null
                    : Results.Fail($"Bottom node '{bottom}' is not in the backing chain of '{n.Name}'");
            default:
                return null;
        }
    }

    /// <summary>The filter-or-COW chain from <paramref name="top"/> down (<c>bdrv_filter_or_cow_child</c> walk).</summary>
    public static List<string> Chain(Graph g, string? top)
    {
        ArgumentNullException.ThrowIfNull(g);
        var chain = new List<string>();
        for (var n = top; n is not null && !chain.Contains(n);
             n = g.ChildrenOf(n).FirstOrDefault(e => (e.Role & (Role.Filtered | Role.Cow)) != 0)?.Child)
            chain.Add(n);
        return chain;
    }

    /// <summary>
    /// The frozen error for changing <paramref name="e"/>: copy-on-read freezes the chain from itself down to
    /// its <c>bottom</c> (<c>bdrv_freeze_backing_chain</c>); null if the edge is free.
    /// </summary>
    public static QmpError? Frozen(Graph g, Edge e)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(e);
        if (e.Parent is not NodeParent np || (e.Role & (Role.Filtered | Role.Cow)) == 0) return null;
        foreach (var cor in g.Nodes.Values.Where(n => n.Driver == "copy-on-read" && n.Str("bottom") is not null))
        {
            var chain = Chain(g, cor.Name);
            int i = chain.IndexOf(np.Node), b = chain.IndexOf(cor.Str("bottom")!);
            if (i >= 0 && b > i && i + 1 < chain.Count && chain[i + 1] == e.Child)
                return Results.Fail($"Cannot change frozen '{e.Name}' link from '{np.Node}' to '{e.Child}'");
        }
        return null;
    }

    /// <summary>
    /// Attaches a new child edge (<c>bdrv_attach_child_noperm</c>): its perms come from the parent's
    /// current cumulative perms, unchecked; it goes to the head of both lists.
    /// </summary>
    public static Graph AttachChild(Graph g, string parent, string childName, string child, Role role)
    {
        ArgumentNullException.ThrowIfNull(g);
        var (g2, seq) = g.TakeSeq();
        var edge = new Edge(seq, new NodeParent(parent), childName, child, role, Perm.None, Perm.All, seq);
        var (cp, cs) = Permissions.Cumulative(g2, parent);
        var (p, s) = Drivers.ChildPerm(g2, g2.Nodes[parent], edge, cp, cs);
        return g2 with { Edges = g2.Edges.Add(edge with { Perm = p, Shared = s }) };
    }

    /// <summary>
    /// Moves an edge to <paramref name="newChild"/> (<c>bdrv_replace_child_tran</c>, the series' form): the
    /// new child is queued for refresh, the edge goes to the head of its parent list, and the old child
    /// is unreferenced transactionally.
    /// </summary>
    public static Tx ReplaceChild(Tx tx, Edge edge, string newChild)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(edge);
        var old = edge.Child;
        var (g, seq) = tx.Graph.TakeSeq();
        tx = tx.On(g.Replace(edge, edge with { Child = newChild, AttachSeq = seq })).NeedsRefresh(newChild);
        return UnrefTran(tx, old);
    }

    /// <summary>
    /// <c>bdrv_replace_node_noperm</c>: every parent edge of <paramref name="from"/> moves to <paramref name="to"/>,
    /// except job edges (they stay at their node) and edges whose parent lies inside <paramref name="to"/>'s subtree.
    /// </summary>
    public static Tx ReplaceNode(Tx tx, string from, string to)
    {
        ArgumentNullException.ThrowIfNull(tx);
        foreach (var e in tx.Graph.ParentsOf(from).ToList())
        {
            if (e.Parent is JobParent) continue;
            if (e.Parent is NodeParent np && tx.Graph.Reaches(to, np.Node)) continue;
            tx = ReplaceChild(tx, tx.Graph.Edges.First(x => x.Id == e.Id), to);
        }
        return tx;
    }

    /// <summary>
    /// <c>bdrv_append</c>: <paramref name="top"/> becomes the backing (or filtered) child of <paramref name="node"/>,
    /// the parents of <paramref name="top"/> move to <paramref name="node"/>, and <paramref name="node"/>'s subtree is
    /// refreshed at once. On failure the returned Tx is the given one (with the name counter).
    /// </summary>
    public static Step Append(Tx tx, string node, string top)
    {
        ArgumentNullException.ThrowIfNull(tx);
        var n = tx.Graph.Nodes[node];
        // Moving a frozen edge (copy-on-read's chain) is refused (bdrv_replace_node_noperm).
        foreach (var e in tx.Graph.ParentsOf(top))
        {
            if (e.Parent is JobParent || e.Parent is NodeParent np && tx.Graph.Reaches(node, np.Node)) continue;
            if (Frozen(tx.Graph, e) is not null) return new(tx, Results.Fail($"Cannot change '{e.Name}' link to '{top}'"));
        }
        var inner = tx.On(AttachChild(tx.Graph, node, "backing", top, Drivers.IsFilter(n.Driver) ? Role.Filtered | Role.Primary : Role.Cow));
        inner = ReplaceNode(inner, top, node);
        var held = tx.HeldLocks();
        var refreshed = Refresh.Nodes(inner.Graph, [node], null, held);
        if (!refreshed.Ok) return new(tx with { NameCounter = inner.NameCounter }, refreshed.Error);
        return new(inner.On(refreshed.Get()) with { RefreshList = tx.RefreshList, Held = held.ToImmutableDictionary(StringComparer.Ordinal) }, null);
    }

    /// <summary>Removes a child edge and unreferences its child transactionally.</summary>
    public static Tx RemoveChild(Tx tx, Edge edge)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(edge);
        var g = tx.Graph with { Edges = ValueList<Edge>.From(tx.Graph.Edges.Where(e => e.Id != edge.Id)) };
        if (edge.Parent is NodeParent np) g = UnsetInheritsFrom(g, np.Node, edge.Child);
        return UnrefTran(tx.On(g), edge.Child);
    }

    /// <summary>
    /// <c>bdrv_unset_inherits_from</c>: once <paramref name="child"/> is no longer a child of <paramref name="root"/>,
    /// it (and any node below it) stops inheriting options from <paramref name="root"/>.
    /// </summary>
    public static Graph UnsetInheritsFrom(Graph g, string root, string child)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.Find(child) is not { } c || g.Find(root) is not { } r) return g;
        if (c.InheritsFrom == r.Seq && !g.ChildrenOf(root).Any(e => e.Child == child)) g = g.With(c with { InheritsFrom = null });
        foreach (var e in g.ChildrenOf(child).ToList()) g = UnsetInheritsFrom(g, root, e.Child);
        return g;
    }

    /// <summary>
    /// <c>bdrv_unref_tran</c> after a reference was dropped: a node still referenced is queued for refresh;
    /// a node at zero whose driver closes independently detaches its children now; any other node at zero
    /// keeps its children until commit deletes it.
    /// </summary>
    public static Tx UnrefTran(Tx tx, string node)
    {
        ArgumentNullException.ThrowIfNull(tx);
        var g = tx.Graph;
        if (g.Find(node) is not { } n) return tx;
        if (g.RefCount(node) > 0) return tx.NeedsRefresh(node);
        tx = tx with { Commits = tx.Commits.Add(new DeleteIfUnreferenced(node)) };
        if (!Drivers.ClosesIndependently(n.Driver)) return tx;
        foreach (var e in g.ChildrenOf(node).ToList()) tx = RemoveChild(tx, e);
        return tx;
    }

    /// <summary>
    /// Attaches a root parent (device, export, job) with fixed perms and refreshes the child's subtree
    /// (<c>bdrv_root_attach_child</c>).
    /// </summary>
    public static Result<Graph> AttachRoot(Graph g, Parent parent, string node, Perm perm, Perm shared)
    {
        ArgumentNullException.ThrowIfNull(g);
        var (g2, seq) = g.TakeSeq();
        g2 = g2 with { Edges = g2.Edges.Add(new Edge(seq, parent, "root", node, Role.Filtered | Role.Primary, perm, shared, seq)) };
        return Refresh.Subtree(g2, node, committed: g);
    }

    /// <summary>
    /// Detaches every edge of a root parent; each old child's subtree is refreshed with errors ignored
    /// (a loosening refresh), and children left unreferenced are deleted.
    /// </summary>
    public static Graph DetachRoot(Graph g, Parent parent)
    {
        ArgumentNullException.ThrowIfNull(g);
        foreach (var e in g.ChildrenOf(parent).ToList()) g = DetachAndDelete(g, e);
        return g;
    }

    /// <summary>Removes one edge outside a transaction (<c>bdrv_root_unref_child</c>).</summary>
    private static Graph DetachAndDelete(Graph g, Edge e)
    {
        var before = g;
        g = g with { Edges = ValueList<Edge>.From(g.Edges.Where(x => x.Id != e.Id)) };
        if (e.Parent is NodeParent np) g = UnsetInheritsFrom(g, np.Node, e.Child);
        var refreshed = Refresh.Subtree(g, e.Child, committed: before);
        if (refreshed.Ok) g = refreshed.Get();
        return g.RefCount(e.Child) == 0 ? Delete(g, e.Child) : g;
    }

    /// <summary>
    /// Deletes an unreferenced node as <c>bdrv_close</c> does: the driver closes first (copy-on-read unfreezes
    /// its chain and drops its reference on <c>bottom</c>, which may delete it), then its children are
    /// detached one by one (newest first).
    /// </summary>
    public static Graph Delete(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.Nodes[node] is { Driver: "copy-on-read" } cor && cor.Str("bottom") is { } bottom && g.Find(bottom) is not null)
        {
            g = g.With(cor with { Options = cor.Options.Remove("bottom") });
            if (g.RefCount(bottom) == 0) g = Delete(g, bottom);
        }
        foreach (var e in g.ChildrenOf(node).ToList()) g = DetachAndDelete(g, e);
        return g with { Nodes = g.Nodes.Remove(node) };
    }

    /// <summary>
    /// Commit (<c>tran_commit</c>): the commit actions newest first, then the clean actions newest first.
    /// A node is deleted only if it is still unreferenced; a read-only reopen that fails is ignored.
    /// </summary>
    public static Graph Commit(Tx tx)
    {
        ArgumentNullException.ThrowIfNull(tx);
        var g = tx.Graph;
        foreach (var f in tx.Commits.Reverse().Concat(tx.Cleans.Reverse()))
        {
            switch (f)
            {
                case ReopenReadOnly r:
                    var reopened = Reopen.SetReadOnly(g, r.Node);
                    if (reopened.Ok) g = reopened.Get();
                    break;
                case DeleteIfUnreferenced d when g.Find(d.Node) is not null && g.RefCount(d.Node) == 0:
                    g = Delete(g, d.Node);
                    break;
            }
        }
        return g;
    }
}
