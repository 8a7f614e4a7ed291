// QEMU's tests/unit/test-bdrv-graph-mod.c, the five cases, on the model. They use QEMU's test
// drivers (pass-through, no-perm, exclusive-writer, write-to-selected), which the model knows as
// x-pass-through etc. and which QMP cannot reach, so the graphs are built directly. Each case asserts
// the outcome QEMU's test asserts, plus the exact edges and perms that follow from it.
using Verified.Model;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Scenarios;

public class GraphModTests
{
    private const Role Filtered = Role.Filtered | Role.Primary;

    /// <summary>A graph builder: nodes held by the test (as QEMU's test holds its references).</summary>
    private sealed class Build
    {
        public Graph G = Graph.Empty;

        public Build Node(string name, string driver, string? selected = null)
        {
            var opts = selected is null ? ValueMap<string>.Empty : ValueMap<string>.Empty.SetItem("selected", $"\"{selected}\"");
            var (g, seq) = G.TakeSeq();
            G = g.With(new Node(name, driver, false, true, false, opts, ValueList<Bitmap>.Empty, seq));
            return this;
        }

        public Build Child(string parent, string name, string child, Role role)
        {
            G = Operations.AttachChild(G, parent, name, child, role);
            return this;
        }

        /// <summary>
        /// The test's BlockBackend: a device without share-rw, which takes exactly what QEMU's test
        /// BlockBackend takes (consistent read and write, sharing all but write).
        /// </summary>
        public Build Root(string id, string node)
        {
            var (g, seq) = G.TakeSeq();
            var d = new Device(id, "scsi-hd", false, false, seq);
            G = g with { Devices = g.Devices.SetItem(id, d) };
            var (perm, shared) = Devices.Perms(d);
            Assert.Equal((Perm.ConsistentRead | Perm.Write, Perm.All & ~Perm.Write), (perm, shared));
            G = Operations.AttachRoot(G, new DeviceParent(id), node, perm, shared).Get();
            return this;
        }

        public Graph Refreshed() => Refresh.Nodes(G, G.Nodes.Keys).Get();
    }

    private static (Perm, Perm) PermsOf(Graph g, string parent, string name) =>
        g.ChildrenOf(parent).Single(e => e.Name == name) is var e ? (e.Perm, e.Shared) : default;

    /// <summary>
    /// update-perm-tree: appending a pass-through filter that already has a DATA child on the node
    /// would give the node two writing parents from one filter that share nothing; it must fail.
    /// </summary>
    [Fact]
    public void Update_perm_tree_append_is_refused()
    {
        var b = new Build().Node("node", "x-no-perm").Node("filter", "x-pass-through")
            .Root("blk", "node")
            .Child("filter", "child", "node", Role.Data);
        var before = b.G;
        var r = Operations.Append(Tx.Begin(before, 0), "filter", "node");
        Assert.Equal("Permission conflict on node 'node': permissions 'write' are both required by node 'filter' (uses node 'node' as 'child' child) "
            + "and unshared by node 'filter' (uses node 'node' as 'backing' child).", r.Error?.Desc);
        Assert.Equal(before, r.Tx.Graph); // nothing changed
    }

    /// <summary>
    /// should-update-child: appending over a node does not redirect an edge that lies inside the new
    /// node's own subtree (target's backing stays on node), so no loop forms. (QEMU's BlockBackend here
    /// takes nothing; the device takes read and write, which the no-perm drivers never pass on.)
    /// </summary>
    [Fact]
    public void Should_update_child_keeps_edges_below_the_new_node()
    {
        var b = new Build().Node("node", "x-no-perm").Node("target", "x-no-perm").Node("filter", "x-no-perm")
            .Root("blk", "node")
            .Child("target", "backing", "node", Role.Cow)
            .Child("filter", "target", "target", Role.Data);
        var r = Operations.Append(Tx.Begin(b.G, 0), "filter", "node");
        Assert.Null(r.Error);
        var g = Operations.Commit(r.Tx);
        Assert.Equal([("blk", "root", "filter"), ("filter", "backing", "node"), ("filter", "target", "target"), ("target", "backing", "node")],
            Queries.EdgeTriples(g));
        Assert.Empty(Invariants.Check(g));
    }

