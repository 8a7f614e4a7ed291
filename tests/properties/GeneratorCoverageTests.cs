// The generators are only as good as what they reach. These tests run the command generator on
// fixed seeds and check that most commands are valid (so the properties test real transitions, not
// only refusals), that every command kind is generated and succeeds at least sometimes, and that
// the series' policy accepts strictly more than step-by-step checking on a known case.
using Verified.Model;
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Properties;

public class GeneratorCoverageTests(ITestOutputHelper output)
{
    /// <summary>Sequences and their length for the coverage sample.</summary>
    private const int Sequences = 200, SequenceLength = 40;

    [Fact]
    public void Generated_commands_are_mostly_valid_and_cover_every_kind()
    {
        var ok = new Dictionary<string, int>();
        var all = new Dictionary<string, int>();
        var rnd = new Random(12345);
        for (int i = 0; i < Sequences; i++)
        {
            var gen = new CommandGen(rnd.Next);
            var s = ModelState.Initial;
            for (int k = 0; k < SequenceLength; k++)
            {
                var c = gen.Next(s);
                var (next, reply) = Machine.Apply(s, c);
                all[c.Name] = all.GetValueOrDefault(c.Name) + 1;
                if (reply.IsOk) ok[c.Name] = ok.GetValueOrDefault(c.Name) + 1;
                s = next;
            }
        }
        foreach (var kv in all.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            output.WriteLine($"{kv.Key,-28} {kv.Value,6} generated {ok.GetValueOrDefault(kv.Key),6} accepted");
        int total = all.Values.Sum(), accepted = ok.Values.Sum();
        output.WriteLine($"total {total}, accepted {accepted} ({100.0 * accepted / total:0.0}%)");
        Assert.True(accepted * 100 >= total * 35, $"only {accepted} of {total} generated commands were accepted");
        string[] kinds = ["blockdev-add", "blockdev-del", "x-blockdev-replace", "blockdev-reopen", "device_add", "device_del", "qom-set",
            "nbd-server-start", "block-export-add", "block-export-del", "object-add", "object-del", "transaction"];
        foreach (var k in kinds) Assert.True(ok.GetValueOrDefault(k) > 0, $"{k} never succeeded");
    }

    /// <summary>The series' single refresh accepts the fleecing insertion that step-by-step checking refuses.</summary>
    [Fact]
    public void Final_graph_check_accepts_strictly_more()
    {
        var s = ModelState.Initial;
        foreach (var json in new[]
        {
            """{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"source"}}""",
            """{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"temp"}}""",
            """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"source"}}""",
        })
        {
            var (next, reply) = Machine.Apply(s, System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject());
            Assert.True(reply.IsOk, reply.ToString());
            s = next;
        }
        var (cmd, err) = CommandParser.ParseRequest(System.Text.Json.Nodes.JsonNode.Parse("""
            {"execute":"transaction","arguments":{"actions":[
              {"type":"blockdev-add","data":{"driver":"copy-before-write","node-name":"cbw","file":"source","target":"temp"}},
              {"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"vd0","new-child":"cbw"}}]}}
            """)!.AsObject());
        Assert.Null(err);
        var actions = ((Vocabulary.Transaction)cmd!).Actions;
        var final = Model.Transaction.Run(s.Graph, s.NameCounter, actions);
        var stepwise = Model.Transaction.Run(s.Graph, s.NameCounter, actions, refreshEveryAction: true);
        Assert.Null(final.Error);
        Assert.StartsWith("Permission conflict on node 'source'", stepwise.Error?.Desc, StringComparison.Ordinal);
    }
}
