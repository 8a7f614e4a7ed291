using System.Text.Json;
using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>Devices, exports and QOM objects.</summary>
public sealed partial class BlockEngine
{
    private QmpError? DeviceAdd(DeviceAdd c)
    {
        if (devices.ContainsKey(c.Id)) return QmpError.Generic($"Duplicate device ID '{c.Id}'");
        if (c.Driver == "scsi-hd" && !devices.Values.Any(d => d.Model is "virtio-scsi-pci" or "virtio-scsi"))
            return QmpError.Generic("No 'SCSI' bus found for device 'scsi-hd'");
        bool block = c.Driver is "virtio-blk-pci" or "scsi-hd";
        if (block && c.Drive is null) return QmpError.Generic("drive property not set");
        BlockNode? node = null;
        if (c.Drive is not null && !nodes.TryGetValue(c.Drive, out node))
            return QmpError.Generic($"Property '{(c.Driver == "virtio-blk-pci" ? "virtio-blk-device" : c.Driver)}.drive' can't find value '{c.Drive}'");
        var dev = new DeviceParent(c.Id, c.Driver, c.ShareRw, node is { ReadOnly: true }, NextSeq(), Io);
        if (node is not null)
        {
            var err = AttachRoot(dev, node);
            if (err is not null) return err;
        }
        devices.Add(dev.Id, dev);
        return null;
    }

    private QmpError? DeviceDel(string id)
    {
        if (!devices.TryGetValue(id, out var dev)) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{id}' not found");
        DetachRoot(dev);
        devices.Remove(id);
        return null;
    }

    private static string QomModel(DeviceParent d, string path) =>
        path == d.GraphName && d.Model == "virtio-blk-pci" ? "virtio-blk-device" : d.Model;

