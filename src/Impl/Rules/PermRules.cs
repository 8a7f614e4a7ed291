using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.Rules;

/// <summary>
/// The implementation's statement of each driver's graph rules: child roles, filter and protocol
/// flags, close behaviour, and the child permission function (QEMU's <c>bdrv_child_perm</c>).
/// Written apart from the model; the oracle compares the two.
/// </summary>
internal static class PermRules
{
    private const Perm CR = Perm.ConsistentRead, W = Perm.Write, WU = Perm.WriteUnchanged, RS = Perm.Resize, ALL = Perm.All;

    public static bool IsFilter(string d) => d switch
    {
        "throttle" or "copy-on-read" or "compress" or "preallocate" or "blkdebug" or "copy-before-write" or "mirror_top" => true,
        _ => false,
    };

    /// <summary>Drivers opening their own children; the rest get <c>file</c> opened before their name.</summary>
    public static bool IsProtocol(string d) => d is "file" or "null-co" or "null-aio" or "blkdebug";

    /// <summary>No close hook, or copy-before-write's independent_close: children go at unref time.</summary>
    public static bool ClosesIndependently(string d) => d is "raw" or "compress" or "snapshot-access" or "copy-before-write" or "null-co" or "null-aio";

    public static bool SupportsBacking(string d) => d == "qcow2";

    /// <summary>Drivers without a reopen handler in QEMU 7.2 refuse blockdev-reopen.</summary>
    public static bool Reopenable(string d) => d is not "copy-on-read" and not "snapshot-access" and not "copy-before-write" and not "compress";

    public static Role RoleOf(string driver, string child, ValueMap<string> options) => (driver, child) switch
    {
        ("qcow2", "file") => Role.Data | Role.Metadata | Role.Primary,
        ("qcow2", "backing") => Role.Cow,
        ("raw", "file") when options.ContainsKey("size") || options.GetOr("offset", "0") != "0" => Role.Data | Role.Primary,
        ("copy-before-write", "target") => Role.Data,
        ("snapshot-access", "file") => Role.Data | Role.Primary,
        _ => Role.Filtered | Role.Primary,
    };

    /// <summary>The perm and shared perm <paramref name="parent"/> takes on <paramref name="c"/> given its cumulative perms.</summary>
    public static (Perm, Perm) ChildPerm(BlockNode parent, BdrvChild c, Perm perm, Perm shared)
    {
        var (p, s) = Rule(parent, c, perm, shared);
        if (parent.Mutation == Engine.EngineMutation.ThrottleUnsharesResize && parent.DriverName == "throttle") s &= ~RS;
        return (p, c.Node.ForceShare ? ALL : s);
    }

    private static (Perm, Perm) Rule(BlockNode parent, BdrvChild c, Perm perm, Perm shared)
    {
        switch (parent.DriverName)
        {
            case "snapshot-access":
                return (Perm.None, ALL);
            case "copy-on-read":
                return ((perm & (CR | W | RS)) | WU, (shared & (CR | W | RS)) | WU);
            case "copy-before-write" when c.Name == "target":
                return (W, ALL & ~RS);
            case "copy-before-write":
                // Strict (the series): always read the source and keep others from writing it. Upstream 7.2:
                // only while the filter has a parent, and reads only when that parent writes.
                if (parent.Str("x-perm-scheme") != "upstream") return (perm | CR, shared & ~(W | RS));
                if (parent.ParentList.Count == 0) return (perm, shared);
                return ((perm & W) != 0 ? perm | CR : perm, shared & ~(W | RS));
            case "blkdebug":
                return (perm | Bits(parent, "take-child-perms"), shared & ~Bits(parent, "unshare-child-perms"));
            case "preallocate":
                return (perm & (W | RS)) == (W | RS) ? (perm, shared & ~(W | RS)) : (perm, shared);
        }
        var role = c.Role;
        if ((role & Role.Filtered) != 0) return (perm, shared);
        if ((role & Role.Cow) != 0) return (perm & CR, (shared & W) != 0 ? ALL : CR | WU);
        Perm np = perm, ns = shared;
        if ((role & Role.Metadata) != 0)
        {
            np |= CR | (parent.Writable ? W | RS : Perm.None);
            ns &= ~(W | RS);
        }
        if ((role & Role.Data) != 0)
        {
            ns &= ~RS;
            if ((np & WU) != 0) np |= W;
            if ((np & W) != 0) np |= RS;
        }
        if (parent.DriverName == "raw") np = (np & ~(W | RS)) | (perm & (W | RS));
        return (np, ns);
    }

    private static Perm Bits(BlockNode n, string key)
    {
        if (!n.Options.TryGetValue(key, out var json)) return Perm.None;
        Perm p = Perm.None;
        foreach (var x in System.Text.Json.Nodes.JsonNode.Parse(json)!.AsArray()) p |= Perms.ParseQapi(x!.GetValue<string>()) ?? Perm.None;
        return p;
    }
}
