using System.Text;
using Verified.Impl.Engine;
using Verified.Model;
using Verified.Vocabulary;
using ImplGraph = Verified.Impl.Graph;

namespace Verified.Oracle;

/// <summary>
/// The abstraction both engines are compared under: one canonical text per engine state, line by
/// line — every node with its driver, flags, options, bitmaps and reference count; every node's
/// parents and children in QEMU's order with perms; devices, exports, objects, the NBD server, the
/// generated-name counter. Internal stamps (edge ids, sequence numbers) are left out; only the orders
/// they define are kept.
/// </summary>
public static class Canonical
{
    /// <summary>The canonical text of a model state.</summary>
    public static string Of(ModelState s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var g = s.Graph;
        var sb = new StringBuilder();
        var ix = new Index(g);
        foreach (var n in g.NodesInOrder)
        {
            var (inherits, up, down) = ix.Of(n);
            int refcnt = g.RefCount(n.Name);
            NodeLine(sb, n.Name, n.Driver, n.ReadOnly, n.MonitorOwned, n.AutoNamed, n.Options, inherits,
                n.Bitmaps.Select(b => (b.Name, b.Granularity, b.Enabled, b.Persistent)), refcnt);
            EdgeLines(sb, n.Name, "parents", up.Select(e => $"{g.GraphName(e.Parent)}.{e.Name}:{Perms.Short(e.Perm)}/{Perms.Short(e.Shared)}"));
            EdgeLines(sb, n.Name, "children", down.Select(e => $"{e.Name}->{e.Child}:{Roles.Short(e.Role)}"));
        }
        foreach (var d in g.Devices.Values.OrderBy(d => d.Seq))
            sb.AppendLine($"device {d.Id} {d.Model} share-rw={d.ShareRw} ro={d.ReadOnly} root={Root(g.RootEdge(new DeviceParent(d.Id)))}");
        foreach (var x in g.Exports.Values.OrderBy(x => x.Seq))
            sb.AppendLine($"export {x.Id} name={x.ExportName} writable={x.Writable} root={Root(g.RootEdge(new ExportParent(x.Id)))}");
        foreach (var o in g.Objects.Values.OrderBy(o => o.Id, StringComparer.Ordinal)) sb.AppendLine($"object {o.Id} {o.Type}");
        foreach (var j in g.Jobs.Values.OrderByDescending(j => j.Seq))
            sb.AppendLine(JobLine(j.Id, j.Type, j.Status, j.UserPaused, j.Speed, j.AutoFinalize, j.AutoDismiss, j.Filter));
        sb.AppendLine($"nbd-server={g.NbdServerRunning}").Append(CounterLine(s.NameCounter));
        return sb.ToString();
    }

    /// <summary>The canonical text of the implementation's state.</summary>
    public static string Of(BlockEngine e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var sb = new StringBuilder();
        foreach (var n in e.Nodes)
        {
            var inherits = n.InheritsFrom is { Deleted: false } p && e.FindNode(p.Name) == p ? p.Name : null;
            NodeLine(sb, n.Name, n.DriverName, n.ReadOnly, n.MonitorOwned, n.AutoNamed, n.Options, inherits,
                n.Bitmaps.Select(b => (b.Name, b.Granularity, b.Enabled, b.Persistent)), n.RefCount);
            EdgeLines(sb, n.Name, "parents", n.Parents.Select(c => $"{c.Parent.GraphName}.{c.Name}:{Perms.Short(c.Perm)}/{Perms.Short(c.Shared)}"));
            EdgeLines(sb, n.Name, "children", n.Children.Select(c => $"{c.Name}->{c.Node.Name}:{Roles.Short(c.Role)}"));
        }
        foreach (var d in e.Devices)
            sb.AppendLine($"device {d.Id} {d.Model} share-rw={d.ShareRw} ro={d.ReadOnly} root={Root(d.Root)}");
        foreach (var x in e.Exports)
            sb.AppendLine($"export {x.Id} name={x.ExportName} writable={x.Writable} root={Root(x.Root)}");
        foreach (var o in e.Objects) sb.AppendLine($"object {o.Id} {o.Type}");
        foreach (var j in e.Jobs) sb.AppendLine(JobLine(j.Id, j.Type, j.Status, j.UserPaused, j.Speed, j.AutoFinalize, j.AutoDismiss, j.FilterName));
        sb.AppendLine($"nbd-server={e.NbdServerRunning}").Append(CounterLine(e.NameCounter));
        return sb.ToString();
    }

