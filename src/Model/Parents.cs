using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>Devices: root parents whose perms follow their model (QEMU's blkconf_apply_backend_options).</summary>
public static class Devices
{
    /// <summary>A device by id or by QOM path (<c>/machine/peripheral/ID</c>, or the virtio backend's path).</summary>
    public static Device? Resolve(Graph g, string idOrPath)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(idOrPath);
        if (g.Devices.TryGetValue(idOrPath, out var d)) return d;
        return g.Devices.Values.FirstOrDefault(x => $"/machine/peripheral/{x.Id}" == idOrPath || x.BackendName == idOrPath);
    }

    /// <summary>The QOM type an error names: the virtio backend's path is a virtio-blk-device.</summary>
    public static string QomModel(Device d, string path)
    {
        ArgumentNullException.ThrowIfNull(d);
        return path == d.BackendName && d.Model == "virtio-blk-pci" ? "virtio-blk-device" : d.Model;
    }

    /// <summary>What a device needs and shares: read (and write unless read-only); writers only with share-rw; resize always shared.</summary>
    public static (Perm Perm, Perm Shared) Perms(Device d)
    {
        ArgumentNullException.ThrowIfNull(d);
        var perm = Perm.ConsistentRead | (d.ReadOnly ? Perm.None : Perm.Write);
        var shared = Perm.ConsistentRead | Perm.WriteUnchanged | Perm.Resize | (d.ShareRw ? Perm.Write : Perm.None);
        return (perm, shared);
    }

    /// <summary>device_add: a controller, or a block device attached to its drive.</summary>
    public static Result<Graph> Add(Graph g, DeviceAdd c)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(c);
        if (g.Devices.ContainsKey(c.Id)) return Results.Fail($"Duplicate device ID '{c.Id}'");
        if (c.Driver == "scsi-hd" && !g.Devices.Values.Any(d => d.Model is "virtio-scsi-pci" or "virtio-scsi"))
            return Results.Fail("No 'SCSI' bus found for device 'scsi-hd'");
        bool block = c.Driver is "virtio-blk-pci" or "scsi-hd";
        if (block && c.Drive is null) return Results.Fail("drive property not set");
        Node? node = null;
        if (c.Drive is not null && (node = g.Find(c.Drive)) is null)
            return Results.Fail($"Property '{(c.Driver == "virtio-blk-pci" ? "virtio-blk-device" : c.Driver)}.drive' can't find value '{c.Drive}'");
        var (g2, seq) = g.TakeSeq();
        // A device on a read-only node becomes read-only itself.
        var dev = new Device(c.Id, c.Driver, c.ShareRw, node is { ReadOnly: true }, seq);
        g2 = g2 with { Devices = g2.Devices.SetItem(dev.Id, dev) };
        if (node is null) return g2;
        var (perm, shared) = Perms(dev);
        return Operations.AttachRoot(g2, new DeviceParent(dev.Id), node.Name, perm, shared);
    }

    /// <summary>device_del: with no guest to ask, the device goes at once and its node is released.</summary>
    public static Result<Graph> Del(Graph g, string id)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!g.Devices.ContainsKey(id)) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{id}' not found");
        g = Operations.DetachRoot(g, new DeviceParent(id));
        return g with { Devices = g.Devices.Remove(id) };
    }

    /// <summary>qom-set PATH drive NODE: move a device onto another node (<c>blk_replace_bs</c>).</summary>
    public static Result<Graph> SetDrive(Graph g, QomSet c, long nameCounter)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(c);
        if (Resolve(g, c.Path) is not { } dev) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{c.Path}' not found");
        if (c.Property != "drive" || !dev.IsBlock) return Results.Fail($"Property '{QomModel(dev, c.Path)}.{c.Property}' not found");
        var value = System.Text.Json.Nodes.JsonNode.Parse(c.ValueJson);
        if (value is not System.Text.Json.Nodes.JsonValue v || v.GetValueKind() != System.Text.Json.JsonValueKind.String)
            return Results.Fail($"Invalid parameter type for '{c.Property}', expected: string");
        var target = v.GetValue<string>();
        if (g.Find(target) is null) return Results.Fail($"Cannot find device='' nor node-name='{target}'");
        var edge = g.RootEdge(new DeviceParent(dev.Id))!;
        // QEMU 7.2 aborts on an edge moved to the node it is on; Verified leaves it be.
        if (edge.Child == target) return g;
        var tx = Operations.ReplaceChild(Tx.Begin(g, nameCounter).NeedsRefresh(edge.Child), edge, target);
        var r = Refresh.Nodes(tx.Graph, tx.RefreshList, committed: g);
        return r.Ok ? Operations.Commit(tx.On(r.Get())) : r;
    }
}

