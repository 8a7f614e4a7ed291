using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Impl.Rules;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>
/// Graph operations without permission update: each applies its change at once, registers its undo,
/// and records in the refresh list what must be rechecked. The refresh list is kept in call order and
/// walked newest first, as QEMU prepends to it.
/// </summary>
public sealed partial class BlockEngine
{
    private static long walkEpoch;

    /// <summary>copy-on-read nodes with a <c>bottom</c>: the only nodes that freeze links, kept so checks need not scan the graph.</summary>
    private readonly HashSet<BlockNode> freezers = [];

    /// <summary>Opens a node tree (<c>bdrv_open</c> with BDRV_O_NOPERM): a non-protocol driver's file subtree first, then its name, then its other children.</summary>
    private (BlockNode? Node, QmpError? Error) Open(UndoLog tran, BlockdevOptions o, bool? inheritedRO, bool asBacking)
    {
        o = o.WithInheritedForceShare();
        bool readOnly = o.ReadOnly ?? (asBacking || (inheritedRO ?? false));
        BlockNode? preFile = null;
        bool preFileInline = false;
        var fileOpt = o.Child("file");
        if (!PermRules.IsProtocol(o.Driver) && fileOpt?.Ref is { } fref)
        {
            var (f, err) = OpenChild(tran, fref, readOnly, false);
            if (err is not null) return (null, err);
            preFile = f;
            preFileInline = fref is BlockdevRefInline;
        }
        string name;
        if (o.NodeName is null)
        {
            name = Names.Generated(nameCounter++);
        }
        else
        {
            name = o.NodeName;
            if (!Names.IsWellFormed(name)) return (null, QmpError.Generic($"Invalid node-name: '{name}'"));
            if (nodes.ContainsKey(name)) return (null, QmpError.Generic($"Duplicate nodes with node-name='{name}'"));
            if (name.Length > Names.NodeNameLengthMax) return (null, QmpError.Generic("Node name too long"));
        }
        var driver = DriverRegistry.Create(o.Driver);
        var node = new BlockNode(name, o.Driver, driver, readOnly, o.NodeName is null, o.Scalars, NextSeq()) { Mutation = Services.Mutation };
        driver.Node = node;
        nodes.Add(name, node);
        tran.Add(abort: () => { nodes.Remove(name); node.Deleted = true; });
        if (preFile is not null && preFileInline) SetInheritsFrom(tran, preFile, node);

        bool formatOpened = false;
        QmpError? OpenFormat()
        {
            // As bdrv_open_common: the format driver reads its image (qcow2's header) before the backing child opens.
            formatOpened = true;
            var formatErr = driver.OpenFormat(Services);
            tran.Add(abort: driver.Close);
            return formatErr;
        }
        foreach (var c in o.Children)
        {
            if (c.Ref is null) continue;
            if (c.Key != "file" && !formatOpened && driver.ReadsImageAtOpen && OpenFormat() is { } formatErr) return (null, formatErr);
            BlockNode child;
            if (c.Key == "file" && preFile is not null) child = preFile;
            else
            {
                var (ch, err) = OpenChild(tran, c.Ref, readOnly, c.Key == "backing");
                // As bdrv_open_backing_file: every error below a backing child gets its context.
                if (err is not null) return (null, c.Key == "backing" ? err with { Desc = "Could not open backing file: " + err.Desc } : err);
                child = ch!;
                if (c.Ref is BlockdevRefInline) SetInheritsFrom(tran, child, node);
            }
            AttachChild(tran, node, c.Key, child, PermRules.RoleOf(o.Driver, c.Key, o.Scalars));
        }
        // No backing option at all (not even null): the backing file the image names, once its header is read.
        if (PermRules.SupportsBacking(o.Driver) && o.Child("backing") is null)
        {
            if (!formatOpened && driver.ReadsImageAtOpen && OpenFormat() is { } formatErr) return (null, formatErr);
            if (OpenHeaderBacking(tran, node) is { } backingErr) return (null, backingErr);
        }
        var check = OpenChecks(tran, node);
        if (check is not null) return (null, check);
        var openErr = formatOpened ? null : driver.OpenFormat(Services);
        openErr ??= driver.Open(Services);
        if (!formatOpened) tran.Add(abort: driver.Close);
        return openErr is null ? (node, null) : (null, openErr);
    }

