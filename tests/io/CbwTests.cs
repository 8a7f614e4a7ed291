// copy-before-write and snapshot-access (the fleecing pair) on content-keeping storage. Each test
// adds RAM-backed x-memory nodes as source and target (through the Command API: x-memory is not in the
// QAPI schema), fills the source with a known pattern, then adds the copy-before-write filter and a
// snapshot-access node over it with QMP. Guest writes go through the filter (or a device on it), and
// the tests check that the old data of each touched 64 KiB cluster reaches the target before the new
// data lands on the source, once per cluster; that snapshot-access keeps showing the pattern however
// the source changes, even under concurrent writers and readers (a bounded stress whose readers compare
// every byte with the pattern); that writes to snapshot-access fail with ENOTSUP; and how a failing or
// slow target is handled under on-cbw-error break-guest-write and break-snapshot, with cbw-timeout
// measured on a FakeClock. Memory hooks hold requests at chosen points to pin down orderings.
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Xunit;
using static Verified.Tests.IO.FilterKit;

namespace Verified.Tests.IO;

public sealed class CbwTests
{
    private const int Size = 1 << 20;
    private const int Cluster = 64 * 1024;

    private sealed record Fleece(BlockEngine E, FakeClock Clock, MemoryDriver Src, MemoryDriver? Tgt, byte[] Original)
    {
        public CopyBeforeWriteDriver Cbw => Driver<CopyBeforeWriteDriver>(E, "cbw");
    }

    /// <summary>src (x-memory, filled) → cbw → target; snapshot-access "acc" over cbw.</summary>
    private static async Task<Fleece> SetupAsync(string cbwOptions = "", int size = Size, string? targetQmp = null)
    {
        var clock = new FakeClock();
        var e = NewEngine(clock);
        var src = AddMemory(e, "src", size);
        var original = Pattern(size, 1);
        await e.FindNode("src")!.WriteAsync(0, original);
        MemoryDriver? tgt = null;
        if (targetQmp is null) tgt = AddMemory(e, "tgt", size);
        else BlockdevAdd(e, targetQmp);
        BlockdevAdd(e, $$"""{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt"{{cbwOptions}}}""");
        BlockdevAdd(e, """{"driver":"snapshot-access","node-name":"acc","file":"cbw"}""");
        return new Fleece(e, clock, src, tgt, original);
    }

    private static byte[] Slice(byte[] b, long offset, int length) => b.AsSpan((int)offset, length).ToArray();

    [Fact]
    public async Task A_guest_write_copies_the_clusters_old_data_to_the_target_before_the_new_data_lands()
    {
        var f = await SetupAsync();
        byte[]? targetWhenWriteLanded = null;
        f.Src.Hook = async (op, off, len) =>
        {
            if (op == MemoryOp.Write) targetWhenWriteLanded = await ReadAsync(f.E, "tgt", Cluster, Cluster);
        };
        var data = Enumerable.Repeat((byte)0xEE, 4096).ToArray();
        await f.E.FindNode("cbw")!.WriteAsync(70000, data);
        Assert.Equal(Slice(f.Original, Cluster, Cluster), targetWhenWriteLanded);
        Assert.Equal(data, await ReadAsync(f.E, "src", 70000, 4096));
        Assert.Equal(Slice(f.Original, Cluster, Cluster), await ReadAsync(f.E, "tgt", Cluster, Cluster));
        // Only the touched cluster was copied; the target is untouched elsewhere.
        Assert.Equal(new byte[Cluster], await ReadAsync(f.E, "tgt", 0, Cluster));
        Assert.Equal(new byte[Cluster], await ReadAsync(f.E, "tgt", 2 * Cluster, Cluster));
        Assert.Equal(1, f.Cbw.CopiedClusters);
    }

