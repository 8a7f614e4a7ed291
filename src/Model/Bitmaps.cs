using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>Dirty bitmaps as graph state: names, granularity, enabled and persistent flags.</summary>
public static class Bitmaps
{
    /// <summary>
    /// QEMU's default granularity for a node without a cluster size of its own, and for one whose cluster size is
    /// 64 KiB: every qcow2 image the campaign makes (Impl follows other cluster sizes, spec/qcow2.md).
    /// </summary>
    public const long DefaultGranularity = 65536;

    /// <summary>Smallest granularity QEMU accepts (the largest is bounded by the schema's uint32).</summary>
    public const long GranularityMin = 512;

    /// <summary>Bitmap names are at most this long (BDRV_BITMAP_MAX_NAME_SIZE).</summary>
    public const int NameLengthMax = 1023;

    /// <summary>Applies one bitmap command or action.</summary>
    public static Step Apply(Tx tx, BitmapCommand c)
    {
        ArgumentNullException.ThrowIfNull(tx);
        ArgumentNullException.ThrowIfNull(c);
        var g = tx.Graph;
        if (c.Op == BitmapOp.Add)
        {
            // QEMU's order (block_dirty_bitmap_add, then bdrv_create_dirty_bitmap).
            if (c.Bitmap.Length == 0) return new(tx, Results.Fail("Bitmap name cannot be empty"));
            if (g.Live(c.Node) is not { } n) return new(tx, Results.Fail($"Cannot find device='{c.Node}' nor node-name='{c.Node}'"));
            var gran = c.Granularity ?? DefaultGranularity;
            if (gran < GranularityMin || (gran & (gran - 1)) != 0)
                return new(tx, Results.Fail("Granularity must be power of 2 and at least 512"));
            if (c.Persistent && n.Driver != "qcow2")
                return new(tx, Results.Fail($"Can't store persistent bitmaps to {n.Name}: Operation not supported"));
            if (n.Bitmaps.Any(b => b.Name == c.Bitmap)) return new(tx, Results.Fail($"Bitmap already exists: {c.Bitmap}"));
            if (c.Bitmap.Length > NameLengthMax) return new(tx, Results.Fail($"Bitmap name too long: {c.Bitmap}"));
            // QEMU keeps a node's bitmaps newest first.
            var bm = new Bitmap(c.Bitmap, gran, !c.Disabled, c.Persistent);
            return new(tx.On(g.With(n with { Bitmaps = n.Bitmaps.Insert(0, bm) })), null);
        }
        var (node, idx, err) = Lookup(g, c.Node, c.Bitmap);
        if (err is not null) return new(tx, err);
        var bitmap = node!.Bitmaps[idx];
        if (Busy(g, node, c.Bitmap)) return new(tx, Results.Fail(BusyText(c.Bitmap)));
        switch (c.Op)
        {
            case BitmapOp.Remove:
                return new(tx.On(g.With(node with { Bitmaps = node.Bitmaps.RemoveAt(idx) })), null);
            case BitmapOp.Enable:
            case BitmapOp.Disable:
                return new(tx.On(g.With(node with { Bitmaps = node.Bitmaps.SetItem(idx, bitmap with { Enabled = c.Op == BitmapOp.Enable }) })), null);
            case BitmapOp.Clear:
                return new(tx, null); // contents are not graph state
            case BitmapOp.Merge:
                foreach (var src in c.Sources ?? ValueList<BitmapRef>.Empty)
                {
                    var (srcNode, _, e) = Lookup(g, src.Node ?? c.Node, src.Name);
                    if (e is not null) return new(tx, e);
                    if (Busy(g, srcNode!, src.Name)) return new(tx, Results.Fail(BusyText(src.Name)));
                }
                return new(tx, null);
            default:
                throw new ArgumentOutOfRangeException(nameof(c));
        }
    }

    /// <summary>A bitmap is busy while an export serves it (QEMU's bdrv_dirty_bitmap_set_busy): no command may change or remove it.</summary>
    public static bool Busy(Graph g, Node node, string name) =>
        g.Exports.Values.Any(e => e.BitmapNodeSeq == node.Seq && e.Bitmaps.Contains(name));

    /// <summary>QEMU's text for a busy bitmap.</summary>
    public static string BusyText(string name) => $"Bitmap '{name}' is currently in use by another operation and cannot be used";

    private static (Node? Node, int Index, QmpError? Error) Lookup(Graph g, string node, string name)
    {
        if (g.Live(node) is not { } n) return (null, -1, Results.Fail($"Node '{node}' not found"));
        int i = 0;
        while (i < n.Bitmaps.Count && n.Bitmaps[i].Name != name) i++;
        if (i == n.Bitmaps.Count) i = -1;
        return i < 0 ? (null, -1, Results.Fail($"Dirty bitmap '{name}' not found")) : (n, i, null);
    }
}
