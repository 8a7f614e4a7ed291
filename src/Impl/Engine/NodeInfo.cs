using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Impl.Rules;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>
/// query-named-block-nodes as QEMU 7.2 answers it (<c>BlockDeviceInfo</c> with its <c>ImageInfo</c>): each
/// node's file name as <c>bdrv_refresh_filename</c> builds it (a plain file name where opening that name
/// would rebuild the same subtree, else <c>json:{…}</c> of the options that matter), the image's sizes and
/// format facts, the cache mode, and the dirty bitmaps, named and internal. Members are inserted in QAPI
/// schema order; the writer puts them in QEMU's hash order.
/// </summary>
public sealed partial class BlockEngine
{
    /// <summary>Options each driver counts as changing its data ("strong"): they force a JSON file name. A trailing dot is a prefix.</summary>
    private static readonly Dictionary<string, string[]> StrongOptions = new(StringComparer.Ordinal)
    {
        ["raw"] = ["offset", "size"],
        ["null-co"] = ["size", "read-zeroes"],
        ["null-aio"] = ["size", "read-zeroes"],
        ["throttle"] = ["throttle-group"],
        ["blkdebug"] = ["config", "inject-error.", "set-state.", "align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard", "max-discard"],
    };

    /// <summary>A node's file names: the exact one (null if none), the full open options, and the one shown.</summary>
    private sealed record FileNames(string? Exact, JsonObject Full, string Filename);

    private JsonArray NamedBlockNodes(bool flat)
    {
        var memo = new Dictionary<BlockNode, FileNames>(ReferenceEqualityComparer.Instance);
        // QEMU lists the newest node first.
        return new JsonArray([.. nodes.Values.OrderByDescending(n => n.Seq).Select(n => (JsonNode)DeviceInfo(n, flat, memo))]);
    }

    private JsonObject DeviceInfo(BlockNode n, bool flat, Dictionary<BlockNode, FileNames> memo)
    {
        var o = new JsonObject
        {
            ["file"] = FileNamesOf(n, memo).Filename,
            ["node-name"] = n.Name,
            ["ro"] = n.ReadOnly,
            ["drv"] = n.DriverName,
        };
        // bs->backing_file is set when a COW child is attached (bdrv_backing_attach): not for a filter's backing.
        if (n.Children.FirstOrDefault(c => (c.Role & Role.Cow) != 0) is { } b) o["backing_file"] = FileNamesOf(b.Node, memo).Filename;
        // bdrv_block_device_info counts the images it nests under "image" (none in the flat listing).
        o["backing_file_depth"] = flat ? 0 : BackingDepth(n);
        o["encrypted"] = false;
        o["detect_zeroes"] = n.Str("detect-zeroes") ?? "off";
        foreach (var k in (string[])["bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"]) o[k] = 0;
        o["image"] = ImageInfo(n, flat, memo);
        o["cache"] = new JsonObject
        {
            ["writeback"] = true,
            ["direct"] = DriverOptions.CacheFlag(n, "direct"),
            ["no-flush"] = DriverOptions.CacheFlag(n, "no-flush"),
        };
        o["write_threshold"] = 0;
        var bitmaps = DirtyBitmaps(n);
        if (bitmaps.Count > 0) o["dirty-bitmaps"] = bitmaps;
        return o;
    }

    private static JsonObject ImageInfo(BlockNode n, bool flat, Dictionary<BlockNode, FileNames> memo)
    {
        var o = new JsonObject { ["filename"] = FileNamesOf(n, memo).Filename, ["format"] = n.DriverName };
        var info = GetInfo(n);
        if (info is { } i) o["dirty-flag"] = i.Dirty;
        if (AllocatedSize(n) is { } actual) o["actual-size"] = actual;
        o["virtual-size"] = n.Length;
        if (info is { ClusterSize: not 0 } ci) o["cluster-size"] = ci.ClusterSize;
        if (n.Driver is IFormatFacts facts && facts.HeaderBackingFile is { } header)
        {
            o["backing-filename"] = header;
            // bdrv_query_image_info leaves it out when no directory can be generated.
            if (FullBackingFilename(n, header, memo).Full is { } full) o["full-backing-filename"] = full;
            if (facts.HeaderBackingFormat is { } fmt) o["backing-filename-format"] = fmt;
        }
        if (!flat && n.Child("backing") is { } b) o["backing-image"] = ImageInfo(b.Node, flat, memo);
        if (n.Driver is IFormatFacts { FormatSpecific: { } spec }) o["format-specific"] = spec.DeepClone();
        return o;
    }

