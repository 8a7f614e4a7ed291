// The judge itself: it must see a difference when there is one. These tests feed it sequences whose
// outcome is known and check that agreement and disagreement are both reported, so that a green
// differential property means agreement rather than a judge that looks at nothing.
using System.Text.Json.Nodes;
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Properties;

public class JudgeTests
{
    private static Command Parse(string json)
    {
        var (c, e) = CommandParser.ParseRequest(JsonNode.Parse(json)!.AsObject());
        Assert.Null(e);
        return c!;
    }

    [Fact]
    public void Judge_reports_agreement_on_a_fleecing_sequence()
    {
        using var judge = new Judge();
        foreach (var json in new[]
        {
            """{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"src"}}""",
            """{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"tmp"}}""",
            """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"src"}}""",
            """{"execute":"blockdev-add","arguments":{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tmp"}}""",
            """{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tmp"}},{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"vd0","new-child":"cbw"}}]}}""",
        })
        {
            Assert.Null(judge.Step(Parse(json)));
        }
    }

    [Fact]
    public void Different_replies_and_states_are_reported()
    {
        Assert.NotNull(Judge.CompareReplies(Reply.Ok(), new Reply(null, QmpError.Generic("x"))));
        Assert.NotNull(Judge.CompareReplies(new Reply(null, QmpError.Generic("a")), new Reply(null, QmpError.Generic("b"))));
        Assert.Null(Judge.CompareReplies(new Reply(null, QmpError.Generic("a")), new Reply(null, QmpError.Generic("a"))));
        Assert.Contains("- model: b", Canonical.Diff("a\nb\n", "a\nc\n"), StringComparison.Ordinal);
        Assert.Equal("", Canonical.Diff("a\n", "a\n"));
    }

    [Fact]
    public void Lock_conflicts_agree()
    {
        using var judge = new Judge();
        var f = judge.Files[0];
        var d1 = judge.Step(Parse("""{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"q0","file":{"driver":"file","node-name":"f0","filename":"F"}}}""".Replace("F", f, StringComparison.Ordinal)));
        var d2 = judge.Step(Parse("""{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"q1","file":{"driver":"file","node-name":"f1","filename":"F"}}}""".Replace("F", f, StringComparison.Ordinal)));
        Assert.Null(d1);
        Assert.Null(d2);
    }
}
