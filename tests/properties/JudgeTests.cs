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

/// <summary>
/// Data: the model predicts bytes and the judge compares them with what the implementation reads back.
/// These cases pin predictions that are known by hand (a raw offset shifts data; copy-before-write keeps
/// the point-in-time view for snapshot-access) and check the judge agrees with the implementation.
/// </summary>
public class DataJudgeTests
{
    private static Command Qmp(string json, string file) =>
        CommandParser.ParseRequest(JsonNode.Parse(json.Replace("FILE", file, StringComparison.Ordinal))!.AsObject()).Command!;

    private static void Steps(Judge j, params Command[] steps)
    {
        foreach (var s in steps)
        {
            Assert.Null(j.Step(s));
            Assert.True(j.LastReply?.IsOk, $"{s.Name}: {j.LastReply}");
        }
    }

    [Fact]
    public void Raw_offset_shifts_data_and_the_judge_agrees()
    {
        using var j = new Judge();
        var f = j.Files[0];
        Steps(j,
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"FILE"}}""", f),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":"f","offset":512}}""", f),
            Qmp("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d0","drive":"r","share-rw":true}}""", f),
            Qmp("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d1","drive":"f","share-rw":true}}""", f),
            new IoStep("d0", true, 0, 1024, 0xab));
        var (_, err, data) = new IoStep("d1", false, 0, 2048, 0).Predict(j.Model);
        Assert.Equal(0, err);
        Assert.Equal(new byte?[] { 0, 0xab, 0xab, 0 }, data);
        Assert.Null(j.Step(new IoStep("d1", false, 0, 2048, 0)));
    }

    [Fact]
    public void Snapshot_access_keeps_the_point_in_time_view_and_the_judge_agrees()
    {
        using var j = new Judge();
        Steps(j,
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"src","filename":"FILE"}}""", j.Files[0]),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"tgt","filename":"FILE"}}""", j.Files[1]),
            Qmp("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"d0","drive":"src"}}""", ""),
            new IoStep("d0", true, 0, 65536 * 2, 0x11),
            Qmp("""{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt"}},{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"d0","new-child":"cbw"}}]}}""", ""),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"snapshot-access","node-name":"snap","file":"cbw"}}""", ""),
            Qmp("""{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"/tmp/x.sock"}}}}""", ""),
            Qmp("""{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"snap"}}""", ""),
            new IoStep("d0", true, 512, 512, 0x22));
        var (_, _, view) = new IoStep("e0", false, 0, 1536, 0).Predict(j.Model);
        Assert.Equal(new byte?[] { 0x11, 0x11, 0x11 }, view);   // the snapshot still shows the old data
        var (_, _, live) = new IoStep("d0", false, 0, 1536, 0).Predict(j.Model);
        Assert.Equal(new byte?[] { 0x11, 0x22, 0x11 }, live);   // the device sees its write
        Assert.Null(j.Step(new IoStep("e0", false, 0, 1536, 0)));
        Assert.Null(j.Step(new IoStep("d0", false, 0, 1536, 0)));
        var (_, werr, _) = new IoStep("e0", true, 0, 512, 1).Predict(j.Model);
        Assert.Equal(1, werr); // a read-only export has no write permission: EPERM
    }

    [Fact]
    public void Copies_of_unknown_bytes_stay_unknown()
    {
        // Found by campaign 356/60: copy-before-write over null-co (no read-zeroes) copied "zeroes" into
        // the target in the model, while QEMU's null-co leaves the copy buffer as it was.
        using var j = new Judge();
        Steps(j,
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"src","size":1048576}}""", ""),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"tgt","filename":"FILE"}}""", j.Files[1]),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt"}}""", ""),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"zero","size":1048576,"read-zeroes":true}}""", ""),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"tgt2","filename":"FILE"}}""", j.Files[0]),
            Qmp("""{"execute":"blockdev-add","arguments":{"driver":"copy-before-write","node-name":"cbw2","file":"zero","target":"tgt2"}}""", ""));
        Assert.False(Verified.Model.Data.Predictable(j.Model, "cbw"));
        Assert.True(Verified.Model.Data.Predictable(j.Model, "cbw2"));
    }
}
