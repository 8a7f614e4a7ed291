using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>
/// Writes commands back as QMP requests (<c>{"execute": …, "arguments": …}</c>), so that any command
/// sequence — a shrunk counterexample, say — becomes a scenario file a QMP client can replay.
/// Parsing what is written gives the same command back.
/// </summary>
public static class CommandWriter
{
    /// <summary>The QMP request for <paramref name="c"/>.</summary>
    public static JsonObject ToQmp(Command c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var args = Arguments(c);
        var o = new JsonObject { ["execute"] = c.Name };
        if (args.Count > 0) o["arguments"] = args;
        return o;
    }

    /// <summary>The <c>arguments</c> object (or a transaction action's <c>data</c>).</summary>
    public static JsonObject Arguments(Command c)
    {
        ArgumentNullException.ThrowIfNull(c);
        return c switch
        {
            BlockdevAdd a => a.Options.ToJson(),
            BlockdevDel d => new JsonObject { ["node-name"] = d.NodeName },
            BlockdevReplace r => Replace(r),
            BlockdevReopen r => new JsonObject { ["options"] = new JsonArray([.. r.Options.Select(o => (JsonNode)o.ToJson())]) },
            Transaction t => Transaction(t),
            AbortAction => [],
            DeviceAdd d => Device(d),
            DeviceDel d => new JsonObject { ["id"] = d.Id },
            QomSet q => new JsonObject { ["path"] = q.Path, ["property"] = q.Property, ["value"] = JsonNode.Parse(q.ValueJson) },
            QomGet q => new JsonObject { ["path"] = q.Path, ["property"] = q.Property },
            NbdServerStart s => new JsonObject { ["addr"] = JsonNode.Parse(s.AddrJson) },
            NbdServerStop => [],
            BlockExportAdd e => Export(e),
            BlockExportDel e => new JsonObject { ["id"] = e.Id, ["mode"] = e.Mode },
            ObjectAdd o => Object(o),
            ObjectDel o => new JsonObject { ["id"] = o.Id },
            BlockdevChange b => Change(b),
            BlockdevSnapshot s => new JsonObject { ["node"] = s.Node, ["overlay"] = s.Overlay },
            BlockdevSnapshotSync s => SnapshotSync(s),
            BitmapCommand b => Bitmap(b),
            Query { Flat: true } => new JsonObject { ["flat"] = true },
            Query => [],
            Jobs.BlockdevBackup b => Backup(b),
            Jobs.JobCommand j => Job(j),
            Jobs.BlockdevMirror m => Mirror(m),
            Jobs.BlockdevCreate b => (JsonObject)b.Arguments.DeepClone(),
            _ => throw new ArgumentException($"cannot write {c.Name}", nameof(c)),
        };
    }

    private static JsonObject Backup(Jobs.BlockdevBackup b)
    {
        var o = JobStart(b.JobId, b.Device, b.Target, b.Sync, b.Speed, b.AutoFinalize, b.AutoDismiss, b.FilterNodeName);
        if (b.Bitmap is not null) o["bitmap"] = b.Bitmap;
        if (b.BitmapMode is not null) o["bitmap-mode"] = b.BitmapMode;
        if (b.OnSourceError != Jobs.BlockdevBackup.OnErrorDefault) o["on-source-error"] = b.OnSourceError;
        if (b.OnTargetError != Jobs.BlockdevBackup.OnErrorDefault) o["on-target-error"] = b.OnTargetError;
        return o;
    }

    private static JsonObject Mirror(Jobs.BlockdevMirror m) =>
        JobStart(m.JobId, m.Device, m.Target, m.Sync, m.Speed, m.AutoFinalize, m.AutoDismiss, m.FilterNodeName);

    /// <summary>The members blockdev-backup and blockdev-mirror share; defaults left out.</summary>
    private static JsonObject JobStart(string? jobId, string device, string target, string sync, long? speed, bool autoFinalize, bool autoDismiss, string? filter)
    {
        var o = new JsonObject();
        if (jobId is not null) o["job-id"] = jobId;
        o["device"] = device;
        o["target"] = target;
        o["sync"] = sync;
        if (speed is { } sp) o["speed"] = sp;
        if (!autoFinalize) o["auto-finalize"] = false;
        if (!autoDismiss) o["auto-dismiss"] = false;
        if (filter is not null) o["filter-node-name"] = filter;
        return o;
    }