    /// <summary>How many backing images <see cref="ImageInfo"/> nests below <paramref name="n"/> (bounded: graphs are acyclic).</summary>
    private static int BackingDepth(BlockNode n)
    {
        int depth = 0;
        for (var b = n.Child("backing"); b is not null && depth < HeaderBackingDepthMax * 2; b = b.Node.Child("backing")) depth++;
        return depth;
    }

    /// <summary>bdrv_get_info: the driver's own answer, a filter's child's, or none.</summary>
    private static (long ClusterSize, bool Dirty)? GetInfo(BlockNode n)
    {
        if (n.Driver is IFormatFacts f) return (f.ClusterSize, f.Dirty);
        if (n.DriverName is "file" or "qcow2") return (0, false);
        if (n.DriverName == "raw") return n.Child("file") is { } c ? GetInfo(c.Node) : null;
        if (PermRules.IsFilter(n.DriverName)) return Filtered(n) is { } inner ? GetInfo(inner) : null;
        return null;
    }

    /// <summary>bdrv_get_allocated_file_size: host bytes, a filter's child's, or the sum over data and metadata children.</summary>
    private static long? AllocatedSize(BlockNode n)
    {
        if (n.Driver is IAllocatedSize a) return a.AllocatedBytes;
        if (n.DriverName is "null-co" or "null-aio") return 0;
        // A protocol driver without an answer of its own (blkdebug): QEMU's -ENOTSUP, no actual-size.
        if (PermRules.IsProtocol(n.DriverName)) return null;
        if (PermRules.IsFilter(n.DriverName)) return Filtered(n) is { } f ? AllocatedSize(f) : null;
        long sum = 0;
        foreach (var c in n.Children)
        {
            if ((c.Role & (Role.Data | Role.Metadata | Role.Filtered)) == 0) continue;
            // One child that cannot tell makes the sum unknown (bdrv_sum_allocated_file_size returns its error).
            if (AllocatedSize(c.Node) is not { } s) return null;
            sum += s;
        }
        return sum;
    }

    /// <summary>Named and internal bitmaps on the node, newest first, in QEMU's BlockDirtyInfo shape.</summary>
    private JsonArray DirtyBitmaps(BlockNode n)
    {
        var all = n.BitmapList.Select(b => (b.Stamp, Json: new JsonObject
        {
            ["name"] = b.Name, ["count"] = b.Bits?.DirtyBytes ?? 0, ["granularity"] = b.Granularity,
            ["recording"] = b.Enabled, ["busy"] = BitmapBusy(n, b.Name), ["persistent"] = b.Persistent,
        })).ToList();
        // QEMU's optional member, present only when true.
        foreach (var (b, x) in n.BitmapList.Zip(all).Where(p => p.First.Inconsistent)) x.Json["inconsistent"] = true;
        var holders = nodes.Values.Select(x => x.Driver).OfType<IHiddenBitmaps>().Concat(jobs.Values.OfType<IHiddenBitmaps>());
        foreach (var hb in holders.SelectMany(h => h.HiddenBitmaps).Where(x => ReferenceEquals(x.On, n)))
        {
            all.Add((hb.Stamp, new JsonObject
            {
                ["count"] = hb.Count, ["granularity"] = hb.Granularity,
                ["recording"] = hb.Recording, ["busy"] = false, ["persistent"] = false,
            }));
        }
        return new JsonArray([.. all.OrderByDescending(x => x.Stamp).Select(x => (JsonNode)x.Json)]);
    }

