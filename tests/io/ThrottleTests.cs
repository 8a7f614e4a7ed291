// The throttle filter against QEMU's leaky-bucket arithmetic (util/throttle.c). Each test builds a
// graph over null-co nodes with QMP (object-add throttle-group, blockdev-add throttle) on an engine
// whose clock is a FakeClock, issues requests, and lets a pump advance fake time only to the deadlines
// the throttled requests ask for; it then compares the fake time each request was released at with
// what the algorithm prescribes. Without a burst rate a bucket holds a tenth of a second of its
// average, so with iops-total 10 two requests go at once and then one every 100 ms. Also checked:
// members of one group share its buckets, an unlimited group costs no wait and no allocation, group
// membership blocks object-del, and the limits are validated with QEMU's texts.
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Xunit;
using static Verified.Tests.IO.FilterKit;

namespace Verified.Tests.IO;

public sealed class ThrottleTests
{
    private static (BlockEngine Engine, FakeClock Clock) Setup(string limits, params string[] nodes)
    {
        var clock = new FakeClock();
        var e = NewEngine(clock);
        Ok(e, $$$$$"""{"execute":"object-add","arguments":{"qom-type":"throttle-group","id":"tg","limits":{{{{{limits}}}}}}}""");
        foreach (var n in nodes)
        {
            BlockdevAdd(e, $$$$"""{"driver":"null-co","node-name":"{{{{n}}}}-null","size":1048576,"read-zeroes":true}""");
            BlockdevAdd(e, $$$$"""{"driver":"throttle","node-name":"{{{{n}}}}","throttle-group":"tg","file":"{{{{n}}}}-null"}""");
        }
        return (e, clock);
    }

    /// <summary>Issues <paramref name="count"/> sequential requests and returns the fake time each completed at.</summary>
    private static async Task<long[]> TimedAsync(BlockEngine e, FakeClock clock, string node, int count, int size = 512, bool write = false)
    {
        var times = new long[count];
        var n = e.FindNode(node)!;
        var buf = new byte[size];
        await PumpAsync(clock, async () =>
        {
            for (int i = 0; i < count; i++)
            {
                if (write) await n.WriteAsync(0, buf);
                else await n.ReadAsync(0, buf);
                times[i] = clock.NowNs;
            }
        });
        return times;
    }

    private static void Near(double expectedSeconds, long ns) =>
        Assert.InRange(ns, (long)(expectedSeconds * Second) - Ms, (long)(expectedSeconds * Second) + Ms);

    [Fact]
    public async Task Iops_total_10_releases_20_requests_over_1_8_fake_seconds_two_at_once_then_one_per_100ms()
    {
        var (e, clock) = Setup("""{"iops-total":10}""", "thr");
        var t = await TimedAsync(e, clock, "thr", 20);
        Assert.Equal(0, t[0]);
        Assert.Equal(0, t[1]);
        for (int i = 2; i < 20; i++) Near((i - 1) * 0.1, t[i]);
        Near(1.8, t[19]);
    }

    [Fact]
    public async Task A_burst_runs_at_the_burst_rate_for_its_length_then_falls_back_to_the_average()
    {
        // iops-total 10, burst 50/s for 2 s: the main bucket holds 100 ops, the burst bucket 5.
        var (e, clock) = Setup("""{"iops-total":10,"iops-total-max":50,"iops-total-max-length":2}""", "thr");
        var t = await TimedAsync(e, clock, "thr", 150);
        for (int i = 0; i < 6; i++) Assert.Equal(0, t[i]);
        // Then one request every 20 ms (the burst rate) ...
        Near(0.02, t[6]);
        Near(54 * 0.02, t[59]);
        Near(0.02, t[100] - t[99]);
        // ... until 100 ops beyond the leak have gone, after which one every 100 ms (the average).
        Near(0.1, t[149] - t[148]);
        Near(1.0, t[149] - t[139]);
        Assert.True(t[149] < 6 * Second, $"burst too slow: {t[149]}");
    }

    [Fact]
    public async Task Two_nodes_in_one_group_share_its_budget()
    {
        var (e, clock) = Setup("""{"iops-total":10}""", "a", "b");
        var buf = new byte[512];
        long end = 0;
        await PumpAsync(clock, async () =>
        {
            async Task Ten(string node)
            {
                for (int i = 0; i < 10; i++) await e.FindNode(node)!.ReadAsync(0, buf);
            }
            await Task.WhenAll(Task.Run(() => Ten("a")), Task.Run(() => Ten("b")));
            end = clock.NowNs;
        });
        // 20 requests through one group take as long as 20 through one node.
        Near(1.8, end);
        var state = ThrottleState.Find(Driver<ThrottleDriver>(e, "a").Group!)!;
        Assert.Same(state, Driver<ThrottleDriver>(e, "b").State);
    }