    private QmpError? QomSet(QomSet c)
    {
        if (ResolveDevice(c.Path) is not { } dev) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{c.Path}' not found");
        if (c.Property != "drive" || !dev.IsBlock) return QmpError.Generic($"Property '{QomModel(dev, c.Path)}.{c.Property}' not found");
        if (JsonNode.Parse(c.ValueJson) is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
            return QmpError.Generic($"Invalid parameter type for '{c.Property}', expected: string");
        var target = v.GetValue<string>();
        if (!nodes.TryGetValue(target, out var to)) return QmpError.Generic($"Cannot find device='' nor node-name='{target}'");
        var edge = dev.Root!;
        if (edge.Node == to) return null; // QEMU 7.2 asserts (aborts) here; Verified leaves the edge be
        var tran = new UndoLog(Services.Mutation);
        var refresh = new List<BlockNode> { edge.Node };
        ReplaceChild(tran, edge, to, refresh);
        var err = Rules.Refresher.Refresh(Enumerable.Reverse(refresh).ToList(), tran);
        if (err is null) tran.Commit();
        else tran.Abort();
        return err;
    }

    private QmpError? QomGetCheck(QomGet q)
    {
        if (ResolveDevice(q.Path) is not { } dev) return new QmpError(ErrorClass.DeviceNotFound, $"Device '{q.Path}' not found");
        return q.Property != "drive" || !dev.IsBlock ? QmpError.Generic($"Property '{QomModel(dev, q.Path)}.{q.Property}' not found") : null;
    }

    private string QomGetValue(QomGet q) => ResolveDevice(q.Path)?.Root?.Node.Name ?? "";

    /// <summary>QEMU 7.2's order: the export attaches sharing everything, the NBD checks follow, then it stops sharing resize.</summary>
    private QmpError? ExportAdd(BlockExportAdd c)
    {
        if (!Names.IsWellFormed(c.Id)) return QmpError.Generic("Invalid block export id");
        if (exports.ContainsKey(c.Id)) return QmpError.Generic($"Block export id '{c.Id}' is already in use");
        if (!nodes.TryGetValue(c.NodeName, out var node)) return QmpError.Generic($"Cannot find device='' nor node-name='{c.NodeName}'");
        if (c.Writable && node.ReadOnly) return QmpError.Generic("Cannot export read-only node as writable");
        var name = c.ExportName ?? c.NodeName;
        var exp = new ExportParent(c.Id, name, c.Writable, c.Description, c.Bitmaps, NextSeq(), Io) { AllocationDepth = c.AllocationDepth, Size = node.Length, BitmapNode = node };
        var tran = new UndoLog(Services.Mutation);
        var edge = AttachRootEdge(tran, exp, node, exp.Wants.Perm, Perm.All);
        var err = Rules.Refresher.Refresh([node], tran)
            ?? (!nbdServerRunning ? QmpError.Generic("NBD server not running") : null)
            ?? (exports.Values.Any(e => e.ExportName == name) ? QmpError.Generic($"NBD server already has export named '{name}'") : null);
        if (err is null)
        {
            edge.Shared = exp.Wants.Shared;
            err = Rules.Refresher.Refresh([node], tran);
        }
        // nbd_export_create, per bitmap in order: found, not busy, not enabled under a read-only export of a writable node.
        foreach (var b in c.Bitmaps)
        {
            var bm = node.BitmapList.Find(x => x.Name == b);
            if (err is not null) break;
            if (bm is null) err = QmpError.Generic($"Bitmap '{b}' is not found");
            else if (BitmapBusy(node, b)) err = QmpError.Generic(BitmapBusyText(b));
            else if (bm.Inconsistent) err = QmpError.Generic(BitmapInconsistentText(b));
            else if (!c.Writable && !node.ReadOnly && bm.Enabled) err = QmpError.Generic($"Enabled bitmap '{b}' incompatible with readonly export");
        }
        if (err is not null)
        {
            tran.Abort();
            return err;
        }
        tran.Commit();
        exports.Add(c.Id, exp);
        return null;
    }

    private QmpError? ExportDel(string id)
    {
        if (!exports.TryGetValue(id, out var exp)) return QmpError.Generic($"Export '{id}' is not found");
        DetachRoot(exp);
        exports.Remove(id);
        return null;
    }

    private QmpError? StopNbd()
    {
        if (!nbdServerRunning) return QmpError.Generic("NBD server not running");
        foreach (var id in exports.Keys.Order(StringComparer.Ordinal).ToList()) ExportDel(id);
        nbdServerRunning = false;
        return null;
    }

    private QmpError? ObjectAdd(ObjectAdd o)
    {
        if (!Names.IsWellFormed(o.Id)) return QmpError.Generic("Parameter 'id' expects an identifier");
        // QEMU 7.2 sets the properties (checking the limits) before it adds the object under its id.
        if (o.QomType == "throttle-group")
        {
            var (_, bad) = ThrottleLimits.Parse(o.Props.TryGetValue("limits", out var l) ? l : null);
            if (bad is not null) return QmpError.Generic(bad);
        }
        if (objects.ContainsKey(o.Id)) return QmpError.Generic($"attempt to add duplicate property '{o.Id}' to object (type 'container')");
        objects.Add(o.Id, new QomObjectEntry(o.Id, o.QomType, o.Props, o.QomType == "throttle-group" ? new ThrottleGroup(o.Id, o.Props) : null));
        return null;
    }

    /// <summary>x-blockdev-change: quorum only, and there is no quorum driver.</summary>
    private QmpError Change(BlockdevChange c)
    {
        if (!nodes.ContainsKey(c.Parent)) return QmpError.Generic($"Cannot find device='{c.Parent}' nor node-name='{c.Parent}'");
        if (c.Child is null && c.Node is null) return QmpError.Generic("Either child or node must be specified");
        if (c.Child is not null && c.Node is not null) return QmpError.Generic("The parameters child and node are in conflict");
        if (c.Child is not null)
        {
            return nodes[c.Parent].Child(c.Child) is null ? QmpError.Generic($"Node '{c.Parent}' does not have child '{c.Child}'")
                : QmpError.Generic($"The node {c.Parent} does not support removing a child");
        }
        return nodes.ContainsKey(c.Node!) ? QmpError.Generic($"The node {c.Parent} does not support adding a child") : QmpError.Generic($"Node '{c.Node}' not found");
    }

    private QmpError? ObjectDel(string id)
    {
        if (!objects.TryGetValue(id, out var o)) return QmpError.Generic($"object '{id}' not found");
        if (o.Group is { Members: > 0 })
            return QmpError.Generic($"object '{id}' is in use, can not be deleted");
        objects.Remove(id);
        return null;
    }
}
