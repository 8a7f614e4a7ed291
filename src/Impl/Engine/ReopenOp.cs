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
        var tran = new UndoLog();
        var refresh = new List<BlockNode>();
        var wasWritable = new Dictionary<BlockNode, bool>();
        var newOptions = new List<(BlockNode, ValueMap<string>)>();
        foreach (var o in list)
        {
            if (o.NodeName is not { } name) { tran.Abort(); return QmpError.Generic("node-name not specified"); }
            if (!nodes.TryGetValue(name, out var node)) { tran.Abort(); return QmpError.Generic($"Failed to find node with node-name='{name}'"); }
            var err = ReopenOptionsCheck(node, o) ?? ReopenChildren(tran, node, o, refresh);
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

    private QmpError? ReopenChildren(UndoLog tran, BlockNode node, BlockdevOptions o, List<BlockNode> refresh)
    {
        foreach (var field in BlockdevSchema.Get(node.DriverName)!.ChildFields)
        {
            var current = node.Child(field.Name);
            var given = o.Child(field.Name);
            if (given is null)
            {
                if (current is not null) return QmpError.Generic($"{field.Name} is missing for '{node.Name}'");
                continue;
            }
            switch (given.Ref)
            {
                case null:
                    if (current is null) break;
                    if (Frozen(current) is { } f) return f;
                    RemoveChild(tran, current, refresh);
                    break;
                case BlockdevRefName n:
                    if (!nodes.TryGetValue(n.Name, out var target)) return QmpError.Generic($"Cannot find device='' nor node-name='{n.Name}'");
                    if (Reaches(target, node)) return QmpError.Generic($"Making '{n.Name}' a {field.Name} child of '{node.Name}' would create a cycle");
                    if (current?.Node == target) break;
                    if (current is not null)
                    {
                        if (Frozen(current) is { } fr) return fr;
                        ReplaceChild(tran, current, target, refresh);
                        break;
                    }
                    if (PermRules.IsFilter(node.DriverName))
                        return QmpError.Generic($"'{node.Name}' is a {node.DriverName} filter node that does not support a {field.Name} child");
                    AttachChild(tran, node, field.Name, target, PermRules.RoleOf(node.DriverName, field.Name, node.Options));
                    refresh.Add(target);
                    refresh.Add(node);
                    break;
                default:
                    return QmpError.Generic($"Cannot change the option '{field.Name}'");
            }
        }
        return null;
    }

    /// <summary>Sets read-only on a node and on the inline children that inherit it (not backing files).</summary>
    private static void SetReadOnlyCascade(UndoLog tran, BlockNode node, bool readOnly, List<BlockNode> refresh, Dictionary<BlockNode, bool> wasWritable)
    {
        wasWritable.TryAdd(node, node.Writable);
        var old = node.ReadOnly;
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
        var tran = new UndoLog();
        var refresh = new List<BlockNode>();
        var was = new Dictionary<BlockNode, bool>();
        SetReadOnlyCascade(tran, node, true, refresh, was);
        if (Refresher.Refresh(Enumerable.Reverse(refresh).ToList(), tran, n => was.TryGetValue(n, out var w) ? w : n.Writable) is null) tran.Commit();
        else tran.Abort();
    }
}