    private static JsonObject Job(Jobs.JobCommand j)
    {
        var o = new JsonObject { [j.IsBlockJobCommand && j.Command is not "block-job-finalize" and not "block-job-dismiss" ? "device" : "id"] = j.Id };
        if (j.Verb == Jobs.JobVerb.SetSpeed) o["speed"] = j.Speed;
        if (j.Force) o["force"] = true;
        return o;
    }

    private static JsonObject Change(BlockdevChange b)
    {
        var o = new JsonObject { ["parent"] = b.Parent };
        if (b.Child is not null) o["child"] = b.Child;
        if (b.Node is not null) o["node"] = b.Node;
        return o;
    }

    private static JsonObject Replace(BlockdevReplace r)
    {
        var o = new JsonObject();
        switch (r.Parent)
        {
            case ReplaceDriverParent d: o["parent-type"] = "driver"; o["node-name"] = d.NodeName; o["child"] = d.Child; break;
            case ReplaceQdevParent q: o["parent-type"] = "qdev"; o["qdev-id"] = q.QdevId; break;
            case ReplaceExportParent x: o["parent-type"] = "export"; o["export-id"] = x.ExportId; break;
        }
        o["new-child"] = r.NewChild;
        return o;
    }

    private static JsonObject Transaction(Transaction t)
    {
        var o = new JsonObject
        {
            ["actions"] = new JsonArray([.. t.Actions.Select(a => (JsonNode)new JsonObject { ["type"] = a.Name, ["data"] = Arguments(a) })]),
        };
        if (t.CompletionMode != "individual") o["properties"] = new JsonObject { ["completion-mode"] = t.CompletionMode };
        return o;
    }

    private static JsonObject Device(DeviceAdd d)
    {
        var o = new JsonObject { ["driver"] = d.Driver, ["id"] = d.Id };
        if (d.Drive is not null) o["drive"] = d.Drive;
        if (d.ShareRw) o["share-rw"] = true;
        return o;
    }

    private static JsonObject Export(BlockExportAdd e)
    {
        var o = new JsonObject { ["type"] = "nbd", ["id"] = e.Id, ["node-name"] = e.NodeName };
        if (e.ExportName is not null) o["name"] = e.ExportName;
        if (e.Writable) o["writable"] = true;
        if (e.Description is not null) o["description"] = e.Description;
        if (e.Bitmaps.Count > 0) o["bitmaps"] = new JsonArray([.. e.Bitmaps.Select(b => (JsonNode)b)]);
        if (e.AllocationDepth) o["allocation-depth"] = true;
        return o;
    }

    private static JsonObject Object(ObjectAdd a)
    {
        var o = new JsonObject { ["qom-type"] = a.QomType, ["id"] = a.Id };
        foreach (var kv in a.Props) o[kv.Key] = JsonNode.Parse(kv.Value);
        return o;
    }

    private static JsonObject SnapshotSync(BlockdevSnapshotSync s)
    {
        var o = new JsonObject();
        if (s.Device is not null) o["device"] = s.Device;
        if (s.NodeName is not null) o["node-name"] = s.NodeName;
        o["snapshot-file"] = s.SnapshotFile;
        if (s.SnapshotNodeName is not null) o["snapshot-node-name"] = s.SnapshotNodeName;
        o["format"] = s.Format;
        o["mode"] = s.Mode;
        return o;
    }

    private static JsonObject Bitmap(BitmapCommand b)
    {
        var o = new JsonObject { ["node"] = b.Node };
        if (b.Op == BitmapOp.Merge)
        {
            o["target"] = b.Bitmap;
            o["bitmaps"] = new JsonArray([.. (b.Sources ?? ValueList<BitmapRef>.Empty).Select(s => s.Node is null
                ? (JsonNode)s.Name : new JsonObject { ["node"] = s.Node, ["name"] = s.Name })]);
            return o;
        }
        o["name"] = b.Bitmap;
        if (b.Op != BitmapOp.Add) return o;
        if (b.Granularity is { } g) o["granularity"] = g;
        if (b.Persistent) o["persistent"] = true;
        if (b.Disabled) o["disabled"] = true;
        return o;
    }
}
