using System.Buffers.Binary;
using System.Diagnostics;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// Filters inserted and removed under load: two writers (<see cref="StampedWriter"/>, each on its own
/// half of the disk, through two writable exports) and two readers (through a read-only export) stay
/// busy while throttle, copy-on-read and copy-before-write are put above the disk and taken away
/// again, each time in one transaction that moves all three exports (x-blockdev-replace) together,
/// for <see cref="Cycles"/> cycles. Readers check every block they read is whole (one write's stamp,
/// never torn) and no older than the last write acknowledged before the read was sent. Afterwards
/// the disk must hold every acknowledged write, no client may have seen an error, and the graph is
/// back to what it was.
/// </summary>
public class LiveInsertionTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const long DiskBytes = 4 << 20;

    /// <summary>Insert-and-remove cycles (each two transactions); a few seconds in all.</summary>
    private const int Cycles = 1000;

    /// <summary>A bound on the loop's time, whatever the machine's speed.</summary>
    private static readonly TimeSpan LoopTimeMax = TimeSpan.FromSeconds(45);

    private static readonly string[] Exports = ["w1", "w2", "r"];

    [NbdFact]
    public void Filters_come_and_go_under_load_without_losing_a_write()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes), ("temp", DiskBytes));
        rig.Ok("object-add", """{"qom-type": "throttle-group", "id": "tg", "limits": {"iops-total": 1000000}}""");
        rig.Export("w1", "disk", writable: true);
        rig.Export("w2", "disk", writable: true);
        rig.Export("r", "disk", writable: false);
        var nodesBefore = rig.NodeNames();
        int half = (int)(DiskBytes / StampedWriter.BlockBytes / 2);
        using var a = new StampedWriter(rig.NbdSocket, "w1", DiskBytes, seed: 1, firstBlock: 0, blockCount: half);
        using var b = new StampedWriter(rig.NbdSocket, "w2", DiskBytes, seed: 2, firstBlock: half, blockCount: half);
        using var stop = new CancellationTokenSource();
        var readers = new[] { 3, 4 }.Select(seed => Task.Run(() => Read(rig.NbdSocket, [a, b], seed, stop.Token))).ToArray();

        var sw = Stopwatch.StartNew();
        int done = 0;
        string[] filters =
        [
            """{"driver": "throttle", "node-name": "f", "throttle-group": "tg", "file": "disk"}""",
            """{"driver": "copy-on-read", "node-name": "f", "file": "disk"}""",
            """{"driver": "copy-before-write", "node-name": "f", "file": "disk", "target": "temp"}""",
        ];
        for (; done < Cycles && sw.Elapsed < LoopTimeMax; done++)
        {
            var add = $$$"""{"type": "blockdev-add", "data": {{{filters[done % filters.Length]}}}}""";
            rig.Ok("transaction", $"{{\"actions\": [{add}, {Replace("f")}]}}");
            rig.Ok("transaction", $"{{\"actions\": [{Replace("disk")}, {{\"type\": \"blockdev-del\", \"data\": {{\"node-name\": \"f\"}}}}]}}");
        }
        long writesDuring = a.Count + b.Count;
        stop.Cancel();
        a.Stop();
        b.Stop();
        var readErrors = readers.SelectMany(r => r.Result.Errors).ToList();
        output.WriteLine($"{done} cycles in {sw.Elapsed.TotalSeconds:F1} s; {writesDuring} writes, {readers.Sum(r => r.Result.Reads)} reads");

        Assert.True(done >= Cycles / 10, $"only {done} cycles in {LoopTimeMax}");
        Assert.True(writesDuring > done, $"the writers must stay busy: {writesDuring} writes over {done} cycles");
        Assert.True(readers.Sum(r => r.Result.Reads) > done, "the readers must stay busy");
        Assert.Empty(a.Errors);
        Assert.Empty(b.Errors);
        Assert.Empty(readErrors);
        Assert.Equal(nodesBefore, rig.NodeNames());
        var onDisk = NbdClientTests.ReadShared(rig.File("disk.raw"));
        foreach (var w in new[] { a, b })
        {
            var expected = w.Expected();
            Assert.True(onDisk.AsSpan(w.FirstBlock * StampedWriter.BlockBytes, expected.Length).SequenceEqual(expected), "an acknowledged write is missing");
        }
    }

    private static string Replace(string child) =>
        string.Join(", ", Exports.Select(e => $$$"""{"type": "x-blockdev-replace", "data": {"parent-type": "export", "export-id": "{{{e}}}", "new-child": "{{{child}}}"}}"""));

    private sealed record ReadResult(long Reads, List<string> Errors);

    /// <summary>Reads random blocks until stopped; each must be one write's whole stamp, no older than the last acknowledged before the read.</summary>
    private static ReadResult Read(string socket, StampedWriter[] writers, int seed, CancellationToken stop)
    {
        var errors = new List<string>();
        var random = new Random(seed);
        using var c = NbdTestClient.Connect(socket);
        if (c.Go("r") != 1) return new ReadResult(0, ["export r refused"]);
        int blocks = (int)(DiskBytes / StampedWriter.BlockBytes);
        var expect = new byte[StampedWriter.BlockBytes];
        long reads = 0;
        for (; !stop.IsCancellationRequested && errors.Count < 10; reads++)
        {
            int block = random.Next(blocks);
            var owner = writers.Single(w => w.Owns(block));
            long floor = owner.LastAcked(block);
            var (errno, data) = c.Read((long)block * StampedWriter.BlockBytes, StampedWriter.BlockBytes);
            if (errno != 0)
            {
                errors.Add($"read of block {block}: errno {errno}");
                continue;
            }
            long stamp = BinaryPrimitives.ReadInt64LittleEndian(data);
            StampedWriter.Fill(expect, stamp);
            if (!data.AsSpan().SequenceEqual(expect)) errors.Add($"block {block} is torn");
            else if (stamp < floor) errors.Add($"block {block} holds write {stamp}, older than {floor} acknowledged before the read");
        }
        return new ReadResult(reads, errors);
    }
}