    private static void SetInheritsFrom(UndoLog tran, BlockNode child, BlockNode parent)
    {
        var old = child.InheritsFrom;
        child.InheritsFrom = parent;
        tran.Add(abort: () => child.InheritsFrom = old);
    }

    private (BlockNode? Node, QmpError? Error) OpenChild(UndoLog tran, BlockdevRef r, bool parentRO, bool asBacking) => r switch
    {
        BlockdevRefName n => Live(n.Name, out var existing)
            ? (existing, null) : (null, QmpError.Generic($"Cannot find device='{n.Name}' nor node-name='{n.Name}'")),
        BlockdevRefInline i => Open(tran, i.Options, parentRO, asBacking),
        _ => throw new ArgumentException("unknown child reference", nameof(r)),
    };

    /// <summary>Checks drivers make at open: the throttle group exists; copy-on-read's bottom is below it.</summary>
    private QmpError? OpenChecks(UndoLog tran, BlockNode node)
    {
        switch (node.DriverName)
        {
            case "throttle":
                var group = node.Str("throttle-group")!;
                return objects.TryGetValue(group, out var o) && o.Group is not null ? null : QmpError.Generic($"Throttle group '{group}' does not exist");
            case "compress":
                var under = node.Child("file")!.Node;
                // Drivers with compressed writes in QEMU 7.2: qcow2, and the filters that pass them on (measured).
                return under.DriverName is "qcow2" or "copy-on-read" or "throttle" ? null : QmpError.Generic($"Compression is not supported for underlying format: {under.DriverName}");
            case "copy-on-read" when node.Str("bottom") is { } bottomName:
                if (!nodes.TryGetValue(bottomName, out var bottom)) return QmpError.Generic($"Bottom node '{bottomName}' not found");
                if (PermRules.IsFilter(bottom.DriverName)) return QmpError.Generic($"Bottom node '{bottomName}' is a filter");
                // QEMU 7.2 would spin forever freezing a chain that never reaches this bottom.
                bool inChain = false;
                for (var n = node.Child("file")?.Node; n is not null && !inChain; n = FilteredOrCow(n)?.Node) inChain = n == bottom;
                if (!inChain) return QmpError.Generic($"Bottom node '{bottomName}' is not in the backing chain of '{node.Name}'");
                bottom.RefCount++;
                freezers.Add(node);
                tran.Add(abort: () => { bottom.RefCount--; freezers.Remove(node); });
                return null;
            default:
                return null;
        }
    }

    private static BdrvChild? FilteredOrCow(BlockNode n)
    {
        foreach (var c in n.ChildList)
        {
            if ((c.Role & (Role.Filtered | Role.Cow)) != 0) return c;
        }
        return null;
    }

    /// <summary>Attaches a child edge; its perms come from the parent's cumulative perms as they stand, unchecked.</summary>
    private BdrvChild AttachChild(UndoLog tran, BlockNode parent, string name, BlockNode child, Role role)
    {
        var edge = new BdrvChild(NextSeq(), parent, name, child, role);
        var (cp, cs) = parent.ComputeCumulative();
        (edge.Perm, edge.Shared) = PermRules.ChildPerm(parent, edge, cp, cs);
        parent.ChildList.Add(edge);
        child.ParentList.Add(edge);
        child.RefCount++;
        tran.Add(abort: () =>
        {
            parent.ChildList.Remove(edge);
            child.ParentList.Remove(edge);
            child.RefCount--;
        });
        return edge;
    }

    /// <summary>The series' <c>bdrv_replace_child_tran</c>: reference the new node, move the edge, unreference the old one transactionally.</summary>
    private void ReplaceChild(UndoLog tran, BdrvChild edge, BlockNode to, List<BlockNode> refresh)
    {
        var from = edge.Node;
        to.RefCount++;
        int index = from.ParentList.IndexOf(edge);
        from.ParentList.RemoveAt(index);
        to.ParentList.Add(edge);
        edge.Node = to;
        tran.Add(abort: () =>
        {
            to.ParentList.Remove(edge);
            from.ParentList.Insert(index, edge);
            edge.Node = from;
            to.RefCount--;
        });
        refresh.Add(to);
        UnrefTran(tran, from, refresh);
    }

