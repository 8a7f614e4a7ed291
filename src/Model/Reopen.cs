using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// <c>blockdev-reopen</c>: every listed node is reopened with its new options at once; only read-only
/// (and a few other generic options) and the <c>file</c> / <c>backing</c> children may change. Inline
/// children that inherit read-only follow their parent. All changes first, one refresh, all or nothing.
/// </summary>
public static class Reopen
{
    /// <summary>Options a reopen may change; any other difference is refused.</summary>
    private static readonly HashSet<string> Changeable = new(StringComparer.Ordinal) { "read-only", "auto-read-only", "detect-zeroes", "discard" };

    /// <summary>Runs a blockdev-reopen on <paramref name="g"/>.</summary>
    public static Result<Graph> Run(Graph g, IReadOnlyList<BlockdevOptions> list, long nameCounter)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(list);
        var before = g;
        var tx = Tx.Begin(g, nameCounter);
        var newOptions = new List<(string Node, ValueMap<string> Options)>();
        foreach (var o in list)
        {
            if (o.NodeName is not { } name) return Results.Fail("node-name not specified");
            if (tx.Graph.Find(name) is not { } node) return Results.Fail($"Failed to find node with node-name='{name}'");
            // bdrv_reopen_prepare's order: a driver without reopen support, backing, file, then every other option.
            if (!Drivers.Reopenable(node.Driver))
                return Results.Fail($"Block format '{node.Driver}' used by node '{name}' does not support reopening files");
            var r = ChangeChildren(tx, node, o);
            if (!r.Ok) return r.Error!;
            var err = CheckOptions(r.Get().Graph, node, o);
            if (err is not null) return err;
            tx = SetReadOnlyFlags(r.Get(), name, o.ReadOnly ?? false);
            newOptions.Add((name, o.Scalars));
        }
        var refreshed = Refresh.Nodes(tx.Graph, tx.RefreshList, n => before.Find(n)?.Writable ?? true, before);
        if (!refreshed.Ok) return refreshed.Error!;
        var done = Operations.Commit(tx.On(refreshed.Get()));
        foreach (var (n, opts) in newOptions)
        {
            if (done.Find(n) is { } node) done = done.With(node with { Options = opts });
        }
        return done;
    }

    /// <summary>
    /// Reopens one node read-only (with its inheriting children), as an external snapshot does with the
    /// old top at commit. Fails, changing nothing, when a parent still needs to write.
    /// </summary>
    public static Result<Graph> SetReadOnly(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.Find(node) is not { ReadOnly: false }) return g;
        var tx = SetReadOnlyFlags(Tx.Begin(g, 0), node, true);
        return Refresh.Nodes(tx.Graph, tx.RefreshList, n => g.Find(n)?.Writable ?? true, g);
    }

    private static Tx SetReadOnlyFlags(Tx tx, string node, bool readOnly)
    {
        var n = tx.Graph.Nodes[node];
        tx = tx.On(tx.Graph.With(n with { ReadOnly = readOnly })).NeedsRefresh(node);
        foreach (var e in tx.Graph.ChildrenOf(node).ToList())
        {
            var c = tx.Graph.Nodes[e.Child];
            if (c.InheritsFrom == n.Seq && !c.Options.ContainsKey("read-only") && (e.Role & Role.Cow) == 0)
                tx = SetReadOnlyFlags(tx, c.Name, readOnly);
        }
        return tx;
    }

    private static QmpError? CheckOptions(Graph g, Node node, BlockdevOptions o)
    {
        // Children other than file and backing may only name the node they already have.
        foreach (var f in BlockdevSchema.Get(node.Driver)!.ChildFields.Where(f => f.Name is not "file" and not "backing"))
        {
            if (o.Child(f.Name)?.Ref is not BlockdevRefName n || g.ChildEdge(node.Name, f.Name)?.Child != n.Name)
                return Results.Fail($"Cannot change the option '{f.Name}'");
        }
        if (o.Driver != node.Driver) return Results.Fail("Cannot change the option 'driver'");
        foreach (var key in node.Options.Keys.Union(o.Scalars.Keys).Order(StringComparer.Ordinal))
        {
            if (Changeable.Contains(key)) continue;
            if (node.Options.GetOr(key, "") != o.Scalars.GetOr(key, "")) return Results.Fail($"Cannot change the option '{key}'");
        }
        return null;
    }

    /// <summary>
    /// The <c>file</c> and <c>backing</c> changes of one entry (<c>bdrv_set_file_or_backing_noperm</c>): the old
    /// edge is removed and a new one attached (so it becomes the newest child); then the node and its old
    /// children are queued for the refresh as QEMU queues them (node, old backing, old file).
    /// </summary>
    private static Result<Tx> ChangeChildren(Tx tx, Node node, BlockdevOptions o)
    {
        var schema = BlockdevSchema.Get(node.Driver)!;
        var old = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var field in schema.ChildFields.Where(f => f.Name is "file" or "backing").OrderBy(f => f.Name == "file"))
        {
            var current = tx.Graph.ChildEdge(node.Name, field.Name);
            var given = o.Child(field.Name);
            if (given is null)
            {
                // A missing 'file' is refused by the schema already; a missing 'backing' must not hide one.
                if (current is not null) return Results.Fail($"{field.Name} is missing for '{node.Name}'");
                continue;
            }
            string? target;
            switch (given.Ref)
            {
                case null:
                    target = null;
                    break;
                case BlockdevRefName n:
                    if (tx.Graph.Live(n.Name) is null) return Results.Fail($"Cannot find device='' nor node-name='{n.Name}'");
                    if (tx.Graph.Reaches(n.Name, node.Name))
                        return Results.Fail($"Making '{n.Name}' a {field.Name} child of '{node.Name}' would create a cycle");
                    target = n.Name;
                    break;
                default:
                    return Results.Fail($"Cannot change the option '{field.Name}'");
            }
            if (current?.Child == target) continue;
            if (current is null && Drivers.IsFilter(node.Driver))
                return Results.Fail($"'{node.Name}' is a {node.Driver} filter node that does not support a {field.Name} child");
            if (current is not null && Operations.Frozen(tx.Graph, current) is { } frozen) return frozen;
            if (current is null && field.Name != "backing") return Results.Fail("Cannot set file child to format node without file child");
            var role = field.Name == "backing" ? Role.Cow : current!.Role;
            if (current is not null)
            {
                old[field.Name] = current.Child;
                tx = Operations.RemoveChild(tx, current);
            }
            if (target is not null) tx = tx.On(Operations.AttachChild(tx.Graph, node.Name, field.Name, target, role));
        }
        tx = tx.NeedsRefresh(node.Name);
        foreach (var f in new[] { "backing", "file" })
        {
            if (old.TryGetValue(f, out var o2) && tx.Graph.Find(o2) is not null) tx = tx.NeedsRefresh(o2);
        }
        return tx;
    }
}
