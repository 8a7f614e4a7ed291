using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// External snapshots (blockdev-snapshot, blockdev-snapshot-sync): the overlay takes the old top as its
/// backing and every parent of the old top moves to it (<c>bdrv_append</c>, refreshed at once); the old
/// top is reopened read-only at commit.
/// </summary>
public static class Snapshots
{
    /// <summary>blockdev-snapshot: <paramref name="overlay"/> must be an unused, backing-less node.</summary>
    public static Step External(Tx tx, string node, string overlay)
    {
        ArgumentNullException.ThrowIfNull(tx);
        var g = tx.Graph;
        if (g.Live(node) is null) return new(tx, Lookup(node));
        var busy = Blockers.Find(g, node);
        if (busy is not null) return new(tx, busy);
        if (g.Live(overlay) is null) return new(tx, Lookup(overlay));
        return AppendOverlay(tx, node, overlay);
    }

    /// <summary>blockdev-snapshot-sync: open a new qcow2 overlay on the named file and append it.</summary>
    public static Step ExternalSync(Tx tx, BlockdevSnapshotSync s)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(s);
        // device names a BlockBackend, and Verified's are all anonymous: only node-name can find the node.
        var target = s.NodeName ?? "";
        if (tx.Graph.Live(target) is not { } old) return new(tx, Results.Fail($"Cannot find device='{s.Device ?? ""}' nor node-name='{s.NodeName ?? ""}'"));
        var busy = Blockers.Find(tx.Graph, target);
        if (busy is not null) return new(tx, busy);
        if (s.NodeName is not null && s.SnapshotNodeName is null) return new(tx, Results.Fail("New overlay node-name missing"));
        if (s.SnapshotNodeName is { } sn)
        {
            if (tx.Graph.Find(sn) is not null) return new(tx, Results.Fail("New overlay node-name already in use"));
            if (!Names.IsWellFormed(sn)) return new(tx, Results.Fail($"Invalid node-name: '{sn}'"));
        }
        if (s.Format != "qcow2")
            return new(tx, Results.Fail(BlockdevSchema.Get(s.Format) is null ? $"Unknown file format '{s.Format}'" : $"Backing file not supported for file format '{s.Format}'"));
        // QEMU creates the overlay's image file first (absolute-paths mode): from now on it holds a qcow2 image.
        // (Were the transaction to fail later, the file would stay qcow2 while this graph change is rolled back.)
        // Its header names the old top by its file name, and the old top's format.
        if (s.Mode == "absolute-paths")
        {
            var named = Images.PlainFileName(tx.Graph, target) is { } plain
                ? tx.Graph.HeaderBackings.SetItem(s.SnapshotFile, new HeaderBacking(plain, old.Driver)) : tx.Graph.HeaderBackings.Remove(s.SnapshotFile);
            tx = tx.On(tx.Graph with { ImageFormats = tx.Graph.ImageFormats.SetItem(s.SnapshotFile, Images.Qcow2), HeaderBackings = named });
        }
        var fileOpts = new BlockdevOptions("file", null, ValueMap<string>.Empty.SetItem("filename", System.Text.Json.JsonSerializer.Serialize(s.SnapshotFile)), ValueList<ChildOption>.Empty);
        var overlayOpts = new BlockdevOptions(s.Format, s.SnapshotNodeName, ValueMap<string>.Empty,
            // external_snapshot_prepare opens the overlay with BDRV_O_NO_BACKING: not the backing its header names.
            ValueList<ChildOption>.From([new ChildOption("file", new BlockdevRefInline(fileOpts)), new ChildOption("backing", null)]));
        var opened = Operations.Open(tx, overlayOpts, old.ReadOnly, false, null);
        if (opened.Error is not null) return new(opened.Tx, opened.Error);
        // Only the action held the new overlay; its reference goes in the clean phase, so an overlay
        // over a node without parents is deleted again (observed on QEMU 7.2).
        var r = AppendOverlay(opened.Tx, target, opened.Name);
        return r.Error is null ? new(r.Tx with { Cleans = r.Tx.Cleans.Add(new DeleteIfUnreferenced(opened.Name)) }, null) : r;
    }

    private static QmpError Lookup(string name) => Results.Fail($"Cannot find device='{name}' nor node-name='{name}'");

    private static Step AppendOverlay(Tx tx, string top, string overlay)
    {
        var g = tx.Graph;
        // "In use" means someone reads the overlay, whatever kind of parent it is.
        if ((Permissions.Cumulative(g, overlay).Perm & Perm.ConsistentRead) != 0) return new(tx, Results.Fail("The overlay is already in use"));
        var ov = g.Nodes[overlay];
        if (Drivers.IsFilter(ov.Driver)) return new(tx, Results.Fail("Filters cannot be used as overlays"));
        if (g.ChildEdge(overlay, "backing") is not null) return new(tx, Results.Fail("The overlay already has a backing image"));
        if (!Drivers.SupportsBacking(ov.Driver)) return new(tx, Results.Fail("The overlay does not support backing images"));
        if (g.Reaches(top, overlay)) return new(tx, Results.Fail($"Making '{top}' a backing child of '{overlay}' would create a cycle"));

        var r = Operations.Append(tx, overlay, top);
        return r.Error is null ? new(r.Tx with { Commits = r.Tx.Commits.Add(new ReopenReadOnly(top)) }, null) : r;
    }
}