/// <summary>NBD exports: root parents reading (and writing if writable) that share all but resize.</summary>
public static class Exports
{
    /// <summary>Export perms as QEMU 7.2 takes them.</summary>
    public static (Perm Perm, Perm Shared) Perms(bool writable) =>
        (Perm.ConsistentRead | (writable ? Perm.Write : Perm.None), Perm.ConsistentRead | Perm.Write | Perm.WriteUnchanged);

    /// <summary>
    /// block-export-add type=nbd in QEMU 7.2's order (<c>blk_exp_add</c>, then <c>nbd_export_create</c>): the
    /// export attaches sharing everything, the NBD checks follow, then it stops sharing resize.
    /// </summary>
    public static Result<Graph> Add(Graph g, BlockExportAdd c)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(c);
        if (!Names.IsWellFormed(c.Id)) return Results.Fail("Invalid block export id");
        if (g.Exports.ContainsKey(c.Id)) return Results.Fail($"Block export id '{c.Id}' is already in use");
        if (g.Find(c.NodeName) is not { } node) return Results.Fail($"Cannot find device='' nor node-name='{c.NodeName}'");
        if (c.Writable && node.ReadOnly) return Results.Fail("Cannot export read-only node as writable");
        var name = c.ExportName ?? c.NodeName;
        var (g2, seq) = g.TakeSeq();
        g2 = g2 with { Exports = g2.Exports.SetItem(c.Id, new Export(c.Id, name, c.Writable, c.Description, c.Bitmaps, seq, node.Seq)) };
        var (perm, shared) = Perms(c.Writable);
        var attached = Operations.AttachRoot(g2, new ExportParent(c.Id), node.Name, perm, Perm.All);
        if (!attached.Ok) return attached;
        if (!g.NbdServerRunning) return Results.Fail("NBD server not running");
        if (g.Exports.Values.Any(e => e.ExportName == name)) return Results.Fail($"NBD server already has export named '{name}'");
        var g3 = attached.Get();
        var edge = g3.RootEdge(new ExportParent(c.Id))!;
        var narrowed = Refresh.Subtree(g3.Replace(edge, edge with { Shared = shared }), node.Name, g);
        if (!narrowed.Ok) return narrowed;
        // nbd_export_create, per bitmap in order: found, not busy (exported elsewhere), and not enabled
        // under a read-only export of a writable node (its contents would change under the client).
        foreach (var b in c.Bitmaps)
        {
            if (node.Bitmaps.FirstOrDefault(x => x.Name == b) is not { } bm) return Results.Fail($"Bitmap '{b}' is not found");
            if (Bitmaps.Busy(g, node, b)) return Results.Fail(Bitmaps.BusyText(b));
            if (!c.Writable && !node.ReadOnly && bm.Enabled) return Results.Fail($"Enabled bitmap '{b}' incompatible with readonly export");
        }
        return narrowed;
    }

    /// <summary>block-export-del: with no client connected the export goes at once.</summary>
    public static Result<Graph> Del(Graph g, string id)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!g.Exports.ContainsKey(id)) return Results.Fail($"Export '{id}' is not found");
        g = Operations.DetachRoot(g, new ExportParent(id));
        return g with { Exports = g.Exports.Remove(id) };
    }

    /// <summary>nbd-server-stop: every NBD export goes with the server.</summary>
    public static Result<Graph> StopServer(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!g.NbdServerRunning) return Results.Fail("NBD server not running");
        foreach (var id in g.Exports.Keys.ToList()) g = Del(g, id).Get();
        return g with { NbdServerRunning = false };
    }
}
