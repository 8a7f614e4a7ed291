using System.Text.Json;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Proofs;

/// <summary>
/// Builds random block graphs from a sequence of choices, so that a property-testing library can
/// generate (and shrink) the choices while this code keeps every graph well-formed: acyclic (children
/// always come later in creation order), children named and roled as their driver defines, root edges
/// holding their parent's perms. Node-parent edges get arbitrary perms: a full refresh recomputes them.
/// </summary>
public static class RandomGraphs
{
    /// <summary>Most nodes a generated graph has.</summary>
    public const int NodesMax = 9;

    /// <summary>Most devices and exports a generated graph has.</summary>
    public const int RootsMax = 4;

    private static readonly string[] DriverChoices =
        ["file", "null-co", "raw", "qcow2", "throttle", "compress", "copy-on-read", "preallocate", "blkdebug", "snapshot-access", "copy-before-write"];

    /// <summary>Builds a graph; <paramref name="pick"/>(n) returns a choice in [0, n).</summary>
    public static Graph Build(Func<int, int> pick)
    {
        ArgumentNullException.ThrowIfNull(pick);
        int n = 1 + pick(NodesMax);
        var g = Graph.Empty with { Objects = Graph.Empty.Objects.SetItem("tg", new QomObject("tg", "throttle-group", ValueMap<string>.Empty)) };
        long seq = 1;
        var nodes = new List<Node>();
        var pending = new List<(int Parent, string Name, int Child, Role Role)>();
        // Create from the bottom up so that every child exists before (and has a lower seq than) its parents.
        for (int i = n - 1; i >= 0; i--)
        {
            var name = $"n{i}";
            int later = n - 1 - i; // nodes below this one
            var driver = DriverChoices[pick(DriverChoices.Length)];
            int needs = driver switch { "file" or "null-co" => 0, "copy-before-write" => 2, _ => 1 };
            if (needs > later) driver = pick(2) == 0 ? "file" : "null-co";
            bool ro = pick(4) == 0;
            var opts = Options(driver, ro, pick);
            nodes.Add(new Node(name, driver, ro, true, false, opts, ValueList<Bitmap>.Empty, seq++));
            int Below() => i + 1 + pick(later);
            switch (driver)
            {
                case "qcow2":
                    pending.Add((i, "file", Below(), Role.Image));
                    if (later > 1 && pick(2) == 0) pending.Add((i, "backing", Below(), Role.Cow));
                    break;
                case "raw":
                    pending.Add((i, "file", Below(), Drivers.ChildRole("raw", "file", opts)));
                    break;
                case "copy-before-write":
                    pending.Add((i, "file", Below(), Role.Filtered | Role.Primary));
                    pending.Add((i, "target", Below(), Role.Data));
                    break;
                case "snapshot-access":
                    pending.Add((i, "file", Below(), Role.Data | Role.Primary));
                    break;
                case "blkdebug":
                    pending.Add((i, "image", Below(), Role.Filtered | Role.Primary));
                    break;
                case "file" or "null-co":
                    break;
                default:
                    pending.Add((i, "file", Below(), Role.Filtered | Role.Primary));
                    break;
            }
        }
        foreach (var node in nodes) g = g.With(node);
        var edges = new List<Edge>();
        foreach (var (parent, cname, child, role) in pending)
        {
            // Two children of one node may not share a name; a repeated target is fine (QEMU allows it).
            var p = (Perm)pick(16);
            var s = (Perm)pick(16);
            edges.Add(new Edge(seq, new NodeParent($"n{parent}"), cname, $"n{child}", role, p, s, seq));
            seq++;
        }
        int roots = pick(RootsMax + 1);
        var devices = g.Devices;
        var exports = g.Exports;
        for (int r = 0; r < roots; r++)
        {
            var target = $"n{pick(n)}";
            if (pick(2) == 0)
            {
                var d = new Device($"d{r}", pick(2) == 0 ? "virtio-blk-pci" : "scsi-hd", pick(3) == 0, pick(3) == 0, seq);
                devices = devices.SetItem(d.Id, d);
                var (pp, ss) = Devices.Perms(d);
                edges.Add(new Edge(seq, new DeviceParent(d.Id), "root", target, Role.Filtered | Role.Primary, pp, ss, seq));
            }
            else
            {
                var x = new Export($"e{r}", $"e{r}", pick(2) == 0, null, ValueList<string>.Empty, seq);
                exports = exports.SetItem(x.Id, x);
                var (pp, ss) = Exports.Perms(x.Writable);
                edges.Add(new Edge(seq, new ExportParent(x.Id), "root", target, Role.Filtered | Role.Primary, pp, ss, seq));
            }
            seq++;
        }
        return g with { Edges = ValueList<Edge>.From(edges), Devices = devices, Exports = exports, NbdServerRunning = exports.Count > 0, NextSeq = seq };
    }

    private static ValueMap<string> Options(string driver, bool ro, Func<int, int> pick)
    {
        var o = ValueMap<string>.Empty;
        if (ro && pick(4) == 0) o = o.SetItem("force-share", "true");
        switch (driver)
        {
            case "file":
                o = o.SetItem("filename", JsonSerializer.Serialize(pick(2) == 0 ? "a.img" : "b.img"));
                if (pick(4) == 0) o = o.SetItem("locking", "\"off\"");
                break;
            case "raw" when pick(2) == 0:
                o = o.SetItem("offset", "512");
                break;
            case "throttle":
                o = o.SetItem("throttle-group", "\"tg\"");
                break;
            case "copy-before-write" when pick(2) == 0:
                o = o.SetItem("x-perm-scheme", "\"upstream\"");
                break;
            case "blkdebug":
                o = o.SetItem("take-child-perms", PermList((Perm)pick(16))).SetItem("unshare-child-perms", PermList((Perm)pick(16)));
                break;
        }
        return o;
    }

    private static string PermList(Perm p) =>
        JsonSerializer.Serialize(Perms.Bits.Where(b => (p & b) != 0).Select(Perms.QapiName).ToArray());
}