    [Fact]
    public async Task Each_cluster_is_copied_at_most_once()
    {
        var f = await SetupAsync();
        var cbw = f.E.FindNode("cbw")!;
        await cbw.WriteAsync(Cluster + 10, new byte[100]);
        await cbw.WriteAsync(Cluster + 5000, new byte[100]);
        await cbw.WriteAsync(Cluster, new byte[Cluster]);
        Assert.Equal(1, f.Tgt!.Writes);
        Assert.Equal(1, f.Cbw.CopiedClusters);
        // A write over clusters 0..2 copies only 0 and 2, in one run each.
        await cbw.WriteAsync(100, new byte[2 * Cluster]);
        Assert.Equal(3, f.Cbw.CopiedClusters);
        Assert.Equal(3, f.Tgt.Writes);
        Assert.Equal(Slice(f.Original, 0, 3 * Cluster), await ReadAsync(f.E, "tgt", 0, 3 * Cluster));
    }

    [Fact]
    public async Task A_write_spanning_several_uncopied_clusters_copies_them_as_one_run()
    {
        var f = await SetupAsync();
        await f.E.FindNode("cbw")!.WriteAsync(Cluster - 1, new byte[2 * Cluster + 2]);
        Assert.Equal(4, f.Cbw.CopiedClusters);
        Assert.Equal(1, f.Tgt!.Writes);
        Assert.Equal(Slice(f.Original, 0, 4 * Cluster), await ReadAsync(f.E, "tgt", 0, 4 * Cluster));
    }

    [Fact]
    public async Task Snapshot_access_shows_the_point_in_time_view_after_further_writes()
    {
        var f = await SetupAsync();
        var cbw = f.E.FindNode("cbw")!;
        var rnd = new Random(7);
        for (int i = 0; i < 40; i++)
        {
            var data = new byte[rnd.Next(1, 100_000)];
            rnd.NextBytes(data);
            await cbw.WriteAsync(rnd.Next(0, Size - data.Length), data);
        }
        await cbw.WriteZeroesAsync(3 * Cluster, Cluster);
        await cbw.DiscardAsync(9 * Cluster, 2 * Cluster);
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
        Assert.NotEqual(f.Original, await ReadAsync(f.E, "cbw", 0, Size));
        Assert.Equal(Size, f.E.FindNode("acc")!.Length);
    }

    [Fact]
    public async Task Write_zeroes_and_discard_copy_old_data_first_too()
    {
        var f = await SetupAsync();
        var cbw = f.E.FindNode("cbw")!;
        await cbw.WriteZeroesAsync(0, 100);
        await cbw.DiscardAsync(5 * Cluster, Cluster);
        Assert.Equal(2, f.Cbw.CopiedClusters);
        Assert.Equal(Slice(f.Original, 0, Cluster), await ReadAsync(f.E, "tgt", 0, Cluster));
        Assert.Equal(Slice(f.Original, 5 * Cluster, Cluster), await ReadAsync(f.E, "tgt", 5 * Cluster, Cluster));
        Assert.Equal(new byte[Cluster], await ReadAsync(f.E, "src", 5 * Cluster, Cluster));
    }

    [Fact]
    public async Task Guest_writes_through_a_device_on_the_filter_are_copied_before_write()
    {
        var f = await SetupAsync();
        Ok(f.E, """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"cbw"}}""");
        var dev = f.E.FindDevice("vd0")!;
        await dev.WriteAsync(8 * Cluster, new byte[Cluster]);
        Assert.Equal(Slice(f.Original, 8 * Cluster, Cluster), await ReadAsync(f.E, "tgt", 8 * Cluster, Cluster));
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
    }

