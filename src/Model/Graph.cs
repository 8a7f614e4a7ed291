using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>Who holds a child edge: a node, or a non-node ("root") parent.</summary>
public abstract record Parent;

/// <summary>A node parent (QEMU's child_of_bds).</summary>
public sealed record NodeParent(string Node) : Parent;

/// <summary>A device's BlockBackend (child_root), by device id.</summary>
public sealed record DeviceParent(string Id) : Parent;

/// <summary>A block export's BlockBackend, by export id.</summary>
public sealed record ExportParent(string Id) : Parent;

/// <summary>A block job (child_job), by job id; never moved by node replacement.</summary>
public sealed record JobParent(string Id) : Parent;

/// <summary>A dirty bitmap on a node.</summary>
public sealed record Bitmap(string Name, long Granularity, bool Enabled, bool Persistent);

/// <summary>
/// A block driver node. <paramref name="Seq"/> is its creation stamp (QEMU lists nodes oldest first);
/// <paramref name="Options"/> are the scalar options it was opened with (children are edges).
/// </summary>
public sealed record Node(string Name, string Driver, bool ReadOnly, bool MonitorOwned, bool AutoNamed,
    ValueMap<string> Options, ValueList<Bitmap> Bitmaps, long Seq)
{
    /// <summary>
    /// The creation stamp (<see cref="Seq"/>) of the parent this node was created inline under (QEMU's
    /// <c>inherits_from</c>, a pointer: a stamp, unlike a name, never refers to a later node of the same name).
    /// </summary>
    public long? InheritsFrom { get; init; }

    /// <summary>Writable in QEMU's sense (RDWR and not inactive; Verified has no inactive nodes).</summary>
    public bool Writable => !ReadOnly;

    /// <summary>The <c>force-share</c> option: every parent edge then shares everything.</summary>
    public bool ForceShare => Options.GetOr("force-share", "false") == "true";

    /// <summary>A string option's value, or null.</summary>
    public string? Str(string key) => Options.TryGetValue(key, out var v) ? JsonText.String(v) : null;
}

/// <summary>
/// A child edge (QEMU's BdrvChild). <paramref name="Id"/> orders a node parent's children (newest
/// first); <paramref name="AttachSeq"/> orders a child's parents (newest first) and changes whenever
/// the edge is moved to another child, as QEMU re-inserts it at the head of the new child's list.
/// </summary>
public sealed record Edge(long Id, Parent Parent, string Name, string Child, Role Role, Perm Perm, Perm Shared, long AttachSeq);

/// <summary>A guest device: a root parent with its model's perms.</summary>
public sealed record Device(string Id, string Model, bool ShareRw, bool ReadOnly, long Seq)
{
    /// <summary>Devices that are block devices (others are controllers).</summary>
    public bool IsBlock => Model is "virtio-blk-pci" or "scsi-hd";

    /// <summary>The BlockBackend's name in graphs and messages, as QEMU 7.2 gives it.</summary>
    public string BackendName => Model == "virtio-blk-pci" ? $"/machine/peripheral/{Id}/virtio-backend" : Id;
}

/// <summary>A block export (NBD): a root parent.</summary>
public sealed record Export(string Id, string ExportName, bool Writable, string? Description, ValueList<string> Bitmaps, long Seq, long BitmapNodeSeq = 0);

/// <summary>
/// A block job: a root parent whose edges keep fixed perms (see <see cref="BlockJobs"/>). Backup jobs only
/// in the model; <see cref="Filter"/> is the copy-before-write node it inserted, null once dropped.
/// </summary>
public sealed record Job(string Id, string Type, long Seq)
{
    /// <summary>Its status on QEMU's state machine.</summary>
    public Vocabulary.Jobs.JobStatus Status { get; init; } = Vocabulary.Jobs.JobStatus.Created;

    /// <summary>The sync mode.</summary>
    public string Sync { get; init; } = "none";

    /// <summary>Finalizes by itself once pending.</summary>
    public bool AutoFinalize { get; init; } = true;

    /// <summary>Goes by itself once concluded.</summary>
    public bool AutoDismiss { get; init; } = true;

