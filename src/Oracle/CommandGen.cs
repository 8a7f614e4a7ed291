using System.Text.Json;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Random QMP commands for a model state, drawn from a choice stream so that a property library can
/// shrink the stream and with it the commands. Names mostly come from what exists (so most commands
/// are valid), with a deliberate share of unknown names, duplicates, cycles, conflicts and read-only
/// violations. With <c>faults</c>, host-storage faults are armed and cleared too, including on purpose
/// just before a transaction whose k-th action opens the failing file.
/// </summary>
/// <remarks>
/// The model assumes every file a command names exists; the implementation opens real files. So the
/// generator names only the files of <paramref name="files"/>, which a campaign creates beforehand.
/// </remarks>
public sealed partial class CommandGen(Func<int, int> pick, IReadOnlyList<string>? files = null, bool io = false, bool faults = false)
{
    /// <summary>Commands a multi-step pattern has queued (a fault, then its transaction, then the clear).</summary>
    private readonly Queue<Command> pending = new();

    /// <summary>errnos faults inject: EIO, and ENOSPC (a full disk).</summary>
    private static readonly int[] FaultErrnos = [5, 28];

    /// <summary>Pools of names: small, so that duplicates and reuse happen often.</summary>
    private static readonly string[] NodeNames = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"];

    private static readonly string[] ExportIds = ["e0", "e1", "e2"];

    /// <summary>The hot spot I/O favours: the first two copy-before-write clusters (128 KiB).</summary>
    private const int HotSectors = 256;

    /// <summary>File names used when no pool is given (fine for the model alone).</summary>
    public static readonly IReadOnlyList<string> DefaultFiles = ["a.img", "b.img", "c.img"];

    /// <summary>
    /// A qcow2 image beside the pool whose header names the pool's last file (a qcow2 image) as its backing file:
    /// qcow2 nodes over it without a backing option open that chain (Judge creates it; only qcow2 nodes over the default pool use it).
    /// </summary>
    public const string ChainFile = "d.img";

    private readonly IReadOnlyList<string> files = files ?? DefaultFiles;

    /// <summary>The chain file, with the default pool only (a caller's own pool has none beside it).</summary>
    private readonly string? chainFile = files is null || ReferenceEquals(files, DefaultFiles) ? ChainFile : null;

    /// <summary>Most actions in one generated transaction.</summary>
    public const int TransactionActionsMax = 4;

    private int P(int n) => n <= 1 ? 0 : pick(n);

    private bool Chance(int oneIn) => P(oneIn) == 0;

    private T One<T>(IReadOnlyList<T> items) => items[P(items.Count)];

    private string ExistingOr(ModelState s, string fallback)
    {
        var names = s.Graph.Nodes.Keys.ToList();
        return names.Count == 0 || Chance(12) ? fallback : One(names);
    }

    /// <summary>The next command for state <paramref name="s"/>.</summary>
    public Command Next(ModelState s)
    {
        ArgumentNullException.ThrowIfNull(s);
        while (pending.Count > 0)
        {
            // A queued read or write stays only if its stack still is one the model predicts.
            var queued = pending.Dequeue();
            if (queued is not IoStep q || Roots(s).Any(r => r.Id == q.Root)) return queued;
        }
        if (faults && Chance(20)) return Fault(s);
        if (io && Chance(4) && Io(s) is { } step) return step;
        if (Chance(10) && FilterSwap(s) is { } swap) return swap;
        if (io && Chance(25) && Fleecing(s) is { } fleece) return fleece;
        if (Chance(10) && ShapeStep(s) is { } shaped) return shaped; // QEMU's graph-mod shapes: CommandGen.Shapes.cs
        if (Chance(s.Graph.Jobs.Count > 0 ? 5 : 12)) return JobStep(s); // backup jobs and their verbs: CommandGen.Jobs.cs
        return P(20) switch
        {
            < 6 => Add(s),
            6 or 7 => new BlockdevDel(ExistingOr(s, "nosuch")),
            8 or 9 => Replace(s),
            10 => Reopen(s),
            11 => DeviceAdd(s),
            12 => Chance(2) ? new DeviceDel(ExistingId(s.Graph.Devices.Keys, ["d0", "d1", "d2"])) : QomSet(s),
            13 => s.Graph.NbdServerRunning && !Chance(6) ? ExportAdd(s) : new NbdServerStart("{\"type\":\"unix\",\"data\":{\"path\":\"/tmp/nbd.sock\"}}"),
            14 => new BlockExportDel(ExistingId(s.Graph.Exports.Keys, ["e0", "e1", "e2"]), "safe"),
            15 => Chance(3) ? new ObjectDel(One(["tg0", "tg1"])) : new ObjectAdd("throttle-group", One(["tg0", "tg1"]), Limits()),
            16 => Bitmap(s),
            _ => Transaction(s),
        };
    }