    [Fact]
    public async Task A_partial_last_cluster_is_copied_up_to_the_end_of_the_source()
    {
        var f = await SetupAsync(size: 100_000);
        await f.E.FindNode("cbw")!.WriteAsync(99_000, new byte[1000]);
        Assert.Equal(Slice(f.Original, Cluster, 100_000 - Cluster), await ReadAsync(f.E, "tgt", Cluster, 100_000 - Cluster));
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, 100_000));
    }

    [Fact]
    public async Task Writes_to_snapshot_access_fail_with_ENOTSUP()
    {
        var f = await SetupAsync();
        var acc = f.E.FindNode("acc")!;
        var err = await ThrowsErrnoAsync(Errnos.ENOTSUP, async () => await acc.WriteAsync(0, new byte[512]));
        Assert.Equal("Operation not supported", err.Message);
        await ThrowsErrnoAsync(Errnos.ENOTSUP, async () => await acc.WriteZeroesAsync(0, 512));
        Assert.Equal(f.Original, await ReadAsync(f.E, "src", 0, Size));
    }

    [Fact]
    public async Task A_writable_export_of_snapshot_access_is_accepted_and_its_writes_fail_with_ENOTSUP()
    {
        var f = await SetupAsync();
        Ok(f.E, """{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"/tmp/x.sock"}}}}""");
        Ok(f.E, """{"execute":"block-export-add","arguments":{"type":"nbd","id":"exp","node-name":"acc","writable":true}}""");
        var exp = f.E.Exports.Single();
        await ThrowsErrnoAsync(Errnos.ENOTSUP, async () => await exp.WriteAsync(0, new byte[512]));
        var b = new byte[4096];
        await exp.ReadAsync(0, b);
        Assert.Equal(Slice(f.Original, 0, 4096), b);
    }

    [Fact]
    public async Task A_snapshot_discard_makes_whole_clusters_unreadable_and_stops_copying_them()
    {
        var f = await SetupAsync();
        var acc = f.E.FindNode("acc")!;
        // Only whole clusters inside the range are dropped: [1000, 1000 + 2 clusters) covers cluster 1 alone.
        await acc.DiscardAsync(1000, 2 * Cluster);
        await ThrowsErrnoAsync(CopyBeforeWriteDriver.EACCES, () => ReadAsync(f.E, "acc", Cluster + 5, 10));
        await ThrowsErrnoAsync(CopyBeforeWriteDriver.EACCES, () => ReadAsync(f.E, "acc", 0, 2 * Cluster));
        Assert.Equal(Slice(f.Original, 0, Cluster), await ReadAsync(f.E, "acc", 0, Cluster));
        Assert.Equal(Slice(f.Original, 2 * Cluster, Cluster), await ReadAsync(f.E, "acc", 2 * Cluster, Cluster));
        long before = f.Tgt!.Writes;
        await f.E.FindNode("cbw")!.WriteAsync(Cluster, new byte[Cluster]);
        Assert.Equal(before, f.Tgt.Writes);
    }

    [Fact]
    public async Task Snapshot_access_over_a_node_without_the_snapshot_api_fails_reads_with_ENOTSUP()
    {
        var e = NewEngine(new FakeClock());
        BlockdevAdd(e, """{"driver":"null-co","node-name":"n","size":65536}""");
        BlockdevAdd(e, """{"driver":"snapshot-access","node-name":"acc","file":"n"}""");
        Assert.Equal(65536, e.FindNode("acc")!.Length);
        await ThrowsErrnoAsync(Errnos.ENOTSUP, () => ReadAsync(e, "acc", 0, 512));
    }

    [Fact]
    public async Task Break_guest_write_fails_the_guest_write_with_the_copy_error_and_leaves_the_source_alone()
    {
        // The target is too small: copying cluster 3 writes beyond its end (EINVAL).
        var f = await SetupAsync(targetQmp: """{"driver":"null-co","node-name":"tgt","size":65536}""");
        var cbw = f.E.FindNode("cbw")!;
        await ThrowsErrnoAsync(Errnos.EINVAL, async () => await cbw.WriteAsync(3 * Cluster + 7, new byte[100]));
        Assert.Equal(f.Original, await ReadAsync(f.E, "src", 0, Size));
        Assert.Equal(0, f.Cbw.SnapshotError);
        // The snapshot stays valid, and the failed cluster is tried again (and fails again).
        await ThrowsErrnoAsync(Errnos.EINVAL, async () => await cbw.WriteAsync(3 * Cluster, new byte[100]));
        await cbw.WriteAsync(0, new byte[100]);
        Assert.Equal(Slice(f.Original, Cluster, 3 * Cluster), await ReadAsync(f.E, "acc", Cluster, 3 * Cluster));
    }

    [Fact]
    public async Task Break_snapshot_lets_the_guest_write_succeed_and_invalidates_the_snapshot_with_EACCES()
    {
        var f = await SetupAsync(""","on-cbw-error":"break-snapshot" """, targetQmp: """{"driver":"null-co","node-name":"tgt","size":65536}""");
        var cbw = f.E.FindNode("cbw")!;
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
        await cbw.WriteAsync(3 * Cluster + 7, new byte[100]);
        Assert.Equal(new byte[100], await ReadAsync(f.E, "src", 3 * Cluster + 7, 100));
        Assert.Equal(Errnos.EINVAL, f.Cbw.SnapshotError);
        await ThrowsErrnoAsync(CopyBeforeWriteDriver.EACCES, () => ReadAsync(f.E, "acc", 0, 512));
        await ThrowsErrnoAsync(CopyBeforeWriteDriver.EACCES, () => ReadAsync(f.E, "acc", 3 * Cluster, 512));
        // No more copies: a write to an uncopied cluster goes straight to the source.
        await cbw.WriteAsync(0, new byte[100]);
        Assert.Equal(0, f.Cbw.CopiedClusters);
    }

    [Fact]
    public async Task A_copy_slower_than_cbw_timeout_fails_the_guest_write_with_ETIMEDOUT_under_break_guest_write()
    {
        var f = await SetupAsync(""","cbw-timeout":2""");
        f.Tgt!.Hook = async (op, _, _) =>
        {
            if (op != MemoryOp.Write) return;
            // Wait for cbw's timeout to be armed first: otherwise a slow machine lets the pump advance the
            // clock to this copy's end before the timeout exists, and the copy never times out.
            await WaitForAsync(() => f.Clock.WaiterCount >= 1);
            await f.Clock.WaitUntilAsync(10 * Second);
        };
        var cbw = f.E.FindNode("cbw")!;
        BlockIOException? err = null;
        await PumpAsync(f.Clock, async () => err = await Assert.ThrowsAsync<BlockIOException>(async () => await cbw.WriteAsync(Cluster, new byte[100])), untilNs: 2 * Second);
        Assert.Equal(Errnos.ETIMEDOUT, err!.Errno);
        Assert.Equal(2 * Second, f.Clock.NowNs);
        Assert.Equal(f.Original, await ReadAsync(f.E, "src", 0, Size));
        // The timed-out copy finishes in the background; the next write finds the cluster copied.
        f.Tgt.Hook = null;
        f.Clock.AdvanceTo(10 * Second);
        await WaitForAsync(() => f.Tgt.Writes == 1);
        await cbw.WriteAsync(Cluster, new byte[100]);
        Assert.Equal(1, f.Tgt.Writes);
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
    }

    [Fact]
    public async Task A_copy_slower_than_cbw_timeout_breaks_the_snapshot_under_break_snapshot()
    {
        var f = await SetupAsync(""","cbw-timeout":2,"on-cbw-error":"break-snapshot" """);
        f.Tgt!.Hook = async (op, _, _) =>
        {
            if (op != MemoryOp.Write) return;
            // Wait for cbw's timeout to be armed first: otherwise a slow machine lets the pump advance the
            // clock to this copy's end before the timeout exists, and the copy never times out.
            await WaitForAsync(() => f.Clock.WaiterCount >= 1);
            await f.Clock.WaitUntilAsync(10 * Second);
        };
        var cbw = f.E.FindNode("cbw")!;
        await PumpAsync(f.Clock, async () => await cbw.WriteAsync(Cluster, new byte[100]), untilNs: 2 * Second);
        Assert.Equal(2 * Second, f.Clock.NowNs);
        Assert.Equal(Errnos.ETIMEDOUT, f.Cbw.SnapshotError);
        Assert.Equal(new byte[100], await ReadAsync(f.E, "src", Cluster, 100));
        await ThrowsErrnoAsync(CopyBeforeWriteDriver.EACCES, () => ReadAsync(f.E, "acc", 0, 512));
        f.Clock.AdvanceTo(10 * Second);
    }

    [Fact]
    public async Task A_copy_within_cbw_timeout_succeeds()
    {
        var f = await SetupAsync(""","cbw-timeout":2""");
        f.Tgt!.Hook = async (op, _, _) =>
        {
            if (op == MemoryOp.Write) await f.Clock.WaitUntilAsync(f.Clock.NowNs + Second);
        };
        await PumpAsync(f.Clock, async () => await f.E.FindNode("cbw")!.WriteAsync(Cluster, new byte[100]));
        Assert.Equal(Second, f.Clock.NowNs);
        Assert.Equal(Slice(f.Original, Cluster, Cluster), await ReadAsync(f.E, "tgt", Cluster, Cluster));
        Assert.Equal(0, f.Clock.WaiterCount);
    }

    [Fact]
    public async Task A_second_writer_to_a_cluster_being_copied_waits_for_that_copy()
    {
        var f = await SetupAsync();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var copyStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int reads = 0;
        f.Src.Hook = async (op, _, _) =>
        {
            if (op == MemoryOp.Read && Interlocked.Increment(ref reads) == 1)
            {
                copyStarted.TrySetResult();
                await gate.Task;
            }
        };
        var cbw = f.E.FindNode("cbw")!;
        long srcWrites = f.Src.Writes;
        var a = Task.Run(async () => await cbw.WriteAsync(2 * Cluster, Enumerable.Repeat((byte)1, 100).ToArray()));
        await copyStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var b = Task.Run(async () => await cbw.WriteAsync(2 * Cluster + 1000, Enumerable.Repeat((byte)2, 100).ToArray()));
        await Task.Delay(100);
        Assert.False(a.IsCompleted);
        Assert.False(b.IsCompleted);
        Assert.Equal(srcWrites, f.Src.Writes);
        gate.SetResult();
        await Task.WhenAll(a, b).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, f.Tgt!.Writes);
        Assert.Equal(1, reads);
        Assert.Equal(Slice(f.Original, 2 * Cluster, Cluster), await ReadAsync(f.E, "tgt", 2 * Cluster, Cluster));
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
    }

    [Fact]
    public async Task A_guest_write_waits_for_a_snapshot_read_of_its_cluster_from_the_source()
    {
        var f = await SetupAsync();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var readStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int reads = 0;
        f.Src.Hook = async (op, _, _) =>
        {
            if (op == MemoryOp.Read && Interlocked.Increment(ref reads) == 1)
            {
                readStarted.TrySetResult();
                await gate.Task;
            }
        };
        long srcWrites = f.Src.Writes;
        var snap = Task.Run(() => ReadAsync(f.E, "acc", 4 * Cluster, Cluster));
        await readStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var write = Task.Run(async () => await f.E.FindNode("cbw")!.WriteAsync(4 * Cluster, new byte[Cluster]));
        // The write copies (its own read of the source is not held) and then waits for the snapshot read.
        await WaitForAsync(() => f.Tgt!.Writes == 1);
        await Task.Delay(50);
        Assert.False(write.IsCompleted);
        Assert.Equal(srcWrites, f.Src.Writes);
        gate.SetResult();
        Assert.Equal(Slice(f.Original, 4 * Cluster, Cluster), await snap.WaitAsync(TimeSpan.FromSeconds(10)));
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new byte[Cluster], await ReadAsync(f.E, "src", 4 * Cluster, Cluster));
        Assert.Equal(Slice(f.Original, 4 * Cluster, Cluster), await ReadAsync(f.E, "acc", 4 * Cluster, Cluster));
    }

    [Fact]
    public async Task Concurrent_writers_and_snapshot_readers_never_see_a_torn_point_in_time_view()
    {
        var f = await SetupAsync();
        async ValueTask Jitter(MemoryOp op, long off, long len)
        {
            if (Random.Shared.Next(3) == 0) await Task.Yield();
        }
        f.Src.Hook = Jitter;
        f.Tgt!.Hook = Jitter;
        var cbw = f.E.FindNode("cbw")!;
        var acc = f.E.FindNode("acc")!;
        int mismatches = 0, readsDone = 0;
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var rnd = new Random(100 + w);
            for (int i = 0; i < 150; i++)
            {
                var data = new byte[rnd.Next(1, 3 * Cluster)];
                rnd.NextBytes(data);
                long off = rnd.Next(0, Size - data.Length);
                switch (rnd.Next(6))
                {
                    case 0: await cbw.WriteZeroesAsync(off, data.Length); break;
                    case 1: await cbw.DiscardAsync(off, data.Length); break;
                    default: await cbw.WriteAsync(off, data); break;
                }
            }
        }));
        var readers = Enumerable.Range(0, 4).Select(r => Task.Run(async () =>
        {
            var rnd = new Random(200 + r);
            for (int i = 0; i < 150; i++)
            {
                int len = rnd.Next(1, 4 * Cluster);
                long off = rnd.Next(0, Size - len);
                var b = new byte[len];
                await acc.ReadAsync(off, b);
                if (!b.AsSpan().SequenceEqual(f.Original.AsSpan((int)off, len))) Interlocked.Increment(ref mismatches);
                Interlocked.Increment(ref readsDone);
            }
        }));
        await Task.WhenAll(writers.Concat(readers)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, mismatches);
        Assert.Equal(600, readsDone);
        Assert.Equal(f.Original, await ReadAsync(f.E, "acc", 0, Size));
        // Every copied cluster holds its original content on the target.
        var target = f.Tgt.Snapshot();
        for (int c = 0; c < Size / Cluster; c++)
        {
            var t = target.AsSpan(c * Cluster, Cluster);
            Assert.True(t.SequenceEqual(f.Original.AsSpan(c * Cluster, Cluster)) || !t.ContainsAnyExcept((byte)0), $"cluster {c}");
        }
    }

    [Fact]
    public async Task The_bitmap_option_makes_every_cluster_a_candidate_until_bitmap_contents_are_tracked()
    {
        var clock = new FakeClock();
        var e = NewEngine(clock);
        AddMemory(e, "src", Size);
        var tgt = AddMemory(e, "tgt", Size);
        await e.FindNode("src")!.WriteAsync(0, Pattern(Size, 3));
        Ok(e, """{"execute":"block-dirty-bitmap-add","arguments":{"node":"src","name":"b0"}}""");
        BlockdevAdd(e, """{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt","bitmap":{"node":"src","name":"b0"}}""");
        await e.FindNode("cbw")!.WriteAsync(5 * Cluster, new byte[10]);
        Assert.Equal(1, tgt.Writes);
        Assert.Equal(CopyBeforeWriteDriver.DefaultClusterSize, Driver<CopyBeforeWriteDriver>(e, "cbw").ClusterSize);
    }

    [Fact]
    public void The_filter_nodes_are_served_by_their_drivers()
    {
        var e = NewEngine(new FakeClock());
        AddMemory(e, "src", Size);
        AddMemory(e, "tgt", Size);
        BlockdevAdd(e, """{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tgt"}""");
        BlockdevAdd(e, """{"driver":"snapshot-access","node-name":"acc","file":"cbw"}""");
        Driver<CopyBeforeWriteDriver>(e, "cbw");
        Driver<SnapshotAccessDriver>(e, "acc");
        Driver<MemoryDriver>(e, "src");
        Assert.Contains("x-memory", DriverRegistry.Names);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition never held");
            await Task.Delay(1);
        }
    }
}
