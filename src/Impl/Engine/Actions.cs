using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Impl.Rules;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>The series' transaction and its actions.</summary>
public sealed partial class BlockEngine
{
    private static bool IsGraphAction(Command c) => c is BlockdevAdd or BlockdevDel or BlockdevReplace;

    /// <summary>
    /// Runs actions as one transaction: graph actions change the graph and queue nodes; the queue is
    /// refreshed before each other action and once at the end; any error aborts everything.
    /// </summary>
    private QmpError? RunTransaction(IReadOnlyList<Command> actions, bool refreshEveryAction, bool grouped = false)
    {
        var tran = new UndoLog(Services.Mutation);
        var refresh = new List<BlockNode>();
        foreach (var action in actions)
        {
            if (refresh.Count > 0 && (refreshEveryAction || !IsGraphAction(action) || Services.Mutation == EngineMutation.RefreshEveryAction))
            {
                var rerr = RefreshQueued(tran, refresh);
                if (rerr is not null) { tran.Abort(); return rerr; }
            }
            var err = grouped && action is BlockdevSnapshot or BlockdevSnapshotSync or BitmapCommand
                ? QmpError.Generic($"Action '{action.Name}' does not support Transaction property completion-mode = grouped")
                : Prepare(tran, action, refresh);
            if (err is not null) { tran.Abort(); return err; }
        }
        var last = RefreshQueued(tran, refresh);
        if (last is not null) { tran.Abort(); return last; }
        tran.Commit();
        return null;
    }

    /// <summary>Runs a transaction under the step-by-step policy (refresh after every action), for comparisons.</summary>
    public Reply ExecuteStepwise(Vocabulary.Transaction t)
    {
        ArgumentNullException.ThrowIfNull(t);
        lock (graphLock)
        {
            using var drained = Io.Drain();
            var err = RunTransaction(t.Actions, refreshEveryAction: true);
            return err is null ? Reply.Ok() : new Reply(null, err);
        }
    }

    private static QmpError? RefreshQueued(UndoLog tran, List<BlockNode> refresh)
    {
        var list = Enumerable.Reverse(refresh).ToList();
        refresh.Clear();
        return Refresher.Refresh(list, tran);
    }

    private QmpError? Prepare(UndoLog tran, Command action, List<BlockNode> refresh) => action switch
    {
        BlockdevAdd a => Add(tran, a.Options, refresh),
        BlockdevDel d => Del(tran, d.NodeName, refresh),
        BlockdevReplace r => Replace(tran, r, refresh),
        BlockdevSnapshot s => Snapshot(tran, s),
        BlockdevSnapshotSync s => SnapshotSync(tran, s),
        BitmapCommand b => Bitmap(tran, b),
        Vocabulary.Jobs.BlockdevBackup b => Backup(tran, b),
        AbortAction => QmpError.Generic("Transaction aborted using Abort action"),
        _ => throw new ArgumentException($"{action.Name} is not a transaction action", nameof(action)),
    };

    private QmpError? Add(UndoLog tran, BlockdevOptions o, List<BlockNode> refresh)
    {
        if (o.NodeName is null) return QmpError.Generic("'node-name' must be specified for the root node");
        var (node, err) = Open(tran, o, null, false);
        if (err is not null) return err;
        node!.MonitorOwned = true;
        node.RefCount++;
        tran.Add(abort: () => { node.MonitorOwned = false; node.RefCount--; });
        refresh.Add(node);
        return null;
    }

    private QmpError? Del(UndoLog tran, string name, List<BlockNode> refresh)
    {
        if (!Live(name, out var node)) return QmpError.Generic($"Failed to find node with node-name='{name}'");
        foreach (var e in node.ParentList)
        {
            // Any BlockBackend: a device's, an export's, a mirror job's on its target.
            if (e.Parent is RootParent) return QmpError.Generic($"Node {name} is in use");
        }
        var busy = JobBlocker(node) ?? Blocker(node);
        if (busy is not null) return busy;
        if (!node.MonitorOwned) return QmpError.Generic($"Node {name} is not owned by the monitor");
        if (node.RefCount > 1) return QmpError.Generic($"Block device {name} is in use");
        node.MonitorOwned = false;
        tran.Add(abort: () => node.MonitorOwned = true);
        UnrefTran(tran, node, refresh);
        return null;
    }

