// blkdebug's error injection, as QEMU does it: each test builds raw over blkdebug over a temporary
// file (raw announces the read_aio/write_aio events blkdebug rules wait for), attaches a device and
// checks which requests fail and with which errno: the configured errno, a once-rule firing once, a
// sector-rule hitting only requests that cover its sector, an iotype-rule hitting only its request
// type, rules staying dormant until their event, and state-dependent rules. It also checks that the
// align and max-transfer options keep data intact for unaligned requests and that bad values are
// refused with QEMU's texts.
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.IO;

public sealed class BlkdebugDriverTests
{
    private const int FileSize = 65536;

    private static string Stack(string path, string blkdebugOptions) =>
        $$$$"""{"driver":"raw","node-name":"n","file":{"driver":"blkdebug","node-name":"dbg"{{{{blkdebugOptions}}}},"image":{"driver":"file","node-name":"f","filename":"{{{{path}}}}"}}}""";

    [Fact]
    public async Task An_injected_read_error_surfaces_with_the_configured_errno()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","errno":28}]"""));
        var dev = e.Device("vd0", "n");
        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[512]));
        Assert.Equal(Errnos.ENOSPC, ex.Errno);
        // Still active: the next read fails too.
        ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(4096, new byte[512]));
        Assert.Equal(Errnos.ENOSPC, ex.Errno);
    }

    [Fact]
    public async Task The_errno_defaults_to_EIO()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"write_aio"}]"""));
        var dev = e.Device("vd0", "n");
        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.WriteAsync(0, new byte[512]));
        Assert.Equal(Errnos.EIO, ex.Errno);
    }

    [Fact]
    public async Task A_once_rule_fails_exactly_one_request()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","once":true}]"""));
        var dev = e.Device("vd0", "n");
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[512]));
        var buf = new byte[512];
        await dev.ReadAsync(0, buf);
        await dev.ReadAsync(0, buf);
        Assert.Equal(img.ReadAll().AsSpan(0, 512).ToArray(), buf);
    }

    [Fact]
    public async Task A_sector_rule_fails_only_requests_covering_that_sector()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","sector":10,"errno":5}]"""));
        var dev = e.Device("vd0", "n");
        await dev.ReadAsync(0, new byte[5120]);          // sectors 0..9
        await dev.ReadAsync(5121, new byte[4096]);       // starts after sector 10's first byte
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(5120, new byte[1]));
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[5121]));
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(4096, new byte[4096]));
    }

    [Fact]
    public async Task An_iotype_rule_fails_only_its_kind_of_request()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","iotype":"write","errno":1}]"""));
        var dev = e.Device("vd0", "n");
        await dev.ReadAsync(0, new byte[512]);  // the event activates the rule; a read does not match it
        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.WriteAsync(0, new byte[512]));
        Assert.Equal(Errnos.EPERM, ex.Errno);
        await dev.ReadAsync(0, new byte[512]);
    }

    [Fact]
    public async Task Without_an_iotype_an_active_rule_also_fails_flushes()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","errno":5}]"""));
        var dev = e.Device("vd0", "n");
        await dev.FlushAsync();
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[512]));
        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.FlushAsync());
        Assert.Equal(Errnos.EIO, ex.Errno);
    }

    [Fact]
    public async Task Rules_stay_dormant_until_their_event_happens()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        // No format driver above blkdebug: nothing announces read_aio, as in QEMU.
        e.AddOk($$$$"""{"driver":"blkdebug","node-name":"dbg","inject-error":[{"event":"read_aio"}],"image":{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}"}}""");
        var dev = e.Device("vd0", "dbg");
        var buf = new byte[512];
        await dev.ReadAsync(0, buf);
        await dev.WriteAsync(0, buf);
        Assert.Equal(img.ReadAll().AsSpan(0, 512).ToArray(), buf);
    }

    [Fact]
    public async Task A_pwritev_rule_fails_writes_on_the_blkdebug_node_itself()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk($$$$"""{"driver":"blkdebug","node-name":"dbg","inject-error":[{"event":"pwritev","errno":28,"once":true}],"image":{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}"}}""");
        var dev = e.Device("vd0", "dbg");
        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.WriteAsync(0, new byte[512]));
        Assert.Equal(Errnos.ENOSPC, ex.Errno);
        await dev.WriteAsync(0, new byte[512]);
    }

    [Fact]
    public async Task A_state_bound_rule_waits_for_a_set_state_rule_to_reach_its_state()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Stack(img.Path, ""","inject-error":[{"event":"read_aio","state":2}],"set-state":[{"event":"write_aio","state":1,"new_state":2}]"""));
        var dev = e.Device("vd0", "n");
        var dbg = (BlkdebugDriver)e.Engine.FindNode("dbg")!.Driver;
        await dev.ReadAsync(0, new byte[512]);       // state 1: the rule does not apply
        Assert.Equal(1, dbg.State);
        await dev.WriteAsync(0, new byte[512]);      // write_aio moves to state 2
        Assert.Equal(2, dbg.State);
        await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[512]));
    }

    [Fact]
    public async Task Unaligned_requests_through_an_aligned_blkdebug_round_trip()
    {
        using var img = new TempImage(FileSize);
        var model = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(Stack(img.Path, ""","align":4096,"max-transfer":8192"""));
            var dev = e.Device("vd0", "n");
            var rng = new Random(7);
            for (int i = 0; i < 30; i++)
            {
                int off = rng.Next(FileSize - 20_000), len = rng.Next(1, 20_000);
                var data = new byte[len];
                rng.NextBytes(data);
                await dev.WriteAsync(off, data);
                data.CopyTo(model, off);
                var back = new byte[len];
                await dev.ReadAsync(off, back);
                Assert.Equal(data, back);
            }
        }
        Assert.Equal(model, img.ReadAll());
    }

    [Theory]
    [InlineData("\"align\":3000", "Cannot meet constraints with align 3000")]
    [InlineData("\"align\":512,\"max-transfer\":1000", "Cannot meet constraints with max-transfer 1000")]
    [InlineData("\"inject-error\":[{\"event\":\"no_such_event\"}]", "invalid parameter value: no_such_event")]
    public void Bad_blkdebug_options_are_refused_with_QEMUs_texts(string options, string expected)
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        Assert.Equal(expected, e.Add(Stack(img.Path, "," + options)).Error!.Desc);
        Assert.Empty(e.NodeNames());
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }

    [Fact]
    public async Task Rules_can_come_from_a_config_file()
    {
        using var img = new TempImage(FileSize);
        var config = Path.Combine(Path.GetTempPath(), $"verified-blkdebug-{Guid.NewGuid():N}.conf");
        File.WriteAllText(config, "# injected by the test\n[inject-error]\nevent = \"read_aio\"\nerrno = \"28\"\n");
        try
        {
            using var e = new IoEngine();
            e.AddOk(Stack(img.Path, $$$$""","config":"{{{{config}}}}" """));
            var dev = e.Device("vd0", "n");
            var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(0, new byte[512]));
            Assert.Equal(Errnos.ENOSPC, ex.Errno);
        }
        finally
        {
            File.Delete(config);
        }
    }
}
