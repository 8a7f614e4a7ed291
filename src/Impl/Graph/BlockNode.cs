using Verified.Impl.IO;
using Verified.Vocabulary;

namespace Verified.Impl.Graph;

/// <summary>A dirty bitmap's graph-visible state.</summary>
public sealed record BitmapInfo(string Name, long Granularity, bool Enabled, bool Persistent)
{
    /// <summary>Creation order among all bitmaps (listings show the newest first); kept by enable and disable.</summary>
    public long Stamp { get; init; } = IO.BitmapStamps.Next();

    /// <summary>The bitmap's contents (shared by the copies <c>with</c> makes when it is enabled or disabled).</summary>
    public DirtyBits? Bits { get; init; }

    /// <summary>Loaded from a qcow2 image where it was marked in use (QEMU's inconsistent bitmap): disabled, empty, and refused by every command but remove.</summary>
    public bool Inconsistent { get; init; }

    /// <summary>Loaded from an image the node may not write (QEMU's read-only bitmap): clear, merge into it and remove are refused.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>A backup's sync bitmap while the job lives: busy, and writes go to its successor instead (QEMU's create_successor).</summary>
    public bool Frozen { get; init; }
}

/// <summary>
/// A block driver node: mutable, with its parent and child lists in QEMU's order (newest first),
/// an explicit reference count, cached cumulative parent perms, and the I/O gate used to drain
/// requests while the graph around it changes.
/// </summary>
public sealed partial class BlockNode : IBlockParent
{
    /// <summary>The engine's deliberate bug, if any (see <see cref="Engine.EngineMutation"/>); perm rules consult it.</summary>
    internal Engine.EngineMutation Mutation { get; init; }

    internal BlockNode(string name, string driverName, BlockDriver driver, bool readOnly, bool autoNamed, ValueMap<string> options, long seq)
    {
        Name = name;
        DriverName = driverName;
        Driver = driver;
        ReadOnly = readOnly;
        AutoNamed = autoNamed;
        Options = options;
        Seq = seq;
    }

    /// <summary>The node-name.</summary>
    public string Name { get; }

    /// <summary>The driver's QAPI name.</summary>
    public string DriverName { get; }

    /// <summary>The driver instance (per node; it holds the node's open resources).</summary>
    public BlockDriver Driver { get; }

    /// <summary>Opened read-only.</summary>
    public bool ReadOnly { get; internal set; }

    /// <summary>Whether the monitor holds a reference (blockdev-add'ed).</summary>
    public bool MonitorOwned { get; internal set; }

    /// <summary>A filter a job inserted without a user-given name (QEMU's <c>implicit</c>): it shows its child's file names.</summary>
    public bool Implicit { get; internal set; }

    /// <summary>
    /// QEMU's <c>auto_backing_file</c> once the backing file an image header names was opened implicitly: that
    /// node's file name then. Null: the header's own name counts (file names compare it to the backing's).
    /// </summary>
    public string? AutoBackingFile { get; internal set; }

    /// <summary>Whether the name was generated.</summary>
    public bool AutoNamed { get; }

    /// <summary>Scalar options as given at open (and changed by reopen).</summary>
    public ValueMap<string> Options { get; internal set; }

    /// <summary>The node this one was created inline under (reopen cascades read-only to it).</summary>
    public BlockNode? InheritsFrom { get; internal set; }

    /// <summary>Creation stamp (nodes list oldest first).</summary>
    public long Seq { get; }

    /// <summary>QEMU's reference count: parent edges, the monitor, and internal holders.</summary>
    public int RefCount { get; internal set; }

    /// <summary>Set when the node has been deleted (closed).</summary>
    public bool Deleted { get; internal set; }

    /// <summary>Parent edges, oldest attachment first; QEMU's order is the reverse.</summary>
    internal List<BdrvChild> ParentList { get; } = [];

    /// <summary>Child edges, oldest first; QEMU's order is the reverse.</summary>
    internal List<BdrvChild> ChildList { get; } = [];

    /// <summary>Dirty bitmaps, oldest first.</summary>
    internal List<BitmapInfo> BitmapList { get; } = [];

    /// <summary>Unnamed bitmaps jobs keep on the node (a mirror's dirty bitmap): they record like enabled named ones.</summary>
    internal List<DirtyBits> JobBitmaps { get; } = [];

    /// <summary>Cumulative perm of all parent edges, as of the last refresh of this node.</summary>
    public Perm CumulativePerm { get; internal set; }

    /// <summary>Cumulative shared perm of all parent edges, as of the last refresh of this node.</summary>
    public Perm CumulativeShared { get; internal set; } = Perm.All;

    /// <summary>Mark for graph walks (a walk stamps nodes with its own epoch instead of using a set).</summary>
    internal long WalkEpoch { get; set; }

    /// <summary>Writable: opened read-write (Verified has no inactive nodes).</summary>
    public bool Writable => !ReadOnly;

    /// <summary>The <c>force-share</c> option.</summary>
    public bool ForceShare => Options.GetOr("force-share", "false") == "true";

    /// <summary>Parent edges in QEMU's order (newest first).</summary>
    public IEnumerable<BdrvChild> Parents
    {
        get
        {
            for (int i = ParentList.Count - 1; i >= 0; i--) yield return ParentList[i];
        }
    }

    /// <summary>Child edges in QEMU's order (newest first).</summary>
    public IEnumerable<BdrvChild> Children
    {
        get
        {
            for (int i = ChildList.Count - 1; i >= 0; i--) yield return ChildList[i];
        }
    }

    /// <summary>Bitmaps in QEMU's order (newest first).</summary>
    public IEnumerable<BitmapInfo> Bitmaps => Enumerable.Reverse(BitmapList);

    /// <summary>The child edge named <paramref name="name"/>, or null.</summary>
    public BdrvChild? Child(string name)
    {
        foreach (var c in ChildList)
        {
            if (c.Name == name) return c;
        }
        return null;
    }

    /// <summary>A string option's value, or null.</summary>
    public string? Str(string key) => Options.TryGetValue(key, out var v) ? JsonText.String(v) : null;

    /// <summary>Computes the cumulative perms from the current parent edges.</summary>
    internal (Perm Perm, Perm Shared) ComputeCumulative()
    {
        Perm p = Perm.None, s = Perm.All;
        foreach (var e in ParentList)
        {
            p |= e.Perm;
            s &= e.Shared;
        }
        return (p, s);
    }

    string IBlockParent.Description => $"node '{Name}'";

    string IBlockParent.GraphName => Name;

    bool IBlockParent.StaysAtNode => false;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({DriverName})";
}