    private QmpError? Replace(UndoLog tran, BlockdevReplace r, List<BlockNode> refresh)
    {
        BdrvChild? edge;
        switch (r.Parent)
        {
            case ReplaceDriverParent d:
                if (!Live(d.NodeName, out var p)) return QmpError.Generic($"Block driver node with node-name '{d.NodeName}' not found");
                edge = p.Child(d.Child);
                if (edge is null) return QmpError.Generic($"Block driver node '{d.NodeName}' doesn't have child named '{d.Child}'");
                break;
            case ReplaceQdevParent q:
                var dev = ResolveDevice(q.QdevId);
                if (dev is null) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{q.QdevId}' not found");
                if (!dev.IsBlock) return QmpError.Generic("Device does not have a block device backend");
                edge = dev.Root;
                if (edge is null) return QmpError.Generic($"Device '{q.QdevId}' is empty, nothing to replace");
                break;
            case ReplaceExportParent x:
                if (!exports.TryGetValue(x.ExportId, out var exp)) return QmpError.Generic($"Export '{x.ExportId}' not found");
                edge = exp.Root;
                if (edge is null) return QmpError.Generic($"Export '{x.ExportId}' is empty, nothing to replace");
                break;
            default:
                throw new ArgumentException("unknown parent type", nameof(r));
        }
        if (!Live(r.NewChild, out var to)) return QmpError.Generic($"Node '{r.NewChild}' not found");
        if (edge.Node == to) return null; // QEMU 7.2 asserts here; Verified leaves the edge be
        var frozen = Frozen(edge);
        if (frozen is not null) return frozen;
        if (edge.Parent is BlockNode parent && Reaches(to, parent))
            return QmpError.Generic($"Making '{r.NewChild}' a {edge.Name} child of '{parent.Name}' would create a cycle");
        ReplaceChild(tran, edge, to, refresh);
        return null;
    }

    private QmpError? Snapshot(UndoLog tran, BlockdevSnapshot s)
    {
        if (!Live(s.Node, out var top)) return QmpError.Generic($"Cannot find device='{s.Node}' nor node-name='{s.Node}'");
        var busy = Blocker(top);
        if (busy is not null) return busy;
        if (!Live(s.Overlay, out var overlay)) return QmpError.Generic($"Cannot find device='{s.Overlay}' nor node-name='{s.Overlay}'");
        return AppendOverlay(tran, top, overlay);
    }

    private QmpError? SnapshotSync(UndoLog tran, BlockdevSnapshotSync s)
    {
        // device names a BlockBackend and Verified's are anonymous: only node-name finds the node.
        if (!Live(s.NodeName ?? "", out var top)) return QmpError.Generic($"Cannot find device='{s.Device ?? ""}' nor node-name='{s.NodeName ?? ""}'");
        var busy = Blocker(top);
        if (busy is not null) return busy;
        if (s.NodeName is not null && s.SnapshotNodeName is null) return QmpError.Generic("New overlay node-name missing");
        if (s.SnapshotNodeName is { } sn)
        {
            if (nodes.ContainsKey(sn)) return QmpError.Generic("New overlay node-name already in use");
            if (!Names.IsWellFormed(sn)) return QmpError.Generic($"Invalid node-name: '{sn}'");
        }
        if (s.Format != "qcow2")
            return QmpError.Generic(BlockdevSchema.Get(s.Format) is null ? $"Unknown file format '{s.Format}'" : $"Backing file not supported for file format '{s.Format}'");
        if (s.Mode == "absolute-paths")
        {
            // Created before the transaction may fail, and left behind if it does, as QEMU 7.2 leaves it.
            try
            {
                // external_snapshot_prepare names the old top by its file name (bdrv_refresh_filename), json: or plain.
                var backingName = FileNamesOf(top, new(ReferenceEqualityComparer.Instance)).Filename;
                Formats.Qcow2Image.Create(Services.Storage.Resolve(s.SnapshotFile), top.Length, backingName, top.DriverName);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return QmpError.Generic($"Could not create '{s.SnapshotFile}': {e.Message}");
            }
        }
        var file = new BlockdevOptions("file", null, ValueMap<string>.Empty.SetItem("filename", System.Text.Json.JsonSerializer.Serialize(s.SnapshotFile)), ValueList<ChildOption>.Empty);
        var opts = new BlockdevOptions(s.Format, s.SnapshotNodeName, ValueMap<string>.Empty,
            // external_snapshot_prepare opens the overlay with BDRV_O_NO_BACKING: not the backing its header names.
            ValueList<ChildOption>.From([new ChildOption("file", new BlockdevRefInline(file)), new ChildOption("backing", null)]));
        var (overlay, err) = Open(tran, opts, top.ReadOnly, false);
        if (err is not null) return err;
        // The action's own reference keeps the overlay alive until the clean phase, where an overlay
        // nothing else holds (one over a node without parents) is deleted again, as in QEMU 7.2.
        overlay!.RefCount++;
        tran.Add(abort: () => overlay.RefCount--);
        err = AppendOverlay(tran, top, overlay);
        if (err is not null) return err;
        tran.Add(abort: null, commit: null, clean: () =>
        {
            if (overlay.Deleted) return;
            overlay.RefCount--;
            if (overlay.RefCount == 0) Delete(overlay);
        });
        return null;
    }