    /// <summary>Paused by the user.</summary>
    public bool UserPaused { get; init; }

    /// <summary>The rate limit reported.</summary>
    public long Speed { get; init; }

    /// <summary>The source's size when the job was created (its filter copies that many bytes), or null if the model did not know it.</summary>
    public long? Length { get; init; }

    /// <summary>Cancelled by the user.</summary>
    public bool Cancelled { get; init; }

    /// <summary>The filter node the job inserted, until it ends.</summary>
    public string? Filter { get; init; }

    /// <summary>What sync=top copies, planned when the job starts (QEMU's backup_run resets the unallocated clusters first).</summary>
    public BlockJobs.Layer Top { get; init; } = BlockJobs.Layer.Full;

    /// <summary>The error policy for a failed read of the source (report, ignore, stop, enospc, auto).</summary>
    public string OnSourceError { get; init; } = Vocabulary.Jobs.BlockdevBackup.OnErrorDefault;

    /// <summary>The error policy for a failed write of the target.</summary>
    public string OnTargetError { get; init; } = Vocabulary.Jobs.BlockdevBackup.OnErrorDefault;
}

/// <summary>A QOM object the block layer uses (throttle-group, iothread).</summary>
public sealed record QomObject(string Id, string Type, ValueMap<string> Props);