    /// <summary>
    /// <c>bdrv_unref_tran</c>: a node still referenced is queued for refresh; at zero its deletion is
    /// registered for commit, and a node whose driver closes independently detaches its children now.
    /// </summary>
    private void UnrefTran(UndoLog tran, BlockNode node, List<BlockNode> refresh)
    {
        node.RefCount--;
        tran.Add(abort: () => node.RefCount++);
        if (node.RefCount > 0)
        {
            refresh.Add(node);
            return;
        }
        tran.Add(abort: null, commit: () => { if (node.RefCount == 0 && !node.Deleted) Delete(node); });
        if (!PermRules.ClosesIndependently(node.DriverName)) return;
        for (int i = node.ChildList.Count - 1; i >= 0; i--) RemoveChild(tran, node.ChildList[i], refresh);
    }

    /// <summary>Detaches a child edge transactionally and unreferences the child.</summary>
    private void RemoveChild(UndoLog tran, BdrvChild edge, List<BlockNode> refresh)
    {
        var parent = (BlockNode)edge.Parent;
        var child = edge.Node;
        int ci = parent.ChildList.IndexOf(edge), pi = child.ParentList.IndexOf(edge);
        parent.ChildList.RemoveAt(ci);
        child.ParentList.RemoveAt(pi);
        tran.Add(abort: () =>
        {
            child.ParentList.Insert(pi, edge);
            parent.ChildList.Insert(ci, edge);
        });
        UnsetInheritsFrom(tran, parent, child);
        UnrefTran(tran, child, refresh);
    }

    /// <summary><c>bdrv_unset_inherits_from</c>: a node no longer below <paramref name="root"/> stops inheriting from it, and so do its descendants.</summary>
    private static void UnsetInheritsFrom(UndoLog? tran, BlockNode root, BlockNode child)
    {
        if (child.InheritsFrom == root && !root.ChildList.Exists(c => c.Node == child))
        {
            child.InheritsFrom = null;
            tran?.Add(abort: () => child.InheritsFrom = root);
        }
        foreach (var c in child.ChildList) UnsetInheritsFrom(tran, root, c.Node);
    }

    /// <summary>Deletes an unreferenced node outside any transaction: children detached newest first, each refreshed with errors ignored.</summary>
    private void Delete(BlockNode node)
    {
        // As bdrv_close: the driver closes first (copy-on-read unfreezes its chain and drops its reference on
        // bottom, which may delete it), then the children are detached newest first.
        freezers.Remove(node);
        if (node.DriverName == "copy-on-read" && node.Str("bottom") is { } b && nodes.TryGetValue(b, out var bottom) && !bottom.Deleted)
        {
            bottom.RefCount--;
            if (bottom.RefCount == 0) Delete(bottom);
        }
        node.Driver.Closing();
        for (int i = node.ChildList.Count - 1; i >= 0; i--) DetachAndRelease(node.ChildList[i]);
        node.Driver.Close();
        node.Deleted = true;
        nodes.Remove(node.Name);
    }

    /// <summary><c>bdrv_root_unref_child</c>: remove the edge, refresh the old child (a loosening that may not fail), release it.</summary>
    private void DetachAndRelease(BdrvChild edge)
    {
        var child = edge.Node;
        child.ParentList.Remove(edge);
        if (edge.Parent is BlockNode parent)
        {
            parent.ChildList.Remove(edge);
            UnsetInheritsFrom(null, parent, child);
        }
        var tran = new UndoLog(Services.Mutation);
        if (Rules.Refresher.Refresh([child], tran) is null) tran.Commit();
        else tran.Abort();
        child.RefCount--;
        if (child.RefCount == 0 && !child.Deleted) Delete(child);
    }

    /// <summary>Attaches a root parent's edge and refreshes the node's subtree, all or nothing.</summary>
    private QmpError? AttachRoot(RootParent parent, BlockNode node)
    {
        var tran = new UndoLog(Services.Mutation);
        AttachRootEdge(tran, parent, node, parent.Wants.Perm, parent.Wants.Shared);
        var err = Rules.Refresher.Refresh([node], tran);
        if (err is null) tran.Commit();
        else tran.Abort();
        return err;
    }

    private BdrvChild AttachRootEdge(UndoLog tran, RootParent parent, BlockNode node, Perm perm, Perm shared)
    {
        var edge = new BdrvChild(NextSeq(), parent, "root", node, Role.Filtered | Role.Primary) { Perm = perm, Shared = shared };
        node.ParentList.Add(edge);
        node.RefCount++;
        parent.Root = edge;
        tran.Add(abort: () =>
        {
            node.ParentList.Remove(edge);
            node.RefCount--;
            parent.Root = null;
        });
        return edge;
    }