    private QmpError? AppendOverlay(UndoLog tran, BlockNode top, BlockNode overlay)
    {
        if ((overlay.ComputeCumulative().Perm & Perm.ConsistentRead) != 0) return QmpError.Generic("The overlay is already in use");
        if (PermRules.IsFilter(overlay.DriverName)) return QmpError.Generic("Filters cannot be used as overlays");
        if (overlay.Child("backing") is not null) return QmpError.Generic("The overlay already has a backing image");
        if (!PermRules.SupportsBacking(overlay.DriverName)) return QmpError.Generic("The overlay does not support backing images");
        if (Reaches(top, overlay)) return QmpError.Generic($"Making '{top.Name}' a backing child of '{overlay.Name}' would create a cycle");
        var err = Append(tran, overlay, top);
        if (err is not null) return err;
        tran.Add(abort: null, commit: () => ReopenReadOnlyIgnoringErrors(top));
        return null;
    }

    private QmpError? Bitmap(UndoLog tran, BitmapCommand c)
    {
        if (c.Op == BitmapOp.Add)
        {
            if (c.Bitmap.Length == 0) return QmpError.Generic("Bitmap name cannot be empty");
            if (!Live(c.Node, out var n)) return QmpError.Generic($"Cannot find device='{c.Node}' nor node-name='{c.Node}'");
            long gran = c.Granularity ?? DefaultGranularity(n);
            if (gran < 512 || (gran & (gran - 1)) != 0) return QmpError.Generic("Granularity must be power of 2 and at least 512");
            if (c.Persistent && n.Driver is not IPersistentBitmaps) return QmpError.Generic($"Can't store persistent bitmaps to {n.Name}: Operation not supported");
            if (c.Persistent && ((IPersistentBitmaps)n.Driver).CanStoreNewBitmap(c.Bitmap, gran) is { } why)
                return QmpError.Generic($"Can't make bitmap '{c.Bitmap}' persistent in '{n.Name}': {why}");
            if (n.BitmapList.Exists(b => b.Name == c.Bitmap)) return QmpError.Generic($"Bitmap already exists: {c.Bitmap}");
            if (c.Bitmap.Length > BitmapNameLengthMax) return QmpError.Generic($"Bitmap name too long: {c.Bitmap}");
            var bm = new BitmapInfo(c.Bitmap, gran, !c.Disabled, c.Persistent) { Bits = new DirtyBits(gran, n.Length) };
            n.BitmapList.Add(bm);
            tran.Add(abort: () => n.BitmapList.Remove(bm));
            return null;
        }
        if (!Live(c.Node, out var node)) return QmpError.Generic($"Node '{c.Node}' not found");
        int i = node.BitmapList.FindIndex(b => b.Name == c.Bitmap);
        if (i < 0) return QmpError.Generic($"Dirty bitmap '{c.Bitmap}' not found");
        var old = node.BitmapList[i];
        // bdrv_dirty_bitmap_check's flags per command: remove may not touch a read-only bitmap, enable and
        // disable may, clear and merge (into) neither; only remove may touch an inconsistent one.
        var refused = BitmapCheck(node, old, readOnlyOk: c.Op is BitmapOp.Enable or BitmapOp.Disable, inconsistentOk: c.Op == BitmapOp.Remove);
        if (refused is not null) return refused;
        switch (c.Op)
        {
            case BitmapOp.Remove:
                // QEMU removes a persistent bitmap from the image at once, and an aborted transaction does not put it back.
                if (old.Persistent && node.Driver is IPersistentBitmaps stored && stored.RemoveStoredBitmap(old.Name) is { } why) return QmpError.Generic(why);
                node.BitmapList.RemoveAt(i);
                tran.Add(abort: () => node.BitmapList.Insert(i, old));
                return null;
            case BitmapOp.Enable or BitmapOp.Disable:
                node.BitmapList[i] = old with { Enabled = c.Op == BitmapOp.Enable };
                tran.Add(abort: () => node.BitmapList[i] = old);
                return null;
            case BitmapOp.Merge:
                foreach (var src in c.Sources ?? ValueList<BitmapRef>.Empty)
                {
                    var sn = src.Node ?? c.Node;
                    if (!Live(sn, out var srcNode)) return QmpError.Generic($"Node '{sn}' not found");
                    var from = srcNode.BitmapList.Find(b => b.Name == src.Name);
                    if (from is null) return QmpError.Generic($"Dirty bitmap '{src.Name}' not found");
                    if (BitmapCheck(srcNode, from, readOnlyOk: true, inconsistentOk: false) is { } e) return e;
                }
                return MergeBits(tran, old, c);
            case BitmapOp.Clear:
                if (old.Bits is { } bits)
                {
                    var saved = bits.Save();
                    bits.Clear();
                    tran.Add(abort: () => bits.Restore(saved));
                }
                return null;
            default:
                return null;
        }
    }