    /// <summary>
    /// parallel-exclusive-write: replacing fl1 by fl2 under an exclusive writer succeeds, because fl1's
    /// stale write on base is dropped in the same refresh (fl1 is refreshed before base).
    /// </summary>
    [Fact]
    public void Parallel_exclusive_write_replace_succeeds()
    {
        var b = new Build().Node("base", "x-no-perm").Node("fl1", "x-pass-through").Node("fl2", "x-pass-through").Node("top", "x-exclusive-writer")
            .Child("fl1", "backing", "base", Filtered).Child("fl2", "backing", "base", Filtered).Child("top", "backing", "fl1", Filtered);
        var g0 = b.Refreshed();
        Assert.Equal((Perm.Write, Perm.All & ~Perm.Write), PermsOf(g0, "fl1", "backing"));
        var tx = Operations.ReplaceNode(Tx.Begin(g0, 0), "fl1", "fl2");
        var r = Refresh.Nodes(tx.Graph, tx.RefreshList, committed: g0);
        Assert.True(r.Ok, r.Error?.Desc);
        var g = r.Get();
        Assert.Equal((Perm.Write, Perm.All & ~Perm.Write), PermsOf(g, "fl2", "backing"));
        Assert.Equal((Perm.None, Perm.All), PermsOf(g, "fl1", "backing"));
        Assert.Equal("fl2", g.ChildEdge("top", "backing")!.Child);
    }

    /// <summary>
    /// parallel-perm-update: moving the exclusive write from one branch to the other and back succeeds
    /// every time; only the topological refresh order (both branches before base) makes it so.
    /// </summary>
    [Fact]
    public void Parallel_perm_update_moves_write_between_branches()
    {
        var b = new Build().Node("base", "x-no-perm").Node("fl1", "x-pass-through").Node("fl2", "x-pass-through")
            .Node("ws", "x-write-to-selected", selected: "first").Node("top", "x-no-perm")
            .Child("fl1", "backing", "base", Filtered).Child("fl2", "backing", "base", Filtered)
            .Child("ws", "first", "fl1", Role.Data).Child("ws", "second", "fl2", Role.Data)
            .Child("top", "file", "ws", Role.Data);
        var g = b.Refreshed();
        foreach (var (selected, other) in new[] { ("second", "first"), ("first", "second"), ("second", "first") })
        {
            Assert.Equal((Perm.Write, Perm.All & ~Perm.Write), PermsOf(g, "ws", other));
            var ws = g.Nodes["ws"];
            var changed = g.With(ws with { Options = ws.Options.SetItem("selected", $"\"{selected}\"") });
            var r = Refresh.Subtree(changed, "ws", g);
            Assert.True(r.Ok, $"selecting {selected}: {r.Error?.Desc}");
            g = r.Get();
            Assert.Equal((Perm.Write, Perm.All & ~Perm.Write), PermsOf(g, "ws", selected));
            Assert.Equal((Perm.None, Perm.All), PermsOf(g, "ws", other));
            Assert.Equal((Perm.Write, Perm.All & ~Perm.Write), PermsOf(g, selected == "first" ? "fl1" : "fl2", "backing"));
        }
    }

    /// <summary>
    /// append-greedy-filter: an exclusive-writer filter appended over base under another exclusive writer
    /// succeeds, because perms are checked on the final graph (as a branch beside top it would conflict).
    /// </summary>
    [Fact]
    public void Append_greedy_filter_succeeds_only_because_perms_come_last()
    {
        var b = new Build().Node("base", "x-no-perm").Node("top", "x-exclusive-writer").Node("fl1", "x-exclusive-writer")
            .Child("top", "backing", "base", Filtered);
        var g0 = b.Refreshed();
        var r = Operations.Append(Tx.Begin(g0, 0), "fl1", "base");
        Assert.Null(r.Error);
        var g = r.Tx.Graph;
        Assert.Equal("fl1", g.ChildEdge("top", "backing")!.Child);
        Assert.Equal("base", g.ChildEdge("fl1", "backing")!.Child);

        // The same attach, checked before the parents move (step by step), is refused.
        var branch = Operations.AttachChild(g0, "fl1", "backing", "base", Filtered);
        var step = Refresh.Subtree(branch, "fl1", g0);
        Assert.StartsWith("Permission conflict on node 'base': permissions 'write'", step.Error?.Desc, StringComparison.Ordinal);
    }
}
