using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// Each driver's graph rules: the role of each child, whether it is a filter, whether it closes
/// independently of its children, and its child-permission function (QEMU's <c>bdrv_child_perm</c>).
/// </summary>
public static class Drivers
{
    /// <summary>Drivers that are filters (<c>drv-&gt;is_filter</c>).</summary>
    public static bool IsFilter(string driver) =>
        driver is "throttle" or "copy-on-read" or "compress" or "preallocate" or "blkdebug" or "copy-before-write"
            or "x-pass-through" or "x-exclusive-writer";

    /// <summary>
    /// Protocol drivers open their children themselves; every other driver has its <c>file</c> child opened
    /// before its own node-name is assigned (<c>bdrv_open_inherit</c>).
    /// </summary>
    public static bool IsProtocol(string driver) => driver is "file" or "null-co" or "null-aio" or "blkdebug";

    /// <summary>
    /// Whether a node whose refcount drops to zero inside a transaction detaches its children at once
    /// (no close hook, or copy-before-write's <c>independent_close</c>) rather than at commit.
    /// </summary>
    public static bool ClosesIndependently(string driver) => driver is "copy-before-write" or "compress" or "raw" or "snapshot-access";

    /// <summary>Drivers with a reopen handler (measured on QEMU 7.2: copy-on-read, snapshot-access, copy-before-write and compress have none).</summary>
    public static bool Reopenable(string driver) => driver is not ("copy-on-read" or "snapshot-access" or "copy-before-write" or "compress");

    /// <summary>Drivers that accept a <c>backing</c> child.</summary>
    public static bool SupportsBacking(string driver) => driver is "qcow2" or "x-no-perm";

    /// <summary>The role of child <paramref name="childName"/> of a <paramref name="driver"/> node opened with <paramref name="options"/>.</summary>
    public static Role ChildRole(string driver, string childName, ValueMap<string> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return (driver, childName) switch
        {
            ("qcow2", "file") => Role.Image,
            ("qcow2", "backing") => Role.Cow,
            // Without offset or size raw behaves like a filter; with either it does not.
            ("raw", "file") => (options.GetOr("offset", "0") != "0" || options.ContainsKey("size")) ? Role.Data | Role.Primary : Role.Filtered | Role.Primary,
            ("copy-before-write", "target") => Role.Data,
            ("snapshot-access", "file") => Role.Data | Role.Primary,
            ("blkdebug", "image") => Role.Filtered | Role.Primary,
            (_, "file") when IsFilter(driver) => Role.Filtered | Role.Primary,
            // A child attached under an unexpected name (x-blockdev-replace has no role check) keeps the role it had.
            _ => throw new ArgumentOutOfRangeException(nameof(childName), $"{driver} has no child '{childName}'"),
        };
    }

    /// <summary>
    /// The perm and shared perm that <paramref name="parent"/> takes on its child edge <paramref name="edge"/>
    /// given its cumulative parent perms; then the child's <c>force-share</c> widens shared to ALL.
    /// </summary>
    public static (Perm Perm, Perm Shared) ChildPerm(Graph g, Node parent, Edge edge, Perm perm, Perm shared)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(edge);
        var (p, s) = DriverRule(g, parent, edge, perm, shared);
        if (g.Find(edge.Child) is { ForceShare: true }) s = Perm.All;
        return (p, s);
    }

    private static (Perm, Perm) DriverRule(Graph g, Node parent, Edge edge, Perm perm, Perm shared)
    {
        var (p, s) = Permissions.Default(edge.Role, parent.Writable, perm, shared);
        switch (parent.Driver)
        {
            case "raw":
                // Default rules may add WRITE/RESIZE; raw needs them only when its parents do.
                p = (p & ~(Perm.Write | Perm.Resize)) | (perm & (Perm.Write | Perm.Resize));
                return (p, s);
            case "copy-on-read":
                const Perm corPass = Perm.ConsistentRead | Perm.Write | Perm.Resize;
                return ((perm & corPass) | Perm.WriteUnchanged, (shared & corPass) | Perm.WriteUnchanged);
            case "preallocate":
                if ((perm & Perm.Write) != 0 && (perm & Perm.Resize) != 0)
                {
                    p |= Perm.Write | Perm.Resize;
                    s &= ~(Perm.Write | Perm.Resize);
                }
                return (p, s);
            case "blkdebug":
                return (p | PermList(parent, "take-child-perms"), s & ~PermList(parent, "unshare-child-perms"));
            case "snapshot-access":
                return (Perm.None, Perm.All);
            case "copy-before-write":
                return CbwRule(g, parent, edge, p, s);
            // The test drivers of QEMU's tests/unit/test-bdrv-graph-mod.c (not reachable over QMP).
            case "x-no-perm":
                return (Perm.None, Perm.All);
            case "x-exclusive-writer":
                return (Perm.Write, Perm.All & ~Perm.Write);
            case "x-write-to-selected":
                return parent.Str("selected") == edge.Name ? (Perm.Write, Perm.All & ~Perm.Write) : (Perm.None, Perm.All);
            default:
                return (p, s);
        }
    }

    /// <summary>
    /// copy-before-write: the target is written, never resized; the source is read for copying and
    /// others may not write it except through the filter. Strict scheme (the series, default): always;
    /// upstream scheme (QEMU 7.2): only while the filter has a parent, reading only when that parent writes.
    /// </summary>
    private static (Perm, Perm) CbwRule(Graph g, Node parent, Edge edge, Perm p, Perm s)
    {
        if ((edge.Role & Role.Filtered) == 0) return (Perm.Write, Perm.All & ~Perm.Resize);
        bool strict = parent.Str("x-perm-scheme") != "upstream";
        if (!strict && !g.ParentsOf(parent.Name).Any()) return (p, s);
        bool reads = strict || (p & Perm.Write) != 0;
        return (reads ? p | Perm.ConsistentRead : p, s & ~(Perm.Write | Perm.Resize));
    }

    private static Perm PermList(Node n, string key)
    {
        if (!n.Options.TryGetValue(key, out var json)) return Perm.None;
        var arr = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsArray();
        return arr.Aggregate(Perm.None, (acc, x) => acc | (Perms.ParseQapi(x!.GetValue<string>()) ?? Perm.None));
    }
}