    /// <summary>
    /// A host-storage fault: clear them all (most often when some are armed), arm one at random, or the
    /// pattern "fail at step k": arm an open fault on a file, then run a transaction whose k-th action opens
    /// that file (the others random), then clear.
    /// </summary>
    private FaultStep Fault(ModelState s)
    {
        if (s.Graph.Faults.Count > 0 && !Chance(3)) return FaultStep.Clear;
        var file = One(files);
        int errno = One(FaultErrnos);
        if (Chance(2)) return new FaultStep(One(HostFaults.Ops), file, errno);
        var actions = new List<Command>();
        int n = 1 + P(TransactionActionsMax), k = P(n);
        for (int i = 0; i < n; i++)
        {
            actions.Add(i == k
                ? new BlockdevAdd(new BlockdevOptions("file", FreshName(s), ValueMap<string>.Empty.SetItem("filename", JsonSerializer.Serialize(file)), ValueList<ChildOption>.Empty))
                : GraphAction(s));
        }
        pending.Enqueue(new Vocabulary.Transaction(ValueList<Command>.From(actions), "individual"));
        pending.Enqueue(FaultStep.Clear);
        return new FaultStep("open", file, errno);
    }

    /// <summary>Throttle limits: none, a valid set, or one that breaks a rule.</summary>
    private ValueMap<string> Limits()
    {
        if (Chance(2)) return ValueMap<string>.Empty;
        var parts = new List<string>();
        foreach (var (key, values) in new (string, long[])[]
        {
            ("iops-total", [0, 100, 1000]), ("iops-read", [0, 0, 0, 50]), ("iops-total-max", [0, 0, 200, 50]),
            ("iops-total-max-length", [1, 1, 2, 0]), ("bps-write", [0, 0, 1 << 20]), ("iops-size", [0, 0, 4096]),
        })
        {
            var v = One(values);
            if (v != 0 || key.EndsWith("length", StringComparison.Ordinal) && !Chance(3)) parts.Add($"\"{key}\":{v}");
        }
        return ValueMap<string>.Empty.SetItem("limits", "{" + string.Join(",", parts) + "}");
    }

    /// <summary>
    /// A read or write of whole sectors through a device or an export whose stack the model can predict
    /// (null if there is none), mostly in range, sometimes past the end or through a read-only parent.
    /// </summary>
    private IoStep? Io(ModelState s)
    {
        var roots = Roots(s);
        if (roots.Count == 0) return null;
        var (id, _, edge) = One(roots);
        long sectors = Data.Length(s, edge.Child)!.Value / Data.Sector;
        int count = 1 + P(16);
        // Half the requests fall in a hot spot, so that reads meet earlier writes (and copies) often.
        long sector = Chance(20) ? sectors - count + 1 + P(2)
            : P((int)Math.Min(Chance(2) ? HotSectors : int.MaxValue, Math.Max(1, sectors - count + 1)));
        return new IoStep(id, !Chance(2), Math.Max(0, sector) * Data.Sector, count * Data.Sector, (byte)(1 + P(255)));
    }

    /// <summary>Devices and exports whose stack the model predicts, with their root edges.</summary>
    private static List<(string Id, ReplaceParent Parent, Edge Edge)> Roots(ModelState s) =>
        [.. Attached(s.Graph).Where(r => IoStep.Predictable(s, r.Edge))];

    /// <summary>Block devices and exports that sit on a node: their id, how x-blockdev-replace names them, their root edge.</summary>
    private static IEnumerable<(string Id, ReplaceParent Parent, Edge Edge)> Attached(Graph g) =>
        g.Devices.Values.Where(d => d.IsBlock).Select(d => (d.Id, (ReplaceParent)new ReplaceQdevParent(d.Id), Edge: g.RootEdge(new DeviceParent(d.Id))))
            .Concat(g.Exports.Values.Select(x => (x.Id, (ReplaceParent)new ReplaceExportParent(x.Id), Edge: g.RootEdge(new ExportParent(x.Id)))))
            .Where(r => r.Edge is not null)
            .Select(r => (r.Id, r.Item2, r.Edge!));

