using Verified.Impl.Engine;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.Rules;

/// <summary>
/// Incremental permission refresh: only the subtrees of the listed nodes, in one topological order
/// (a node before everything below it; children visited newest first), each node checked against
/// its parents as they are at that moment, then its child edges recomputed. Every change is
/// registered in the transaction's undo log.
/// </summary>
internal static class Refresher
{
    private static long epochSource;

    /// <summary>Refreshes the subtrees of <paramref name="list"/>; returns the first error.</summary>
    public static QmpError? Refresh(IEnumerable<BlockNode> list, UndoLog tran, Func<BlockNode, bool>? writableBefore = null)
    {
        long epoch = Interlocked.Increment(ref epochSource);
        var postorder = new List<BlockNode>();
        foreach (var n in list)
        {
            if (!n.Deleted) Visit(n, epoch, postorder);
        }
        for (int i = postorder.Count - 1; i >= 0; i--)
        {
            var err = RefreshNode(postorder[i], tran, writableBefore);
            if (err is not null) return err;
        }
        return null;
    }

    private static void Visit(BlockNode n, long epoch, List<BlockNode> postorder)
    {
        if (n.WalkEpoch == epoch) return;
        n.WalkEpoch = epoch;
        for (int i = n.ChildList.Count - 1; i >= 0; i--) Visit(n.ChildList[i].Node, epoch, postorder);
        postorder.Add(n);
    }

    private static QmpError? RefreshNode(BlockNode n, UndoLog tran, Func<BlockNode, bool>? writableBefore)
    {
        var parents = n.ParentList;
        for (int i = parents.Count - 1; i >= 0; i--)
        {
            var a = parents[i];
            for (int j = parents.Count - 1; j >= 0; j--)
            {
                var b = parents[j];
                if (i != j && (b.Perm & ~a.Shared) != 0) return QmpError.Generic(ConflictText(n, a, b));
            }
        }
        var (perm, shared) = n.ComputeCumulative();
        if ((perm & (Perm.Write | Perm.WriteUnchanged)) != 0 && !n.Writable)
        {
            return QmpError.Generic(writableBefore?.Invoke(n) == true
                ? $"Read-only block node '{n.Name}' cannot support read-write users" : "Block node is read-only");
        }
        var err = n.Driver.CheckPerm(perm, shared);
        if (err is not null) return err;
        var driver = n.Driver;
        // As bdrv_drv_set_perm_commit: the driver gets the node's perms as they stand at commit time.
        tran.Add(abort: driver.AbortPerm, commit: () =>
        {
            var (p, s) = n.ComputeCumulative();
            driver.SetPerm(p, s);
        });

        var (oldPerm, oldShared) = (n.CumulativePerm, n.CumulativeShared);
        if (oldPerm != perm || oldShared != shared)
        {
            n.CumulativePerm = perm;
            n.CumulativeShared = shared;
            tran.Add(abort: () => { n.CumulativePerm = oldPerm; n.CumulativeShared = oldShared; });
        }
        foreach (var c in n.ChildList)
        {
            var (p, s) = PermRules.ChildPerm(n, c, perm, shared);
            if (p == c.Perm && s == c.Shared) continue;
            var (op, os) = (c.Perm, c.Shared);
            c.Perm = p;
            c.Shared = s;
            tran.Add(abort: () => { c.Perm = op; c.Shared = os; });
        }
        return null;
    }

    /// <summary>QEMU's conflict text: <paramref name="b"/> needs what <paramref name="a"/> does not share.</summary>
    public static string ConflictText(BlockNode n, BdrvChild a, BdrvChild b) =>
        $"Permission conflict on node '{n.Name}': permissions '{Perms.DisplayText(b.Perm & ~a.Shared)}' are both required by "
        + $"{b.Parent.Description} (uses node '{n.Name}' as '{b.Name}' child) and unshared by {a.Parent.Description} "
        + $"(uses node '{n.Name}' as '{a.Name}' child).";
}