    /// <summary>bdrv_refresh_filename, children first.</summary>
    private static FileNames FileNamesOf(BlockNode n, Dictionary<BlockNode, FileNames> memo)
    {
        if (memo.TryGetValue(n, out var known)) return known;
        if (n.Implicit && n.Children.FirstOrDefault() is { } only) return memo[n] = FileNamesOf(only.Node, memo);
        var backing = n.Child("backing");
        // bdrv_backing_overridden: auto_backing_file (the header's name as written, or an implicit backing's file name) against the backing's.
        string? auto = n.AutoBackingFile ?? (n.Driver as IFormatFacts)?.HeaderBackingFile;
        bool backingOverridden = backing is not null ? auto is null || auto != FileNamesOf(backing.Node, memo).Filename : auto is not null;

        var full = new JsonObject();
        bool json = AppendStrongOptions(full, n) | backingOverridden;
        foreach (var c in n.Children)
        {
            if (c == backing && !backingOverridden) continue;
            full[c.Name] = FileNamesOf(c.Node, memo).Full.DeepClone();
        }
        if (backingOverridden && backing is null) full["backing"] = null;

        string? exact = n.DriverName switch
        {
            "file" => n.Str("filename"),
            // null_refresh_filename: any option beyond the driver (latency-ns aside) needs the JSON form.
            "null-co" or "null-aio" => full.Count == 1 ? $"{n.DriverName}://" : null,
            "blkdebug" => BlkdebugName(n, full, memo),
            // Both copy their file child's name (cbw_refresh_filename, snapshot-access's).
            "copy-before-write" or "snapshot-access" => n.Child("file") is { } f ? FileNamesOf(f.Node, memo).Filename : null,
            _ when PermRules.IsFilter(n.DriverName) => null,
            _ => Primary(n) is { } p && FileNamesOf(p, memo).Exact is { } pe && PermRules.IsProtocol(p.DriverName) && !json ? pe : null,
        };
        var names = new FileNames(exact, full, exact ?? "json:" + QmpJsonWriter.Write(full));
        memo[n] = names;
        return names;
    }

    /// <summary>blkdebug's name, <c>blkdebug:CONFIG:IMAGE</c>, when no other option changes it and the image has an exact name.</summary>
    private static string? BlkdebugName(BlockNode n, JsonObject full, Dictionary<BlockNode, FileNames> memo)
    {
        if (n.Child("image") is not { } img || FileNamesOf(img.Node, memo).Exact is not { } imageName) return null;
        if (full.Any(kv => kv.Key is not ("config" or "image" or "x-image" or "driver"))) return null;
        return $"blkdebug:{n.Str("config") ?? ""}:{imageName}";
    }

    /// <summary>A filter's filtered child (file, image, or mirror_top's backing).</summary>
    private static BlockNode? Filtered(BlockNode n) =>
        (n.Children.FirstOrDefault(c => (c.Role & Role.Filtered) != 0) ?? n.Child("file") ?? n.Child("image"))?.Node;

    private static BlockNode? Primary(BlockNode n)
    {
        foreach (var c in n.Children)
        {
            if ((c.Role & Role.Primary) != 0) return c.Node;
        }
        return null;
    }

    /// <summary>
    /// append_strong_runtime_options: driver, filename and the driver's strong options, flattened as QEMU
    /// keeps options (<c>inject-error.0.event</c>). True when a strong option other than driver and filename was given.
    /// </summary>
    private static bool AppendStrongOptions(JsonObject d, BlockNode n)
    {
        var flat = new List<KeyValuePair<string, JsonNode?>>();
        foreach (var kv in n.Options) Flatten(kv.Key, JsonNode.Parse(kv.Value), flat);
        d["driver"] = n.DriverName;
        if (n.Options.TryGetValue("filename", out var fn)) d["filename"] = JsonNode.Parse(fn);
        bool found = false;
        foreach (var opt in StrongOptions.GetValueOrDefault(n.DriverName) ?? [])
        {
            foreach (var kv in flat)
            {
                if (opt.EndsWith('.') ? kv.Key.StartsWith(opt, StringComparison.Ordinal) : kv.Key == opt)
                {
                    d[kv.Key] = kv.Value?.DeepClone();
                    found = true;
                }
            }
        }
        return found;
    }

    private static void Flatten(string prefix, JsonNode? v, List<KeyValuePair<string, JsonNode?>> into)
    {
        switch (v)
        {
            case JsonObject o:
                foreach (var kv in o) Flatten($"{prefix}.{kv.Key}", kv.Value, into);
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++) Flatten($"{prefix}.{i}", a[i], into);
                break;
            default:
                into.Add(new(prefix, v));
                break;
        }
    }
}