    /// <summary>
    /// The series' motivating pattern: one transaction inserts a filter under a live device or export
    /// (add the filter over the node, move the parent onto it), or removes one (move the parent back,
    /// delete the filter). Random actions seldom line up like this, so it is generated on purpose.
    /// </summary>
    private Vocabulary.Transaction? FilterSwap(ModelState s)
    {
        var g = s.Graph;
        var roots = Attached(g).ToList();
        if (roots.Count == 0) return null;
        var (_, parent, edge) = One(roots);
        var node = g.Nodes[edge!.Child];
        var below = g.ChildEdge(node.Name, "file")?.Child;
        if (below is not null && Drivers.IsFilter(node.Driver) && node.MonitorOwned && !Chance(3))
        {
            // Remove the filter the parent sits on: move the parent down, delete the filter.
            return new Vocabulary.Transaction(ValueList<Command>.From(
                [new BlockdevReplace(parent, below), new BlockdevDel(node.Name)]), "individual");
        }
        var name = FreshName(s);
        var driver = One(["copy-before-write", "throttle", "preallocate", "raw", "copy-on-read"]);
        var scalars = ValueMap<string>.Empty;
        var children = new List<ChildOption> { new("file", new BlockdevRefName(node.Name)) };
        if (driver == "throttle") scalars = scalars.SetItem("throttle-group", JsonSerializer.Serialize(One(["tg0", "tg1"])));
        if (driver == "copy-before-write")
        {
            children.Add(new("target", Child(s, 1)));
            if (Chance(3)) scalars = scalars.SetItem("x-perm-scheme", "\"upstream\"");
        }
        var add = new BlockdevAdd(new BlockdevOptions(driver, name, scalars, ValueList<ChildOption>.From(children)));
        return new Vocabulary.Transaction(ValueList<Command>.From([add, new BlockdevReplace(parent, name)]), "individual");
    }

    /// <summary>
    /// Fleecing, the series' way: under a device or export whose data the model predicts, one transaction
    /// adds a copy-before-write filter with a new target file node and moves the parent onto it; then a
    /// snapshot-access node on the filter is exported (starting the NBD server if needed), so that later
    /// reads of the export must show the point-in-time view while writes go on. Queued as several steps.
    /// </summary>
    private Vocabulary.Transaction? Fleecing(ModelState s)
    {
        var g = s.Graph;
        var roots = Attached(g).Where(r => Data.Predictable(s, r.Edge.Child)).ToList();
        var freeExports = ExportIds.Where(e => !g.Exports.ContainsKey(e)).ToList();
        var names = NodeNames.Where(n => g.Find(n) is null).ToList();
        if (roots.Count == 0 || freeExports.Count == 0 || names.Count < 3) return null;
        var (writer, parent, edge) = One(roots);
        string target = names[0], cbw = names[1], snap = names[2];
        var file = ValueMap<string>.Empty.SetItem("filename", JsonSerializer.Serialize(One(files)));
        var addTarget = new BlockdevAdd(new BlockdevOptions("file", target, file, ValueList<ChildOption>.Empty));
        var addCbw = new BlockdevAdd(new BlockdevOptions("copy-before-write", cbw, ValueMap<string>.Empty,
            ValueList<ChildOption>.From([new("file", new BlockdevRefName(edge!.Child)), new("target", new BlockdevRefName(target))])));
        if (!g.NbdServerRunning) pending.Enqueue(new NbdServerStart("{\"type\":\"unix\",\"data\":{\"path\":\"/tmp/nbd.sock\"}}"));
        pending.Enqueue(new BlockdevAdd(new BlockdevOptions("snapshot-access", snap, ValueMap<string>.Empty, ValueList<ChildOption>.From([new("file", new BlockdevRefName(cbw))]))));
        var id = One(freeExports);
        pending.Enqueue(new BlockExportAdd(id, snap, id, false, null, ValueList<string>.Empty, false));
        // The point-in-time check: the live parent writes, the view is read at the same place.
        long at = P(HotSectors) * (long)Data.Sector;
        int len = (1 + P(16)) * Data.Sector;
        pending.Enqueue(new IoStep(writer, true, at, len, (byte)(1 + P(255))));
        pending.Enqueue(new IoStep(id, false, at, len, 0));
        return new Vocabulary.Transaction(ValueList<Command>.From([addTarget, addCbw, new BlockdevReplace(parent, cbw)]), "individual");
    }

