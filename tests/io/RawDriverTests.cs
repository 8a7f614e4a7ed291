// The raw format driver's window over its file child: each test fills a temporary file with a known
// byte pattern, opens raw with offset and/or size through blockdev-add, and checks through a device
// that reads and writes are shifted by the offset, that the node is as long as the window, that
// requests leaving the window fail with the errno QEMU uses (EINVAL for reads; the driver itself
// refuses writes with ENOSPC), that the file outside the window is untouched, and that QEMU's
// open-time errors for bad windows come with QEMU's texts.
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.IO;

public sealed class RawDriverTests
{
    private const int FileSize = 65536;

    private static string Raw(string path, string window) =>
        $$$$"""{"driver":"raw","node-name":"n"{{{{window}}}},"file":{"driver":"file","node-name":"f","filename":"{{{{path}}}}"}}""";

    [Fact]
    public async Task Data_written_through_raw_with_offset_lands_at_the_offset()
    {
        using var img = new TempImage(FileSize);
        var before = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(Raw(img.Path, ""","offset":4096"""));
            var dev = e.Device("vd0", "n");
            Assert.Equal(FileSize - 4096, dev.Length);
            var first = new byte[16];
            await dev.ReadAsync(0, first);
            Assert.Equal(before.AsSpan(4096, 16).ToArray(), first);
            await dev.WriteAsync(10, new byte[] { 0xEE, 0xEF });
        }
        var after = img.ReadAll();
        Assert.Equal(0xEE, after[4106]);
        Assert.Equal(0xEF, after[4107]);
        after[4106] = before[4106];
        after[4107] = before[4107];
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task Raw_size_bounds_the_node_and_reads_outside_it_fail_with_EINVAL()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw(img.Path, ""","offset":512,"size":1024"""));
        var dev = e.Device("vd0", "n");
        Assert.Equal(1024, dev.Length);

        var ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.ReadAsync(1000, new byte[100]));
        Assert.Equal(Errnos.EINVAL, ex.Errno);
        ex = await Assert.ThrowsAsync<BlockIOException>(async () => await dev.WriteAsync(1024, new byte[1]));
        Assert.Equal(Errnos.EINVAL, ex.Errno);

        var last = new byte[24];
        await dev.ReadAsync(1000, last);
        Assert.Equal(img.ReadAll().AsSpan(1512, 24).ToArray(), last);
    }

    [Fact]
    public async Task The_raw_driver_refuses_writes_past_its_window_with_ENOSPC_and_reads_with_EINVAL()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw(img.Path, ""","offset":512,"size":1024"""));
        e.Device("vd0", "n");
        var raw = e.Engine.FindNode("n")!.Driver;
        var w = await Assert.ThrowsAsync<BlockIOException>(async () => await raw.WriteAsync(1020, new byte[8], WriteFlags.None));
        Assert.Equal(Errnos.ENOSPC, w.Errno);
        var r = await Assert.ThrowsAsync<BlockIOException>(async () => await raw.ReadAsync(1020, new byte[8]));
        Assert.Equal(Errnos.EINVAL, r.Errno);
        var z = await Assert.ThrowsAsync<BlockIOException>(async () => await raw.WriteZeroesAsync(-1, 8, WriteFlags.None));
        Assert.Equal(Errnos.ENOSPC, z.Errno);
    }

    [Fact]
    public async Task Write_zeroes_and_discard_through_raw_are_shifted_by_the_offset()
    {
        using var img = new TempImage(FileSize);
        var before = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(Raw(img.Path, ""","offset":8192,"size":16384,"discard":"unmap" """));
            var dev = e.Device("vd0", "n");
            await dev.WriteZeroesAsync(100, 50);
            await dev.DiscardAsync(4096, 4096);
        }
        var after = img.ReadAll();
        Assert.All(after.AsSpan(8292, 50).ToArray(), b => Assert.Equal(0, b));
        Assert.All(after.AsSpan(12288, 4096).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(before.AsSpan(0, 8292).ToArray(), after.AsSpan(0, 8292).ToArray());
        Assert.Equal(before.AsSpan(16384).ToArray(), after.AsSpan(16384).ToArray());
    }

    [Fact]
    public void An_offset_past_the_end_of_the_file_is_refused_with_QEMUs_text()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        var r = e.Add(Raw(img.Path, ""","offset":70000"""));
        Assert.Equal("Offset (70000) cannot be greater than size of the underlying file (65536)", r.Error!.Desc);
        Assert.Empty(e.NodeNames());
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }

    [Fact]
    public void A_window_past_the_end_of_the_file_is_refused_with_QEMUs_text()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        var r = e.Add(Raw(img.Path, ""","offset":512,"size":65536"""));
        Assert.Equal("The sum of offset (512) and size (65536) has to be smaller or equal to the  actual size of the containing file (65536)", r.Error!.Desc);
    }

    [Fact]
    public void A_size_that_is_not_a_multiple_of_512_is_refused_with_QEMUs_text()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        Assert.Equal("Specified size is not multiple of 512", e.Add(Raw(img.Path, ""","size":1000""")).Error!.Desc);
    }
}