    /// <summary>
    /// True when the two states have the same canonical text, decided field by field without building it
    /// (campaigns ask after every step; the texts are built only to show a difference, and at samples).
    /// Property-checked against the text comparison (<c>CanonicalTests</c>).
    /// </summary>
    public static bool Same(ModelState s, BlockEngine e)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(e);
        var g = s.Graph;
        if (s.NameCounter != e.NameCounter || g.NbdServerRunning != e.NbdServerRunning) return false;
        var implNodes = e.Nodes;
        if (implNodes.Count != g.Nodes.Count) return false;
        var ix = new Index(g);
        int i = 0;
        foreach (var m in g.NodesInOrder)
        {
            var n = implNodes[i++];
            if (m.Name != n.Name || m.Driver != n.DriverName || m.ReadOnly != n.ReadOnly || m.MonitorOwned != n.MonitorOwned
                || m.AutoNamed != n.AutoNamed || g.RefCount(m.Name) != n.RefCount || !m.Options.Equals(n.Options)) return false;
            var (inherits, up, down) = ix.Of(m);
            var implInherits = n.InheritsFrom is { Deleted: false } p && e.FindNode(p.Name) == p ? p.Name : null;
            if (inherits != implInherits) return false;
            if (!m.Bitmaps.Select(b => (b.Name, b.Granularity, b.Enabled, b.Persistent))
                    .SequenceEqual(n.Bitmaps.Select(b => (b.Name, b.Granularity, b.Enabled, b.Persistent)))) return false;
            int k = 0;
            foreach (var c in n.Parents)
            {
                if (k >= up.Count) return false;
                var me = up[k++];
                if (me.Name != c.Name || me.Perm != c.Perm || me.Shared != c.Shared || g.GraphName(me.Parent) != c.Parent.GraphName) return false;
            }
            if (k != up.Count) return false;
            k = 0;
            foreach (var c in n.Children)
            {
                if (k >= down.Count) return false;
                var me = down[k++];
                if (me.Name != c.Name || me.Child != c.Node.Name || me.Role != c.Role) return false;
            }
            if (k != down.Count) return false;
        }
        var devices = e.Devices;
        if (devices.Count != g.Devices.Count) return false;
        i = 0;
        foreach (var d in g.Devices.Values.OrderBy(d => d.Seq))
        {
            var x = devices[i++];
            if (d.Id != x.Id || d.Model != x.Model || d.ShareRw != x.ShareRw || d.ReadOnly != x.ReadOnly
                || !SameRoot(g.RootEdge(new DeviceParent(d.Id)), x.Root)) return false;
        }
        var exports = e.Exports;
        if (exports.Count != g.Exports.Count) return false;
        i = 0;
        foreach (var x in g.Exports.Values.OrderBy(x => x.Seq))
        {
            var y = exports[i++];
            if (x.Id != y.Id || x.ExportName != y.ExportName || x.Writable != y.Writable || !SameRoot(g.RootEdge(new ExportParent(x.Id)), y.Root)) return false;
        }
        var objects = e.Objects;
        if (objects.Count != g.Objects.Count) return false;
        i = 0;
        foreach (var o in g.Objects.Values.OrderBy(o => o.Id, StringComparer.Ordinal))
        {
            var y = objects[i++];
            if (o.Id != y.Id || o.Type != y.Type) return false;
        }
        var jobs = e.Jobs;
        if (jobs.Count != g.Jobs.Count) return false;
        i = 0;
        foreach (var j in g.Jobs.Values.OrderByDescending(j => j.Seq))
        {
            var y = jobs[i++];
            if (JobLine(j.Id, j.Type, j.Status, j.UserPaused, j.Speed, j.AutoFinalize, j.AutoDismiss, j.Filter)
                != JobLine(y.Id, y.Type, y.Status, y.UserPaused, y.Speed, y.AutoFinalize, y.AutoDismiss, y.FilterName)) return false;
        }
        return true;
    }

    private static string JobLine(string id, string type, Vocabulary.Jobs.JobStatus status, bool paused, long speed, bool autoFinalize, bool autoDismiss, string? filter) =>
        $"job {id} {type} {Vocabulary.Jobs.JobTables.Name(status)} user-paused={paused} speed={speed} auto-finalize={autoFinalize} auto-dismiss={autoDismiss} filter={filter ?? "-"}";

    private static bool SameRoot(Edge? m, ImplGraph.BdrvChild? i) =>
        m is null ? i is null : i is not null && m.Child == i.Node.Name && m.Perm == i.Perm && m.Shared == i.Shared;

    /// <summary>What each node's lines need from a model graph: its lists come from the graph (built once per graph value).</summary>
    private sealed class Index(Graph g)
    {
        private Dictionary<long, string>? bySeq;

        /// <summary>
        /// A node's inherits_from (by name; one that points at a deleted node is no link at all, a dangling
        /// pointer in QEMU), its parent edges newest attachment first and its children newest first.
        /// </summary>
        public (string? Inherits, IReadOnlyList<Edge> Parents, IReadOnlyList<Edge> Children) Of(Node n)
        {
            string? inherits = null;
            if (n.InheritsFrom is { } seq)
            {
                bySeq ??= g.Nodes.Values.ToDictionary(x => x.Seq, x => x.Name);
                inherits = bySeq.GetValueOrDefault(seq);
            }
            return (inherits, (IReadOnlyList<Edge>)g.ParentsOf(n.Name), (IReadOnlyList<Edge>)g.ChildrenOf(n.Name));
        }
    }

    private static string Root(Edge? e) => e is null ? "-" : $"{e.Child}:{Perms.Short(e.Perm)}/{Perms.Short(e.Shared)}";

    private static string Root(ImplGraph.BdrvChild? e) => e is null ? "-" : $"{e.Node.Name}:{Perms.Short(e.Perm)}/{Perms.Short(e.Shared)}";

    private static void NodeLine(StringBuilder sb, string name, string driver, bool ro, bool monitor, bool auto, ValueMap<string> options,
        string? inherits, IEnumerable<(string Name, long Granularity, bool Enabled, bool Persistent)> bitmaps, int refcnt)
    {
        sb.Append($"node {name} {driver} ro={ro} monitor={monitor} auto={auto} refcnt={refcnt} inherits={inherits ?? "-"} opts={options}");
        sb.AppendLine($" bitmaps=[{string.Join(",", bitmaps.Select(b => $"{b.Name}/{b.Granularity}/{(b.Enabled ? "on" : "off")}{(b.Persistent ? "/p" : "")}"))}]");
    }

    private static void EdgeLines(StringBuilder sb, string node, string kind, IEnumerable<string> items) =>
        sb.AppendLine($"  {kind} {node}: [{string.Join(", ", items)}]");

    /// <summary>The name-counter line that ends every canonical text.</summary>
    public static string CounterLine(long counter) => $"name-counter={counter}" + Environment.NewLine;

    /// <summary>The text without its name-counter line (which a failed command may advance: QEMU never rolls it back).</summary>
    public static string WithoutCounter(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int i = text.LastIndexOf("name-counter=", StringComparison.Ordinal);
        return i < 0 ? text : text[..i];
    }

    /// <summary>A readable diff of two canonical texts (lines only in one side), empty when equal.</summary>
    public static string Diff(string model, string impl)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(impl);
        if (model == impl) return "";
        var a = model.Split('\n');
        var b = impl.Split('\n');
        var sb = new StringBuilder();
        foreach (var l in a.Except(b)) sb.AppendLine("- model: " + l);
        foreach (var l in b.Except(a)) sb.AppendLine("+ impl:  " + l);
        if (sb.Length == 0) sb.AppendLine("(same lines, different order)\n--- model\n" + model + "--- impl\n" + impl);
        return sb.ToString();
    }
}
