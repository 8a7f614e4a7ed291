using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// Fleecing with real NBD clients: while a writer (<see cref="StampedWriter"/>) keeps writing
/// through a writable export of <c>source</c>, a point-in-time view of <c>source</c> is made and
/// exported read-only; nbdcopy copies that view twice, with the writer going on in between, and
/// qemu-img compares it once more at the end: all copies must be equal, and equal to the image as the
/// writer's log says it was at the instant of the switch. Afterwards the writer's every acknowledged
/// write must be in <c>source</c>, no write may have failed, and the graph is back to what it was.
/// Done twice: the series' way (one transaction adds copy-before-write and moves the export onto it
/// with x-blockdev-replace, one transaction tears down), and QEMU 7.2's way (copy-before-write with
/// the upstream permission scheme, inserted below the format node with blockdev-reopen). A third
/// run over an engine built with a deliberate bug (copy-before-write writing before it copies) must
/// fail the point-in-time checks, so they are known to bite.
/// </summary>
public class FleecingTests
{
    private const long DiskBytes = 4 << 20;

    /// <summary>Writes the writer does before the switch, between the copies, and after teardown (each a few hundred milliseconds).</summary>
    private const int WritesPerPhase = 300;

    private static readonly TimeSpan PhaseTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The series' fleecing: one transaction in (cbw + replace + snapshot-access), one transaction out.</summary>
    [NbdFact]
    public void Series_fleecing_exports_a_point_in_time_view_while_the_writer_goes_on() => Fleece(SeriesSetUp, SeriesTearDown);

    /// <summary>The test has teeth: copy-before-write built to write before it copies (a deliberate bug) is caught as a view that is not point-in-time.</summary>
    [NbdFact]
    public void A_cbw_that_writes_before_copying_is_caught()
    {
        var e = Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Fleece(SeriesSetUp, SeriesTearDown, Verified.Impl.Engine.EngineMutation.WriteBeforeCopy));
        Assert.Matches("changed while the writer went on|holds write", e.Message);
    }

    private static readonly Action<NbdRig> SeriesSetUp = rig => rig.Ok("transaction", """
            {"actions": [
              {"type": "blockdev-add", "data": {"driver": "copy-before-write", "node-name": "fl-cbw", "file": "source", "target": "temp"}},
              {"type": "x-blockdev-replace", "data": {"parent-type": "export", "export-id": "src", "new-child": "fl-cbw"}},
              {"type": "blockdev-add", "data": {"driver": "snapshot-access", "node-name": "fl-access", "file": "fl-cbw"}}]}
            """);

    private static readonly Action<NbdRig> SeriesTearDown = rig => rig.Ok("transaction", """
            {"actions": [
              {"type": "x-blockdev-replace", "data": {"parent-type": "export", "export-id": "src", "new-child": "source"}},
              {"type": "blockdev-del", "data": {"node-name": "fl-access"}},
              {"type": "blockdev-del", "data": {"node-name": "fl-cbw"}}]}
            """);

    /// <summary>QEMU 7.2's fleecing: copy-before-write (upstream scheme) added on its own, then put under the format node by blockdev-reopen.</summary>
    [NbdFact]
    public void Qemu72_fleecing_with_blockdev_reopen_works_too() => Fleece(
        setUp: rig =>
        {
            rig.Ok("blockdev-add", """{"driver": "copy-before-write", "node-name": "fl-cbw", "file": "source-file", "target": "temp", "x-perm-scheme": "upstream"}""");
            rig.Ok("blockdev-reopen", """{"options": [{"driver": "raw", "node-name": "source", "file": "fl-cbw"}]}""");
            rig.Ok("blockdev-add", """{"driver": "snapshot-access", "node-name": "fl-access", "file": "fl-cbw"}""");
        },
        tearDown: rig =>
        {
            rig.Ok("blockdev-del", """{"node-name": "fl-access"}""");
            rig.Ok("blockdev-reopen", """{"options": [{"driver": "raw", "node-name": "source", "file": "source-file"}]}""");
            rig.Ok("blockdev-del", """{"node-name": "fl-cbw"}""");
        });

    private static void Fleece(Action<NbdRig> setUp, Action<NbdRig> tearDown, Verified.Impl.Engine.EngineMutation mutation = Verified.Impl.Engine.EngineMutation.None)
    {
        using var rig = NbdRig.Start(mutation, ("source-file", DiskBytes), ("temp", DiskBytes));
        rig.Ok("blockdev-add", """{"driver": "raw", "node-name": "source", "file": "source-file"}""");
        rig.Export("src", "source", writable: true);
        var nodesBefore = rig.NodeNames();
        using var writer = new StampedWriter(rig.NbdSocket, "src", DiskBytes, seed: 1);
        writer.WaitFor(WritesPerPhase, PhaseTimeout);

        long from = Stopwatch.GetTimestamp();
        setUp(rig);
        long to = Stopwatch.GetTimestamp();
        rig.Export("fleece", "fl-access", writable: false);

        var first = Copy(rig, "fleece", "snap1.raw");
        writer.WaitFor(WritesPerPhase, PhaseTimeout);
        var second = Copy(rig, "fleece", "snap2.raw");
        writer.WaitFor(WritesPerPhase, PhaseTimeout);
        var compare = NbdTools.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", rig.Uri("fleece"), rig.File("snap1.raw"));

        Assert.True(first.SequenceEqual(second), "the fleecing export changed while the writer went on");
        Assert.True(compare.Exit == 0, "qemu-img compare: " + compare.Out + compare.Err);
        Assert.Null(writer.CheckPointInTime(first, from, to));
        Assert.True(writer.WritesAfter(to) >= 2 * WritesPerPhase, "the writer must have gone on meanwhile");
        Assert.False(first.SequenceEqual(writer.Expected()), "the source must have moved on from the snapshot");

        rig.Ok("block-export-del", """{"id": "fleece"}""");
        tearDown(rig);
        writer.WaitFor(WritesPerPhase, PhaseTimeout);
        writer.Stop();
        Assert.Empty(writer.Errors);
        Assert.Equal(nodesBefore, rig.NodeNames());
        Assert.True(writer.Expected().SequenceEqual(Copy(rig, "src", "final.raw")), "an acknowledged write is missing from the source");
    }

    private static byte[] Copy(NbdRig rig, string export, string file)
    {
        var (exit, _, err) = NbdTools.Run("nbdcopy", rig.Uri(export), rig.File(file));
        Assert.True(exit == 0, $"nbdcopy {export}: {err}");
        return System.IO.File.ReadAllBytes(rig.File(file));
    }
}