    /// <summary>A transaction of graph and classic actions, sometimes ending in abort.</summary>
    public Command Transaction(ModelState s)
    {
        var actions = new List<Command>();
        int n = 1 + P(TransactionActionsMax);
        for (int i = 0; i < n; i++)
        {
            actions.Add(P(10) switch
            {
                < 4 => Add(s),
                4 or 5 => new BlockdevDel(ExistingOr(s, "nosuch")),
                6 or 7 => Replace(s),
                8 => Chance(2) ? Snapshot(s) : Bitmap(s),
                _ => new AbortAction(),
            });
        }
        return new Vocabulary.Transaction(ValueList<Command>.From(actions), "individual");
    }

    /// <summary>A transaction of 1…<see cref="TransactionActionsMax"/> graph actions.</summary>
    public Vocabulary.Transaction GraphTransaction(ModelState s) =>
        new(ValueList<Command>.From(Enumerable.Range(0, 1 + P(TransactionActionsMax)).Select(_ => GraphAction(s))), "individual");

    /// <summary>Graph actions only (add, del, replace), for policy comparisons.</summary>
    public Command GraphAction(ModelState s) => P(5) switch
    {
        < 2 => Add(s),
        2 => new BlockdevDel(ExistingOr(s, "nosuch")),
        _ => Replace(s),
    };

    private BlockdevAdd Add(ModelState s) => new(Options(s, FreshName(s), depth: 0));

    /// <summary>Mostly a name not in use (so the add can succeed), sometimes any name of the pool (a duplicate).</summary>
    private string FreshName(ModelState s)
    {
        var free = NodeNames.Where(n => s.Graph.Find(n) is null).ToList();
        return free.Count == 0 || Chance(8) ? One(NodeNames) : One(free);
    }

    private BlockdevOptions Options(ModelState s, string? name, int depth)
    {
        var driver = One(DriverPool);
        if (driver == "compress" && !Chance(3)) driver = "raw"; // compress needs qcow2 below: mostly refused
        if (depth > 1 && driver is not "null-co" and not "file") driver = "file";
        var scalars = ValueMap<string>.Empty;
        if (Chance(6)) scalars = scalars.SetItem("read-only", "true");
        var children = new List<ChildOption>();
        switch (driver)
        {
            case "file":
                scalars = scalars.SetItem("filename", JsonSerializer.Serialize(One(files)));
                if (Chance(5)) scalars = scalars.SetItem("locking", "\"off\"");
                break;
            case "null-co":
                scalars = scalars.SetItem("size", "1048576");
                break;
            case "blkdebug":
                children.Add(new("image", Child(s, depth)));
                if (Chance(3)) scalars = scalars.SetItem("take-child-perms", "[\"write\"]");
                if (Chance(3)) scalars = scalars.SetItem("unshare-child-perms", "[\"write\",\"resize\"]");
                break;
            case "throttle":
                scalars = scalars.SetItem("throttle-group", JsonSerializer.Serialize(One(["tg0", "tg1"])));
                children.Add(new("file", Child(s, depth)));
                break;
            case "qcow2":
                children.Add(new("file", Qcow2File(s, depth)));
                if (Chance(3)) children.Add(new("backing", Chance(4) ? null : Child(s, depth)));
                break;
            case "raw":
                children.Add(new("file", Child(s, depth)));
                if (Chance(3)) scalars = scalars.SetItem("offset", "512");
                break;
            case "copy-before-write":
                children.Add(new("file", Child(s, depth)));
                children.Add(new("target", Child(s, depth)));
                if (Chance(3)) scalars = scalars.SetItem("x-perm-scheme", "\"upstream\"");
                break;
            case "copy-on-read":
                children.Add(new("file", Child(s, depth)));
                if (Chance(4)) scalars = scalars.SetItem("bottom", JsonSerializer.Serialize(ExistingOr(s, "nosuch")));
                break;
            case "compress":
                var q = s.Graph.Nodes.Values.Where(n => n.Driver == "qcow2").Select(n => n.Name).ToList();
                children.Add(new("file", q.Count > 0 && !Chance(4) ? new BlockdevRefName(One(q)) : Child(s, depth)));
                break;
            default:
                children.Add(new("file", Child(s, depth)));
                break;
        }
        return new BlockdevOptions(driver, name, scalars, ValueList<ChildOption>.From(children));
    }

