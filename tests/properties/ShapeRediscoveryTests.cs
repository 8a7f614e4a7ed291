// Rediscovery of QEMU's five graph-mod shapes (tests/unit/test-bdrv-graph-mod.c) by random generation.
// For each shape, a hand-built QMP sequence on the model ends in a step that Shapes.Classify must
// recognise (the positive), and a near miss, the same sequence with one thing changed so that the
// shape's defining condition no longer holds, must not be recognised (the negative). Then the command
// generator (CommandGen, model only, fixed seeds) runs a stated budget of commands, every step is
// classified, and each shape must be hit at least once; the counts and the budget are printed, and a
// miss names the seeds. The definitions are in spec/shapes.md.
using System.Text.Json.Nodes;
using Verified.Model;
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Properties;

public class ShapeRediscoveryTests(ITestOutputHelper output)
{
    /// <summary>The budget: runs of a campaign-like length from consecutive seeds, 20,000 commands in all.</summary>
    private const int FirstSeed = 1, Runs = 400, StepsPerRun = 50;

    /// <summary>Applies all but the last QMP line (each must succeed) and classifies the last step.</summary>
    private static (IReadOnlyList<string> Shapes, Reply Reply) Last(params string[] qmp)
    {
        var s = ModelState.Initial;
        for (int i = 0; i < qmp.Length - 1; i++)
        {
            var (next, r) = Machine.Apply(s, JsonNode.Parse(qmp[i])!.AsObject());
            Assert.True(r.IsOk, $"setup line {i + 1}: {r}");
            s = next;
        }
        var (cmd, err) = CommandParser.ParseRequest(JsonNode.Parse(qmp[^1])!.AsObject());
        Assert.Null(err);
        var (after, reply) = Machine.Apply(s, cmd!);
        return (Shapes.Classify(s, cmd!, after, reply).ToList(), reply);
    }

    private static string Add(string json) => $$"""{"execute":"blockdev-add","arguments":{{json}}}""";

    private static readonly string NullBase = Add("""{"driver":"null-co","node-name":"base"}""");
    private static readonly string NullTgt = Add("""{"driver":"null-co","node-name":"tgt"}""");

    // A qcow2 overlay opens only over bytes holding a qcow2 image: file nodes on files the model does not
    // know are taken to hold one (spec/qcow2.md), null-co never does.
    private static readonly string FileBase = Add("""{"driver":"file","node-name":"base","filename":"base.qcow2"}""");
    private static readonly string FileTgt = Add("""{"driver":"file","node-name":"tgt","filename":"tgt.qcow2"}""");

    // update-perm-tree: copy-before-write f already has its file child on base; moving its target child
    // onto base too gives base two edges from f, one writing, one unsharing write.
    [Fact]
    public void Shape_update_perm_tree_positive_two_edges_of_one_parent()
    {
        var (shapes, reply) = Last(NullBase, NullTgt,
            Add("""{"driver":"copy-before-write","node-name":"f","file":"base","target":"tgt"}"""),
            """{"execute":"x-blockdev-replace","arguments":{"parent-type":"driver","node-name":"f","child":"target","new-child":"base"}}""");
        Assert.StartsWith("Permission conflict on node 'base'", reply.Error?.Desc, StringComparison.Ordinal);
        Assert.Equal([Shapes.UpdatePermTree], shapes);
    }

    // Near miss: the same refusal text, but the writer (blkdebug w) and f share no subtree.
    [Fact]
    public void Shape_update_perm_tree_negative_unrelated_parents()
    {
        var (shapes, reply) = Last(NullBase, NullTgt,
            Add("""{"driver":"copy-before-write","node-name":"f","file":"base","target":"tgt"}"""),
            Add("""{"driver":"null-co","node-name":"other"}"""),
            Add("""{"driver":"blkdebug","node-name":"w","image":"other","take-child-perms":["write"]}"""),
            """{"execute":"x-blockdev-replace","arguments":{"parent-type":"driver","node-name":"w","child":"image","new-child":"base"}}""");
        Assert.StartsWith("Permission conflict on node 'base'", reply.Error?.Desc, StringComparison.Ordinal);
        Assert.DoesNotContain(Shapes.UpdatePermTree, shapes);
    }