    [Fact]
    public async Task A_node_alone_in_a_group_gets_the_whole_budget()
    {
        var (e, clock) = Setup("""{"iops-total":10}""", "a", "b");
        var t = await TimedAsync(e, clock, "a", 10);
        Near(0.8, t[9]);
    }

    [Fact]
    public void An_unlimited_group_adds_no_wait_and_no_allocation()
    {
        var (e, clock) = Setup("{}", "thr");
        var node = e.FindNode("thr")!;
        Assert.Null(Driver<ThrottleDriver>(e, "thr").State);
        var buf = new byte[512];
        for (int i = 0; i < 200; i++) Assert.True(Sync(node.ReadAsync(0, buf)));
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(Sync(node.ReadAsync(0, buf)));
            Assert.True(Sync(node.WriteAsync(0, buf)));
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(0, clock.NowNs);
        Assert.Equal(0, clock.WaiterCount);
    }

    [Fact]
    public void A_request_that_fits_the_buckets_completes_synchronously_without_allocating()
    {
        var (e, _) = Setup("""{"iops-total":1000000}""", "thr");
        var node = e.FindNode("thr")!;
        var buf = new byte[512];
        Assert.True(Sync(node.ReadAsync(0, buf)));
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.True(Sync(node.ReadAsync(0, buf)));
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public async Task Bps_read_limits_bytes_read_and_leaves_writes_alone()
    {
        // 1 MiB/s: the bucket holds 0.1 MiB; 256 KiB reads go at 0, 0.15 s, then every 0.25 s.
        var (e, clock) = Setup("""{"bps-read":1048576}""", "thr");
        var t = await TimedAsync(e, clock, "thr", 8, size: 262144);
        Assert.Equal(0, t[0]);
        Near(0.15, t[1]);
        Near(0.15 + 6 * 0.25, t[7]);
        long start = clock.NowNs;
        var w = await TimedAsync(e, clock, "thr", 8, size: 262144, write: true);
        Assert.Equal(start, w[7]);
    }

    [Fact]
    public async Task Iops_write_limits_writes_and_leaves_reads_alone()
    {
        var (e, clock) = Setup("""{"iops-write":1}""", "thr");
        var r = await TimedAsync(e, clock, "thr", 50);
        Assert.Equal(0, r[49]);
        var w = await TimedAsync(e, clock, "thr", 3, write: true);
        // The bucket holds 0.1 op: the second write waits 0.9 s, the third 1 s more.
        Near(0.9, w[1]);
        Near(1.9, w[2]);
    }

    [Fact]
    public async Task Iops_size_counts_a_large_request_as_several_operations()
    {
        var (e, clock) = Setup("""{"iops-total":10,"iops-size":4096}""", "thr");
        var t = await TimedAsync(e, clock, "thr", 3, size: 40960);
        // Each 40 KiB read is 10 ops: the second waits until the level is back to 1 (0.9 s), the third 1 s more.
        Near(0.9, t[1]);
        Near(1.9, t[2]);
    }

    [Fact]
    public async Task Discard_and_write_zeroes_are_throttled_as_writes_and_flush_is_not()
    {
        var (e, clock) = Setup("""{"iops-write":10}""", "thr");
        var n = e.FindNode("thr")!;
        await PumpAsync(clock, async () =>
        {
            for (int i = 0; i < 4; i++) await n.DiscardAsync(0, 4096);
            for (int i = 0; i < 4; i++) await n.WriteZeroesAsync(0, 4096);
        });
        Near(0.6, clock.NowNs);
        long before = clock.NowNs;
        for (int i = 0; i < 100; i++) Assert.True(Sync(n.FlushAsync()));
        Assert.Equal(before, clock.NowNs);
    }

    [Fact]
    public async Task Guest_io_through_a_device_is_throttled()
    {
        var (e, clock) = Setup("""{"iops-total":10}""", "thr");
        Ok(e, """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"thr"}}""");
        var dev = e.FindDevice("vd0")!;
        var buf = new byte[512];
        await PumpAsync(clock, async () =>
        {
            for (int i = 0; i < 5; i++) await dev.WriteAsync(0, buf);
        });
        Near(0.3, clock.NowNs);
    }

    [Fact]
    public void Object_del_is_refused_while_a_throttle_node_uses_the_group_and_allowed_after_blockdev_del()
    {
        var (e, _) = Setup("""{"iops-total":10}""", "thr");
        var group = Driver<ThrottleDriver>(e, "thr").Group!;
        Assert.Equal(1, group.Members);
        Assert.Equal("object 'tg' is in use, can not be deleted", Fails(e, """{"execute":"object-del","arguments":{"id":"tg"}}"""));
        Ok(e, """{"execute":"blockdev-del","arguments":{"node-name":"thr"}}""");
        Assert.Equal(0, group.Members);
        Ok(e, """{"execute":"object-del","arguments":{"id":"tg"}}""");
    }

    [Fact]
    public void Membership_counts_every_member_and_a_failed_add_leaves_none()
    {
        var (e, _) = Setup("""{"iops-total":10}""", "a", "b");
        var group = Driver<ThrottleDriver>(e, "a").Group!;
        Assert.Equal(2, group.Members);
        // A transaction that adds a third member and then fails rolls the membership back too.
        Fails(e, """
            {"execute":"transaction","arguments":{"actions":[
              {"type":"blockdev-add","data":{"driver":"throttle","node-name":"c","throttle-group":"tg","file":"a-null"}},
              {"type":"abort","data":{}}]}}
            """);
        Assert.Equal(2, group.Members);
        Ok(e, """{"execute":"blockdev-del","arguments":{"node-name":"a"}}""");
        Assert.Equal(1, group.Members);
    }

    [Fact]
    public void A_missing_group_is_refused_at_open()
    {
        var clock = new FakeClock();
        var e = NewEngine(clock);
        BlockdevAdd(e, """{"driver":"null-co","node-name":"n"}""");
        Assert.Equal("Throttle group 'nope' does not exist",
            Fails(e, """{"execute":"blockdev-add","arguments":{"driver":"throttle","node-name":"t","throttle-group":"nope","file":"n"}}"""));
    }

    [Theory]
    [InlineData("""{"iops-total-max":10}""", "bps_max/iops_max require corresponding bps/iops values")]
    [InlineData("""{"iops-total":10,"iops-total-max":5}""", "bps_max/iops_max cannot be lower than bps/iops")]
    [InlineData("""{"iops-total":10,"iops-read":5}""", "bps/iops/max total values and read/write values cannot be used at the same time")]
    [InlineData("""{"bps-total-max":10,"bps-write-max":5,"bps-total":1,"bps-write":0}""", "bps/iops/max total values and read/write values cannot be used at the same time")]
    [InlineData("""{"iops-size":4096}""", "iops size requires an iops value to be set")]
    [InlineData("""{"iops-total":10,"iops-total-max-length":2}""", "burst length set without burst rate")]
    [InlineData("""{"iops-total":10,"iops-total-max":20,"iops-total-max-length":0}""", "the burst length cannot be 0")]
    [InlineData("""{"bps-total":1000000000000001}""", "bps/iops/max values must be within [0, 1000000000000000]")]
    [InlineData("""{"bps-total":-1}""", "bps/iops/max values must be within [0, 1000000000000000]")]
    [InlineData("""{"iops-total":1,"iops-total-max":1000000000000000,"iops-total-max-length":2}""", "burst length too high for this burst rate")]
    [InlineData("""{"iops-read-max-length":4294967296}""", "iops-read-max-length value must be in the range [0, 4294967295]")]
    public void Invalid_limits_are_refused_with_qemus_text(string limits, string error)
    {
        var (l, err) = ThrottleLimits.Parse(limits);
        Assert.Null(l);
        Assert.Equal(error, err);
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("{}", false)]
    [InlineData("""{"iops-total":10,"iops-total-max":20,"iops-total-max-length":3,"iops-size":512}""", true)]
    [InlineData("""{"bps-read":1,"bps-write":2,"iops-read":3,"iops-write":4}""", true)]
    public void Valid_limits_parse(string? limits, bool enabled)
    {
        var (l, err) = ThrottleLimits.Parse(limits);
        Assert.Null(err);
        Assert.Equal(enabled, l!.Enabled);
    }

    [Fact]
    public void Invalid_limits_are_refused_at_object_add_and_create_nothing()
    {
        // QEMU checks a group's limits when the object is created (throttle_is_valid).
        var e = NewEngine(new FakeClock());
        Assert.Equal("bps_max/iops_max require corresponding bps/iops values",
            Fails(e, """{"execute":"object-add","arguments":{"qom-type":"throttle-group","id":"tg","limits":{"iops-total-max":10}}}"""));
        BlockdevAdd(e, """{"driver":"null-co","node-name":"n"}""");
        Assert.Equal("Throttle group 'tg' does not exist",
            Fails(e, """{"execute":"blockdev-add","arguments":{"driver":"throttle","node-name":"t","throttle-group":"tg","file":"n"}}"""));
    }
}