    /// <summary>
    /// A qcow2 node's file: mostly one that holds a qcow2 image (an existing node that reads as the qcow2 pool
    /// file, or a new file node on it), so that qcow2 nodes open and their graphs get explored; otherwise any
    /// child, which mostly fails with QEMU's "not in qcow2 format". Never one whose header read would copy data
    /// up a backing chain through copy-on-read (<see cref="Images.HeaderReadCopiesUp"/>).
    /// </summary>
    private BlockdevRef Qcow2File(ModelState s, int depth)
    {
        var g = s.Graph;
        BlockdevRef file;
        if (Chance(4))
        {
            file = Child(s, depth);
        }
        else
        {
            var valid = g.Nodes.Keys.Where(n => g.Live(n) is not null && Images.Qcow2OpenError(g, n) is null).ToList();
            // The pool's last file holds a qcow2 image (Judge.PoolFormat); the chain file one whose header names it.
            // One draw of six where a plain coin was drawn before, so the stream (and with it every other choice) stays put.
            int pick = valid.Count > 0 ? P(6) : 4;
            file = pick < 3 ? new BlockdevRefName(One(valid)) : PoolFile(pick == 3 && chainFile is not null ? chainFile : files[^1]);
        }
        return CopiesUp(g, file) ? PoolFile(files[^1]) : file;
    }

    private static BlockdevRefInline PoolFile(string name) =>
        new(new BlockdevOptions("file", null, ValueMap<string>.Empty.SetItem("filename", JsonSerializer.Serialize(name)), ValueList<ChildOption>.Empty));

    /// <summary>Whether a qcow2 node over <paramref name="r"/> might read its header through copy-on-read above a backing chain (inline trees judged conservatively).</summary>
    private static bool CopiesUp(Graph g, BlockdevRef? r) => r switch
    {
        BlockdevRefName n => g.Find(n.Name) is not null && Images.HeaderReadCopiesUp(g, n.Name),
        BlockdevRefInline i => (i.Options.Driver == "copy-on-read" && i.Options.Child("file")?.Ref switch
        {
            BlockdevRefName f => g.ChildEdge(f.Name, "backing") is not null,
            BlockdevRefInline f => f.Options.Child("backing")?.Ref is not null,
            _ => false,
        }) || i.Options.Children.Any(c => CopiesUp(g, c.Ref)),
        _ => false,
    };

    private static readonly string[] DriverPool = ["null-co", "file", "raw", "qcow2", "throttle", "compress", "copy-on-read", "preallocate",
        "copy-before-write", "snapshot-access", "blkdebug"];

    private BlockdevRef Child(ModelState s, int depth)
    {
        if (s.Graph.Nodes.Count > 0 && !Chance(3)) return new BlockdevRefName(ExistingOr(s, "nosuch"));
        return new BlockdevRefInline(Options(s, Chance(3) ? One(NodeNames) + "c" : null, depth + 1));
    }

