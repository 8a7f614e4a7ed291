using Verified.Impl.Graph;
using Verified.Impl.Rules;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>blockdev-reopen and the internal read-only reopen of external snapshots.</summary>
public sealed partial class BlockEngine
{
    private static readonly HashSet<string> ReopenChangeable = new(StringComparer.Ordinal) { "read-only", "auto-read-only", "detect-zeroes", "discard" };

    private QmpError? Reopen(IReadOnlyList<BlockdevOptions> list)
    {
        var tran = new UndoLog(Services.Mutation);
        var refresh = new List<BlockNode>();
        var wasWritable = new Dictionary<BlockNode, bool>();
        var newOptions = new List<(BlockNode, ValueMap<string>)>();
        foreach (var o in list)
        {
            if (o.NodeName is not { } name) { tran.Abort(); return QmpError.Generic("node-name not specified"); }
            if (!nodes.TryGetValue(name, out var node)) { tran.Abort(); return QmpError.Generic($"Failed to find node with node-name='{name}'"); }
            var err = (PermRules.Reopenable(node.DriverName) ? null
                    : QmpError.Generic($"Block format '{node.DriverName}' used by node '{name}' does not support reopening files"))
                ?? ReopenChildren(tran, node, o, refresh) ?? ReopenOptionsCheck(node, o);
            if (err is not null) { tran.Abort(); return err; }
            SetReadOnlyCascade(tran, node, o.ReadOnly ?? false, refresh, wasWritable);
            newOptions.Add((node, o.Scalars));
        }
        var rerr = Refresher.Refresh(Enumerable.Reverse(refresh).ToList(), tran, n => wasWritable.TryGetValue(n, out var w) ? w : n.Writable);
        if (rerr is not null) { tran.Abort(); return rerr; }
        foreach (var (node, opts) in newOptions)
        {
            var old = node.Options;
            node.Options = opts;
            tran.Add(abort: () => node.Options = old);
        }
        tran.Commit();
        return null;
    }

    private static QmpError? ReopenOptionsCheck(BlockNode node, BlockdevOptions o)
    {
        foreach (var f in BlockdevSchema.Get(node.DriverName)!.ChildFields)
        {
            if (f.Name is "file" or "backing") continue;
            if (o.Child(f.Name)?.Ref is not BlockdevRefName n || node.Child(f.Name)?.Node.Name != n.Name)
                return QmpError.Generic($"Cannot change the option '{f.Name}'");
        }
        if (o.Driver != node.DriverName) return QmpError.Generic("Cannot change the option 'driver'");
        var keys = new SortedSet<string>(node.Options.Keys, StringComparer.Ordinal);
        keys.UnionWith(o.Scalars.Keys);
        foreach (var k in keys)
        {
            if (!ReopenChangeable.Contains(k) && node.Options.GetOr(k, "") != o.Scalars.GetOr(k, ""))
                return QmpError.Generic($"Cannot change the option '{k}'");
        }
        return null;
    }

    /// <summary>
    /// The file/backing changes of one entry: remove the old edge and attach a new one (QEMU's
    /// bdrv_set_file_or_backing_noperm), then queue the node, its old backing and its old file.
    /// </summary>
    private QmpError? ReopenChildren(UndoLog tran, BlockNode node, BlockdevOptions o, List<BlockNode> refresh)
    {
        BlockNode? oldFile = null, oldBacking = null;
        // bdrv_reopen_prepare parses backing before file; other children are plain options.
        foreach (var field in BlockdevSchema.Get(node.DriverName)!.ChildFields.Where(f => f.Name is "file" or "backing").OrderBy(f => f.Name == "file"))
        {
            var current = node.Child(field.Name);
            var given = o.Child(field.Name);
            if (given is null)
            {
                if (current is not null) return QmpError.Generic($"{field.Name} is missing for '{node.Name}'");
                continue;
            }
            BlockNode? target = null;
            switch (given.Ref)
            {
                case null:
                    break;
                case BlockdevRefName n:
                    if (!Live(n.Name, out target)) return QmpError.Generic($"Cannot find device='' nor node-name='{n.Name}'");
                    if (Reaches(target, node)) return QmpError.Generic($"Making '{n.Name}' a {field.Name} child of '{node.Name}' would create a cycle");
                    break;
                default:
                    return QmpError.Generic($"Cannot change the option '{field.Name}'");
            }
            if (current?.Node == target) continue;
            if (current is null && PermRules.IsFilter(node.DriverName))
                return QmpError.Generic($"'{node.Name}' is a {node.DriverName} filter node that does not support a {field.Name} child");
            if (current is not null && Frozen(current) is { } frozen) return frozen;
            if (current is null && field.Name != "backing") return QmpError.Generic("Cannot set file child to format node without file child");
            var role = field.Name == "backing" ? Role.Cow : current!.Role;
            if (current is not null)
            {
                if (field.Name == "backing") oldBacking = current.Node;
                else oldFile = current.Node;
                RemoveChild(tran, current, refresh);
            }
            if (target is not null) AttachChild(tran, node, field.Name, target, role);
        }
        refresh.Add(node);
        if (oldBacking is { Deleted: false }) refresh.Add(oldBacking);
        if (oldFile is { Deleted: false }) refresh.Add(oldFile);
        return null;
    }

    /// <summary>Sets read-only on a node and on the inline children that inherit it (not backing files).</summary>
    private static void SetReadOnlyCascade(UndoLog tran, BlockNode node, bool readOnly, List<BlockNode> refresh, Dictionary<BlockNode, bool> wasWritable)
    {
        wasWritable.TryAdd(node, node.Writable);
        var old = node.ReadOnly;
        // qcow2's reopen: to read-only stores the persistent bitmaps at prepare (not undone, as in QEMU) and
        // makes them read-only; back to read-write marks them in use again once the reopen commits.
        if (node.Driver is IO.IPersistentBitmaps bitmaps)
        {
            if (readOnly) bitmaps.ReopeningReadOnly();
            else if (old) tran.Add(abort: null, commit: bitmaps.ReopenedWritable);
        }
        node.ReadOnly = readOnly;
        tran.Add(abort: () => node.ReadOnly = old);
        refresh.Add(node);
        // Children newest first, as bdrv_reopen_queue_child walks them.
        foreach (var c in node.Children.ToList())
        {
            if (c.Node.InheritsFrom == node && !c.Node.Options.ContainsKey("read-only") && (c.Role & Role.Cow) == 0)
                SetReadOnlyCascade(tran, c.Node, readOnly, refresh, wasWritable);
        }
    }

    /// <summary>The old top of an external snapshot is reopened read-only at commit; if a parent still writes, it stays as it is.</summary>
    private static void ReopenReadOnlyIgnoringErrors(BlockNode node)
    {
        if (node.Deleted || node.ReadOnly) return;
        var tran = new UndoLog(node.Mutation);
        var refresh = new List<BlockNode>();
        var was = new Dictionary<BlockNode, bool>();
        SetReadOnlyCascade(tran, node, true, refresh, was);
        if (Refresher.Refresh(Enumerable.Reverse(refresh).ToList(), tran, n => was.TryGetValue(n, out var w) ? w : n.Writable) is null) tran.Commit();
        else tran.Abort();
    }
}