/// <summary>
/// The whole block graph: immutable, compared by value. Every operation returns a new graph, so
/// "restore the exact prior state" is keeping the old value.
/// </summary>
public sealed record Graph(
    ValueMap<Node> Nodes,
    ValueList<Edge> Edges,
    ValueMap<Device> Devices,
    ValueMap<Export> Exports,
    ValueMap<Job> Jobs,
    ValueMap<QomObject> Objects,
    bool NbdServerRunning,
    long NextSeq)
{
    /// <summary>Faults armed on host files (<see cref="HostFaults"/>): the environment the graph opens files in.</summary>
    public ValueList<HostFault> Faults { get; init; } = ValueList<HostFault>.Empty;

    /// <summary>The image format each known host file holds (<see cref="Images"/>); files not listed are taken as qcow2 images.</summary>
    public ValueMap<string> ImageFormats { get; init; } = ValueMap<string>.Empty;

    /// <summary>The backing file each known qcow2 host file's header names (<see cref="Images.HeaderBackingOptions"/>); files not listed name none.</summary>
    public ValueMap<HeaderBacking> HeaderBackings { get; init; } = ValueMap<HeaderBacking>.Empty;

    /// <summary>The empty graph.</summary>
    public static readonly Graph Empty = new(ValueMap<Node>.Empty, ValueList<Edge>.Empty, ValueMap<Device>.Empty,
        ValueMap<Export>.Empty, ValueMap<Job>.Empty, ValueMap<QomObject>.Empty, false, 1);

    /// <summary>The node named <paramref name="name"/>, or null.</summary>
    public Node? Find(string name) => Nodes.TryGetValue(name, out var n) ? n : null;

    /// <summary>
    /// The node named <paramref name="name"/> unless it is being deleted: a node whose last reference a
    /// transaction dropped keeps its name until commit, but no later action may use it (QEMU would
    /// let it, and could then commit a node whose children are gone).
    /// </summary>
    public Node? Live(string name) => Find(name) is { } n && RefCount(name) > 0 ? n : null;

    /// <summary>Edges into <paramref name="child"/>, newest attachment first (QEMU's parent list order).</summary>
    public IEnumerable<Edge> ParentsOf(string child) => Derived.Parents.GetValueOrDefault(child) ?? [];

    /// <summary>Edges out of a parent, newest first (QEMU's children list order).</summary>
    public IEnumerable<Edge> ChildrenOf(Parent parent) => Derived.Children.GetValueOrDefault(parent) ?? [];

    /// <summary>Edges out of node <paramref name="node"/>, newest first.</summary>
    public IEnumerable<Edge> ChildrenOf(string node) => ChildrenOf(new NodeParent(node));

    /// <summary>Every node, oldest first (QEMU's order).</summary>
    public IReadOnlyList<Node> NodesInOrder => Derived.Ordered;

    /// <summary>The child edge named <paramref name="name"/> of node <paramref name="node"/>.</summary>
    public Edge? ChildEdge(string node, string name) => ChildrenOf(node).FirstOrDefault(e => e.Name == name);

    /// <summary>The root edge of a device or export, if attached.</summary>
    public Edge? RootEdge(Parent root) => ChildrenOf(root).FirstOrDefault();

    /// <summary>
    /// QEMU's refcount, derived: one per edge into the node, one for the monitor's reference, one per
    /// copy-on-read node whose <c>bottom</c> names it (cor holds a reference on its bottom).
    /// </summary>
    public int RefCount(string node) =>
        (Nodes.TryGetValue(node, out var n) && n.MonitorOwned ? 1 : 0)
        + (Derived.Parents.GetValueOrDefault(node)?.Length ?? 0)
        + Derived.Bottoms.GetValueOrDefault(node);

    /// <summary>
    /// What lookups derive from the fields — parent and child lists in QEMU's orders, nodes oldest first,
    /// copy-on-read bottom references — computed once per graph value: a graph never changes, and refreshes
    /// and <see cref="Live"/> ask for these constantly. Kept beside the record, not in it, so that value
    /// equality stays what the fields say.
    /// </summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Graph, Lookups> Index = new();

    private Lookups Derived => Index.GetValue(this, Lookups.Of);

    private sealed record Lookups(Dictionary<string, Edge[]> Parents, Dictionary<Parent, Edge[]> Children, Node[] Ordered, Dictionary<string, int> Bottoms)
    {
        public static Lookups Of(Graph g)
        {
            var bottoms = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var c in g.Nodes.Values)
                if (c.Driver == "copy-on-read" && c.Str("bottom") is { } b) bottoms[b] = bottoms.GetValueOrDefault(b) + 1;
            return new(
                g.Edges.GroupBy(e => e.Child, StringComparer.Ordinal).ToDictionary(x => x.Key, x => x.OrderByDescending(e => e.AttachSeq).ToArray(), StringComparer.Ordinal),
                g.Edges.GroupBy(e => e.Parent).ToDictionary(x => x.Key, x => x.OrderByDescending(e => e.Id).ToArray()),
                [.. g.Nodes.Values.OrderBy(n => n.Seq)],
                bottoms);
        }
    }

    /// <summary>True if <paramref name="descendant"/> is <paramref name="node"/> or lies below it.</summary>
    public bool Reaches(string node, string descendant)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        stack.Push(node);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (n == descendant) return true;
            if (!seen.Add(n)) continue;
            foreach (var e in ChildrenOf(n)) stack.Push(e.Child);
        }
        return false;
    }

    /// <summary>A copy with <paramref name="node"/> stored under its name.</summary>
    public Graph With(Node node) => this with { Nodes = Nodes.SetItem(node.Name, node) };

    /// <summary>A copy with <paramref name="old"/> replaced by <paramref name="updated"/> (same Id).</summary>
    public Graph Replace(Edge old, Edge updated)
    {
        int i = Edges.Items.IndexOf(old);
        if (i < 0) throw new InvalidOperationException($"edge {old.Id} not in graph");
        return this with { Edges = Edges.SetItem(i, updated) };
    }

    /// <summary>A copy with a fresh sequence number taken.</summary>
    public (Graph Graph, long Seq) TakeSeq() => (this with { NextSeq = NextSeq + 1 }, NextSeq);

    /// <summary>How a parent is described in permission-conflict messages.</summary>
    public string Describe(Parent p) => p switch
    {
        NodeParent np => $"node '{np.Node}'",
        DeviceParent dp => $"block device '{Devices[dp.Id].BackendName}'",
        ExportParent => "an unnamed block device",
        JobParent jp => $"{Jobs[jp.Id].Type} job '{jp.Id}'",
        _ => "another user",
    };

    /// <summary>The name a parent has in x-debug-query-block-graph.</summary>
    public string GraphName(Parent p) => p switch
    {
        NodeParent np => np.Node,
        DeviceParent dp => Devices[dp.Id].BackendName,
        ExportParent ep => ep.Id,
        JobParent jp => jp.Id,
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };
}