    /// <summary>Every node at or below a job's filter.</summary>
    private static HashSet<string> UnderJobs(Graph g)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var todo = new Stack<string>(g.Jobs.Values.Select(j => j.Filter).OfType<string>());
        while (todo.Count > 0)
        {
            var n = todo.Pop();
            if (!seen.Add(n)) continue;
            foreach (var e in g.Edges.Where(e => e.Parent is NodeParent p && p.Node == n)) todo.Push(e.Child);
        }
        return seen;
    }

    private BlockdevReplace Replace(ModelState s)
    {
        var g = s.Graph;
        var newChild = ExistingOr(s, "nosuch");
        // Not inside a job's subtree: a child swapped under a waiting backup changes what its copy reads and
        // writes (lengths, qcow2 layers, headers) in ways the model does not follow.
        var underJobs = UnderJobs(g);
        var edges = g.Edges.Where(e => e.Parent is not NodeParent np || !underJobs.Contains(np.Node)).ToList();
        if (edges.Count == 0 || Chance(15)) return new BlockdevReplace(new ReplaceDriverParent(ExistingOr(s, "nosuch"), "file"), newChild);
        var e = One(edges);
        ReplaceParent parent = e.Parent switch
        {
            NodeParent np => new ReplaceDriverParent(np.Node, Chance(10) ? "nochild" : e.Name),
            DeviceParent dp => new ReplaceQdevParent(Chance(2) ? dp.Id : $"/machine/peripheral/{dp.Id}"),
            ExportParent ep => new ReplaceExportParent(ep.Id),
            _ => new ReplaceDriverParent("nosuch", "file"),
        };
        return new BlockdevReplace(parent, newChild);
    }

    private BlockdevReopen Reopen(ModelState s)
    {
        var g = s.Graph;
        if (g.Nodes.Count == 0) return new BlockdevReopen(ValueList<BlockdevOptions>.From([new BlockdevOptions("null-co", "nosuch", ValueMap<string>.Empty, ValueList<ChildOption>.Empty)]));
        var n = One(g.Nodes.Values.ToList());
        var scalars = n.Options.Remove("read-only");
        if (Chance(2)) scalars = scalars.SetItem("read-only", n.ReadOnly ? "false" : "true");
        var children = new List<ChildOption>();
        foreach (var f in BlockdevSchema.Get(n.Driver)?.ChildFields ?? [])
        {
            var cur = g.ChildEdge(n.Name, f.Name);
            if (cur is null && f.Name != "file") continue;
            var target = Chance(3) ? ExistingOr(s, "nosuch") : cur?.Child ?? ExistingOr(s, "nosuch");
            children.Add(new(f.Name, new BlockdevRefName(target)));
        }
        return new BlockdevReopen(ValueList<BlockdevOptions>.From([new BlockdevOptions(n.Driver, n.Name, scalars, ValueList<ChildOption>.From(children))]));
    }

    private DeviceAdd DeviceAdd(ModelState s)
    {
        if (!s.Graph.Devices.Values.Any(d => !d.IsBlock) && Chance(2)) return new DeviceAdd("virtio-scsi-pci", "scsi0", null, false);
        return new DeviceAdd(One(["virtio-blk-pci", "scsi-hd"]), One(["d0", "d1", "d2"]), ExistingOr(s, "nosuch"), Chance(3));
    }

    private QomSet QomSet(ModelState s) =>
        new($"/machine/peripheral/{ExistingId(s.Graph.Devices.Values.Where(d => d.IsBlock).Select(d => d.Id), ["d0", "d1", "d2"])}",
            "drive", JsonSerializer.Serialize(ExistingOr(s, "nosuch")));

    /// <summary>Mostly an existing id, sometimes any id of the pool (which may not exist).</summary>
    private string ExistingId(IEnumerable<string> existing, string[] pool)
    {
        var list = existing.ToList();
        return list.Count == 0 || Chance(6) ? One(pool) : One(list);
    }

    private BlockExportAdd ExportAdd(ModelState s)
    {
        var id = One(["e0", "e1", "e2"]);
        return new BlockExportAdd(id, ExistingOr(s, "nosuch"), id, Chance(2), null, ValueList<string>.Empty, false);
    }

    private BlockdevSnapshot Snapshot(ModelState s) => new(ExistingOr(s, "nosuch"), ExistingOr(s, "nosuch"));

    private BitmapCommand Bitmap(ModelState s)
    {
        var op = One([BitmapOp.Add, BitmapOp.Add, BitmapOp.Remove, BitmapOp.Enable, BitmapOp.Disable, BitmapOp.Clear]);
        var withBitmaps = s.Graph.Nodes.Values.Where(n => n.Bitmaps.Count > 0).ToList();
        if (op != BitmapOp.Add && withBitmaps.Count > 0 && !Chance(5))
        {
            var n = One(withBitmaps);
            return new(op, n.Name, One(n.Bitmaps.Select(b => b.Name).ToList()));
        }
        // A persistent bitmap on a qcow2 node is stored in the image at close and loaded when it opens again,
        // which the model does not follow (spec/oracle.md): persistent adds go to other nodes, where they fail.
        var node = ExistingOr(s, "nosuch");
        bool persistent = op == BitmapOp.Add && Chance(6) && s.Graph.Live(node)?.Driver != "qcow2";
        return new(op, node, One(["bm0", "bm1"]), Persistent: persistent);
    }
}