    // should-update-child: raw t over base lies in the new overlay's subtree (ov's file); the snapshot moves
    // base's other parent (p) onto ov but leaves t's edge on base (moving it would close ov → t → ov).
    [Fact]
    public void Shape_should_update_child_positive_inner_edge_stays()
    {
        var (shapes, reply) = Last(FileBase,
            Add("""{"driver":"raw","node-name":"p","file":"base"}"""),
            Add("""{"driver":"raw","node-name":"t","file":"base"}"""),
            """{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":{"driver":"qcow2","node-name":"ov","file":"t"}},{"type":"blockdev-snapshot","data":{"node":"base","overlay":"ov"}}]}}""");
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.ShouldUpdateChild], shapes);
    }

    // Near miss: the overlay's file is unrelated to base, so nothing inside its subtree points at base.
    [Fact]
    public void Shape_should_update_child_negative_overlay_subtree_apart()
    {
        var (shapes, reply) = Last(FileBase, FileTgt,
            Add("""{"driver":"raw","node-name":"p","file":"base"}"""),
            """{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":{"driver":"qcow2","node-name":"ov","file":"tgt"}},{"type":"blockdev-snapshot","data":{"node":"base","overlay":"ov"}}]}}""");
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Empty(shapes);
    }

    /// <summary>Two raw branches over base and an exclusive-writer device on fl1 (share-rw as given).</summary>
    private static string[] Branches(bool shareRw) =>
    [
        NullBase,
        Add("""{"driver":"raw","node-name":"fl1","file":"base"}"""),
        Add("""{"driver":"raw","node-name":"fl2","file":"base"}"""),
        """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d0","drive":"fl1","share-rw":""" + (shareRw ? "true" : "false") + "}}",
    ];

    private const string MoveToFl2 = """{"execute":"x-blockdev-replace","arguments":{"parent-type":"qdev","qdev-id":"d0","new-child":"fl2"}}""";

    // parallel-exclusive-write: QEMU's case over QMP. fl1's write on base is stale once d0 leaves it.
    [Fact]
    public void Shape_parallel_exclusive_write_positive_writer_moves_to_parallel_branch()
    {
        var (shapes, reply) = Last([.. Branches(shareRw: false), MoveToFl2]);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.ParallelExclusiveWrite], shapes);
    }

    // The removal form: the writer moves down onto base and fl1 is deleted, in one transaction.
    [Fact]
    public void Shape_parallel_exclusive_write_positive_filter_removal()
    {
        var (shapes, reply) = Last([.. Branches(shareRw: false),
            """{"execute":"transaction","arguments":{"actions":[{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"d0","new-child":"base"}},{"type":"blockdev-del","data":{"node-name":"fl1"}}]}}"""]);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.ParallelExclusiveWrite], shapes);
    }

    // Near miss: with share-rw the writer is not exclusive; the stale write would not conflict.
    [Fact]
    public void Shape_parallel_exclusive_write_negative_shared_writer()
    {
        var (shapes, reply) = Last([.. Branches(shareRw: true), MoveToFl2]);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Empty(shapes);
    }

    // parallel-perm-update: as above, but fl1 keeps an idle parent, so both branches stay in use and the
    // write moves from one to the other (QEMU's write-to-selected switch).
    [Fact]
    public void Shape_parallel_perm_update_positive_write_moves_between_live_branches()
    {
        var (shapes, reply) = Last([.. Branches(shareRw: false), Add("""{"driver":"raw","node-name":"idle","file":"fl1"}"""), MoveToFl2]);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.ParallelPermUpdate], shapes);
    }

    // ... and back again: the same shape in the other direction, as QEMU's test switches twice.
    [Fact]
    public void Shape_parallel_perm_update_positive_and_back()
    {
        var (shapes, reply) = Last([.. Branches(shareRw: false), Add("""{"driver":"raw","node-name":"idle","file":"fl1"}"""),
            Add("""{"driver":"raw","node-name":"idle2","file":"fl2"}"""), MoveToFl2,
            """{"execute":"x-blockdev-replace","arguments":{"parent-type":"qdev","qdev-id":"d0","new-child":"fl1"}}"""]);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.ParallelPermUpdate], shapes);
    }

    // Near miss: fl2 sits on fl1, not beside it; the write reaches base through fl1 before and after.
    [Fact]
    public void Shape_parallel_perm_update_negative_branches_not_parallel()
    {
        var (shapes, reply) = Last(NullBase,
            Add("""{"driver":"raw","node-name":"fl1","file":"base"}"""),
            Add("""{"driver":"raw","node-name":"fl2","file":"fl1"}"""),
            Add("""{"driver":"raw","node-name":"idle","file":"fl1"}"""),
            """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d0","drive":"fl1"}}""",
            MoveToFl2);
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Empty(shapes);
    }

    /// <summary>
    /// The sharing part of one node's refresh (<c>Refresh.Nodes</c> without the read-only and lock checks):
    /// check the node's parents pairwise, then recompute its child edges. Refreshing nodes one by one in a
    /// chosen order evaluates the counterfactual orders the shapes are about.
    /// </summary>
    private static QmpError? RefreshInOrder(ref Graph g, params string[] order)
    {
        foreach (var n in order)
        {
            if (Permissions.Conflict(g, n) is { } conflict) return conflict;
            var (perm, shared) = Permissions.Cumulative(g, n);
            foreach (var e in g.ChildrenOf(n).ToList())
            {
                var (p, sh) = Drivers.ChildPerm(g, g.Nodes[n], e, perm, shared);
                g = g.Replace(e, e with { Perm = p, Shared = sh });
            }
        }
        return null;
    }

    /// <summary>The positive instances' graph just after d0's edge moved from fl1 to fl2, before any refresh.</summary>
    private static Graph MovedNotRefreshed(bool idleParent)
    {
        var s = ModelState.Initial;
        foreach (var line in idleParent ? [.. Branches(false), Add("""{"driver":"raw","node-name":"idle","file":"fl1"}""")] : Branches(false))
            s = Machine.Apply(s, JsonNode.Parse(line)!.AsObject()).State;
        var tx = Tx.Begin(s.Graph, s.NameCounter);
        return Operations.ReplaceChild(tx, s.Graph.RootEdge(new DeviceParent("d0"))!, "fl2").Graph;
    }

    // The counterfactuals behind both parallel shapes, evaluated on the model for the positive instances:
    // the topological order (both branches before base) accepts the move; reaching base through fl2's branch
    // before fl1's stale write is dropped (a depth-first order), or not refreshing fl1 at all, refuses it.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Shape_parallel_positives_need_topological_order_and_the_old_branch_refreshed(bool idleParent)
    {
        var g = MovedNotRefreshed(idleParent);
        var topo = g;
        Assert.Equal(["fl1", "fl2", "base"], Refresh.TopologicalOrder(g, ["fl2", "fl1"]).Where(n => n.StartsWith("fl", StringComparison.Ordinal) || n == "base"));
        Assert.Null(RefreshInOrder(ref topo, [.. Refresh.TopologicalOrder(g, ["fl2", "fl1"])]));
        var depthFirst = g;
        Assert.StartsWith("Permission conflict on node 'base'", RefreshInOrder(ref depthFirst, "fl2", "base", "fl1")?.Desc, StringComparison.Ordinal);
        var withoutOld = g;
        Assert.StartsWith("Permission conflict on node 'base'", RefreshInOrder(ref withoutOld, "fl2", "base")?.Desc, StringComparison.Ordinal);
    }

    /// <summary>A device writing src, then one transaction that inserts <paramref name="filter"/> under it.</summary>
    private static (IReadOnlyList<string>, Reply) Insert(string filter) => Last(
        Add("""{"driver":"null-co","node-name":"src"}"""), NullTgt,
        """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d0","drive":"src"}}""",
        """{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":""" + filter
            + """},{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"d0","new-child":"f"}}]}}""");

    // append-greedy-filter: strict copy-before-write unshares write on src; as a branch beside d0 it is refused.
    [Fact]
    public void Shape_append_greedy_filter_positive_cbw_under_writer()
    {
        var (shapes, reply) = Insert("""{"driver":"copy-before-write","node-name":"f","file":"src","target":"tgt"}""");
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Equal([Shapes.AppendGreedyFilter], shapes);
    }

    // Near miss: preallocate without parents takes and unshares nothing, so step-by-step accepts it too.
    [Fact]
    public void Shape_append_greedy_filter_negative_modest_filter()
    {
        var (shapes, reply) = Insert("""{"driver":"preallocate","node-name":"f","file":"src"}""");
        Assert.True(reply.IsOk, reply.ToString());
        Assert.Empty(shapes);
    }

    /// <summary>
    /// Random generation reaches every shape within the budget. The generator is the campaign's (without
    /// I/O steps, which the model alone does not run); each run starts from an empty block layer.
    /// </summary>
    [Fact]
    public void Shape_random_generation_hits_every_shape_within_the_budget()
    {
        var counts = Shapes.All.ToDictionary(s => s, _ => 0);
        var firstSeed = new Dictionary<string, int>();
        int steps = 0;
        for (int run = 0; run < Runs; run++)
        {
            var rnd = new Random(FirstSeed + run);
            var gen = new CommandGen(rnd.Next);
            var s = ModelState.Initial;
            for (int k = 0; k < StepsPerRun; k++, steps++)
            {
                var c = gen.Next(s);
                var (next, reply) = Machine.Apply(s, c);
                foreach (var shape in Shapes.Classify(s, c, next, reply))
                {
                    counts[shape]++;
                    firstSeed.TryAdd(shape, FirstSeed + run);
                }
                s = next;
            }
        }
        output.WriteLine($"budget: {steps} generated commands ({Runs} runs of {StepsPerRun}, seeds {FirstSeed}..{FirstSeed + Runs - 1})");
        foreach (var shape in Shapes.All)
            output.WriteLine($"{shape,-26} {counts[shape],5} hits ({counts[shape] * 10_000.0 / steps:0.0} per 10,000)  first at seed {(firstSeed.TryGetValue(shape, out var f) ? f : -1)}");
        var missed = Shapes.All.Where(x => counts[x] == 0).ToList();
        Assert.True(missed.Count == 0,
            $"not hit within {steps} commands (seeds {FirstSeed}..{FirstSeed + Runs - 1}, {StepsPerRun} steps each): {string.Join(", ", missed)}");
    }
}