    /// <summary>Detaches a root parent's edge (if any); the node is released.</summary>
    private void DetachRoot(RootParent parent)
    {
        if (parent.Root is not { } edge) return;
        parent.Root = null;
        DetachAndRelease(edge);
    }

    /// <summary>True if <paramref name="target"/> is <paramref name="from"/> or below it.</summary>
    private static bool Reaches(BlockNode from, BlockNode target)
    {
        long epoch = Interlocked.Increment(ref walkEpoch) + (1L << 40);
        var stack = new Stack<BlockNode>();
        stack.Push(from);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (n == target) return true;
            if (n.WalkEpoch == epoch) continue;
            n.WalkEpoch = epoch;
            foreach (var c in n.ChildList) stack.Push(c.Node);
        }
        return false;
    }

    /// <summary><c>bdrv_replace_node_noperm</c>: move every parent of <paramref name="from"/> to <paramref name="to"/>, except jobs and parents below <paramref name="to"/>.</summary>
    private void ReplaceNode(UndoLog tran, BlockNode from, BlockNode to, List<BlockNode> refresh)
    {
        foreach (var e in from.Parents.ToList())
        {
            if (e.Parent.StaysAtNode) continue;
            if (e.Parent is BlockNode p && Reaches(to, p)) continue;
            ReplaceChild(tran, e, to, refresh);
        }
    }

    /// <summary><c>bdrv_append</c>: <paramref name="top"/> goes under <paramref name="node"/>, its parents move up, and the subtree is refreshed at once.</summary>
    private QmpError? Append(UndoLog tran, BlockNode node, BlockNode top)
    {
        foreach (var e in top.Parents)
        {
            if (e.Parent.StaysAtNode || e.Parent is BlockNode p && Reaches(node, p)) continue;
            if (Frozen(e) is not null) return QmpError.Generic($"Cannot change '{e.Name}' link to '{top.Name}'");
        }
        AttachChild(tran, node, "backing", top, PermRules.IsFilter(node.DriverName) ? Role.Filtered | Role.Primary : Role.Cow);
        ReplaceNode(tran, top, node, []);
        return Rules.Refresher.Refresh([node], tran);
    }

    /// <summary>The frozen-link error for changing <paramref name="e"/> (copy-on-read freezes its chain down to its bottom).</summary>
    private QmpError? Frozen(BdrvChild e)
    {
        if (e.Parent is not BlockNode p || (e.Role & (Role.Filtered | Role.Cow)) == 0) return null;
        foreach (var cor in freezers)
        {
            if (cor.Str("bottom") is not { } bottom) continue;
            bool below = false;
            for (var n = cor; n is not null && n.Name != bottom; n = FilteredOrCow(n)?.Node)
            {
                if (n == p) { below = true; break; }
            }
            if (below && FilteredOrCow(p) == e) return QmpError.Generic($"Cannot change frozen '{e.Name}' link from '{p.Name}' to '{e.Node.Name}'");
        }
        return null;
    }

    /// <summary>A node by name unless a transaction has dropped its last reference (it is being deleted).</summary>
    private bool Live(string name, out BlockNode node)
    {
        if (nodes.TryGetValue(name, out node!) && node.RefCount > 0) return true;
        node = null!;
        return false;
    }

    /// <summary>Resolves a device by id or QOM path.</summary>
    private DeviceParent? ResolveDevice(string idOrPath)
    {
        if (devices.TryGetValue(idOrPath, out var d)) return d;
        foreach (var x in devices.Values)
        {
            if (idOrPath == $"/machine/peripheral/{x.Id}" || idOrPath == x.GraphName) return x;
        }
        return null;
    }

    /// <summary>The newest backing parent of <paramref name="n"/> makes it busy (QEMU's backing op blocker).</summary>
    private static QmpError? Blocker(BlockNode n)
    {
        foreach (var e in n.Parents)
        {
            if ((e.Role & Role.Cow) != 0 && e.Parent is BlockNode p)
                return QmpError.Generic($"Node '{n.Name}' is busy: node is used as backing hd of '{p.Name}'");
        }
        return null;
    }
}