    /// <summary>Merges the sources' contents into the target (all checked to exist), undone on abort.</summary>
    private QmpError? MergeBits(UndoLog tran, BitmapInfo target, BitmapCommand c)
    {
        if (target.Bits is not { } bits) return null;
        var saved = bits.Save();
        foreach (var src in c.Sources ?? ValueList<BitmapRef>.Empty)
        {
            var from = nodes[src.Node ?? c.Node].BitmapList.Find(b => b.Name == src.Name)?.Bits;
            if (from is not null) bits.Merge(from);
        }
        tran.Add(abort: () => bits.Restore(saved));
        return null;
    }

    /// <summary>QEMU's bdrv_dirty_bitmap_check, in its order: busy, then read-only, then inconsistent.</summary>
    private QmpError? BitmapCheck(BlockNode node, BitmapInfo b, bool readOnlyOk, bool inconsistentOk)
    {
        if (BitmapBusy(node, b.Name)) return QmpError.Generic(BitmapBusyText(b.Name));
        if (!readOnlyOk && b.ReadOnly) return QmpError.Generic($"Bitmap '{b.Name}' is readonly and cannot be modified");
        if (!inconsistentOk && b.Inconsistent) return QmpError.Generic(BitmapInconsistentText(b.Name));
        return null;
    }

    private static string BitmapInconsistentText(string name) => $"Bitmap '{name}' is inconsistent and cannot be used";

    /// <summary>A bitmap is busy while an export serves it (QEMU's bdrv_dirty_bitmap_set_busy) or a backup syncs from it.</summary>
    private bool BitmapBusy(BlockNode node, string name) =>
        exports.Values.Any(e => e.BitmapNode == node && e.Bitmaps.Contains(name)) || node.BitmapList.Exists(b => b.Name == name && b.Frozen);

    private static string BitmapBusyText(string name) => $"Bitmap '{name}' is currently in use by another operation and cannot be used";

    /// <summary>Granularity of a new bitmap when none is given and the node has no cluster size (and the largest a cluster size gives).</summary>
    public const long BitmapGranularityDefault = 65536;

    /// <summary>The smallest default granularity a cluster size gives.</summary>
    public const long BitmapGranularityFromClusterMin = 4096;

    /// <summary>QEMU's bdrv_get_default_bitmap_granularity: the cluster size bdrv_get_info finds (through raw and filters), clamped to 4 KiB … 64 KiB.</summary>
    private static long DefaultGranularity(BlockNode n) =>
        GetInfo(n) is { ClusterSize: > 0 } info ? Math.Clamp(info.ClusterSize, BitmapGranularityFromClusterMin, BitmapGranularityDefault) : BitmapGranularityDefault;

    /// <summary>Longest bitmap name.</summary>
    public const int BitmapNameLengthMax = 1023;
}
