// The file protocol driver against real host files: each test builds a graph through QMP
// (blockdev-add of raw over file, or file alone), attaches a virtio-blk device and does I/O through
// it, then compares what the device reads with what the test wrote and with the bytes the host file
// holds (read with File.ReadAllBytes after the engine is disposed, so after every descriptor closed).
// Covered: round trips and persistence, flush (also with cache.no-flush), O_DIRECT with unaligned
// offsets, lengths and buffers, discard and write-zeroes reading back zeroes, and QEMU's open errors.
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.IO;

public sealed class FileDriverTests
{
    private const int ImageSize = 1 << 20;

    private static string RawOverFile(string path, string extra = "", string fileExtra = "") =>
        $$$$"""{"driver":"raw","node-name":"n"{{{{extra}}}},"file":{"driver":"file","node-name":"f","filename":"{{{{path}}}}"{{{{fileExtra}}}}}}""";

    [Fact]
    public async Task Data_written_through_a_file_node_reads_back_and_persists_after_the_engine_is_disposed()
    {
        using var img = new TempImage(ImageSize);
        var data = new byte[3000];
        new Random(1).NextBytes(data);
        using (var e = new IoEngine())
        {
            e.AddOk(RawOverFile(img.Path));
            var dev = e.Device("vd0", "n");
            Assert.Equal(ImageSize, dev.Length);

            var before = new byte[64];
            await dev.ReadAsync(100, before);
            Assert.Equal(Enumerable.Range(100, 64).Select(i => TempImage.PatternByte(i)), before);

            await dev.WriteAsync(12345, data);
            await dev.FlushAsync();
            var back = new byte[data.Length];
            await dev.ReadAsync(12345, back);
            Assert.Equal(data, back);
        }
        var file = img.ReadAll();
        Assert.Equal(ImageSize, file.Length);
        Assert.Equal(data, file.AsSpan(12345, data.Length).ToArray());
        Assert.Equal(TempImage.PatternByte(12344), file[12344]);
        Assert.Equal(TempImage.PatternByte(12345 + data.Length), file[12345 + data.Length]);
    }

    [Fact]
    public async Task A_file_node_used_directly_by_a_device_reads_the_file()
    {
        using var img = new TempImage(8192);
        using var e = new IoEngine();
        e.AddOk($$$$"""{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}"}""");
        var dev = e.Device("vd0", "f");
        var all = new byte[8192];
        await dev.ReadAsync(0, all);
        Assert.Equal(img.ReadAll(), all);
    }

    [Fact]
    public async Task Flush_succeeds_with_and_without_cache_no_flush()
    {
        using var img = new TempImage(65536);
        using var e = new IoEngine();
        e.AddOk(RawOverFile(img.Path));
        e.AddOk($$$$"""{"driver":"raw","node-name":"m","cache":{"no-flush":true},"file":{"driver":"file","node-name":"g","filename":"{{{{img.Path}}}}","locking":"off"}}""");
        var d0 = e.Device("vd0", "n", shareRw: true);
        await d0.WriteAsync(0, new byte[] { 1, 2, 3 }, WriteFlags.Fua);
        await d0.FlushAsync();
        var g = e.Engine.FindNode("g")!;
        Assert.True(Verified.Impl.IO.DriverOptions.CacheFlag(g, "no-flush"), "an inline child inherits cache.no-flush");
        await g.FlushAsync();
    }

    [Fact]
    public void A_missing_file_is_refused_with_QEMUs_text()
    {
        using var e = new IoEngine();
        var path = Path.Combine(Path.GetTempPath(), $"verified-missing-{Guid.NewGuid():N}.img");
        var err = e.Error($$$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"{{{{path}}}}"}}""");
        Assert.Equal($"Could not open '{path}': No such file or directory", err);
        Assert.Empty(e.NodeNames());
    }

    [Fact]
    public void A_directory_is_refused_read_write_by_open_and_read_only_as_not_a_regular_file()
    {
        var dir = Directory.CreateTempSubdirectory("verified-dir-").FullName;
        try
        {
            using var e = new IoEngine();
            Assert.Equal($"Could not open '{dir}': Is a directory",
                e.Error($$$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"{{{{dir}}}}"}}"""));
            Assert.Equal($"'file' driver requires '{dir}' to be a regular file",
                e.Error($$$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"{{{{dir}}}}","read-only":true}}"""));
            Assert.Equal(0, Fds.OpenOn(dir));
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    [Fact]
    public void Aio_native_without_cache_direct_is_refused_with_QEMUs_text()
    {
        using var img = new TempImage(4096);
        using var e = new IoEngine();
        Assert.Equal("aio=native was specified, but it requires cache.direct=on, which was not specified.",
            e.Error($$$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}","aio":"native"}}"""));
    }

    [Fact]
    public async Task Unaligned_reads_and_writes_with_O_DIRECT_round_trip()
    {
        using var img = new TempImage(ImageSize);
        var model = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(RawOverFile(img.Path, extra: ""","cache":{"direct":true}"""));
            var file = (FileDriver)e.Engine.FindNode("f")!.Driver;
            Assert.True(file.Direct, "the inline file child inherits cache.direct");
            Assert.True(file.RequestAlignment >= 512, $"O_DIRECT alignment {file.RequestAlignment}");
            var dev = e.Device("vd0", "n");

            var rng = new Random(42);
            (long Off, int Len)[] cases =
            [
                (0, 4096), (1, 1), (511, 2), (4095, 4098), (8192, 512), (100_000, 70_001), (ImageSize - 3, 3), (ImageSize - 4096, 4096),
            ];
            foreach (var (off, len) in cases.Concat(Enumerable.Range(0, 40).Select(_ => ((long)rng.Next(ImageSize - 20_000), rng.Next(1, 20_000)))))
            {
                // An odd-offset slice of a larger array: the buffer itself is unaligned too.
                var backing = new byte[len + 3];
                rng.NextBytes(backing);
                var data = backing.AsMemory(3, len);
                await dev.WriteAsync(off, data);
                data.Span.CopyTo(model.AsSpan((int)off, len));

                var readBacking = new byte[len + 5];
                var read = readBacking.AsMemory(5, len);
                await dev.ReadAsync(off, read);
                Assert.True(read.Span.SequenceEqual(data.Span), $"read after write at {off}+{len}");
            }
            var all = new byte[ImageSize];
            await dev.ReadAsync(0, all);
            Assert.Equal(model, all);
        }
        Assert.Equal(model, img.ReadAll());
    }

    [Fact]
    public async Task O_DIRECT_writes_near_an_unaligned_end_of_file_keep_the_file_size()
    {
        const int size = 10_000; // not a multiple of any O_DIRECT alignment
        using var img = new TempImage(size);
        var model = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(RawOverFile(img.Path, fileExtra: ""","cache":{"direct":true}"""));
            var dev = e.Device("vd0", "n");
            var data = Enumerable.Repeat((byte)0xAB, 300).ToArray();
            await dev.WriteAsync(size - 300, data);
            data.CopyTo(model, size - 300);
            var back = new byte[size];
            await dev.ReadAsync(0, back);
            Assert.Equal(model, back);
        }
        Assert.Equal(model, img.ReadAll());
    }

    [Fact]
    public async Task Discard_with_discard_unmap_reads_back_zeroes()
    {
        using var img = new TempImage(ImageSize);
        using var e = new IoEngine();
        e.AddOk(RawOverFile(img.Path, extra: ""","discard":"unmap" """));
        var dev = e.Device("vd0", "n");
        await dev.DiscardAsync(65536, 131072);
        var back = new byte[131072 + 2];
        await dev.ReadAsync(65535, back);
        Assert.Equal(TempImage.PatternByte(65535), back[0]);
        Assert.All(back.AsSpan(1, 131072).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(TempImage.PatternByte(65536 + 131072), back[^1]);
    }

    [Fact]
    public async Task Discard_is_ignored_under_the_default_discard_policy()
    {
        using var img = new TempImage(ImageSize);
        using var e = new IoEngine();
        e.AddOk(RawOverFile(img.Path));
        var dev = e.Device("vd0", "n");
        await dev.DiscardAsync(0, 65536);
        var back = new byte[65536];
        await dev.ReadAsync(0, back);
        Assert.Equal(img.ReadAll().AsSpan(0, 65536).ToArray(), back);
    }

    [Theory]
    [InlineData(false, WriteFlags.None)]
    [InlineData(false, WriteFlags.MayUnmap)]
    [InlineData(true, WriteFlags.None)]
    [InlineData(true, WriteFlags.MayUnmap)]
    public async Task Write_zeroes_reads_back_zeroes(bool direct, WriteFlags flags)
    {
        using var img = new TempImage(ImageSize);
        using (var e = new IoEngine())
        {
            e.AddOk(RawOverFile(img.Path, extra: $$$$""","discard":"unmap","cache":{"direct":{{{{(direct ? "true" : "false")}}}}}"""));
            var dev = e.Device("vd0", "n");
            await dev.WriteZeroesAsync(1000, 200_001, flags);
            var back = new byte[200_003];
            await dev.ReadAsync(999, back);
            Assert.Equal(TempImage.PatternByte(999), back[0]);
            Assert.All(back.AsSpan(1, 200_001).ToArray(), b => Assert.Equal(0, b));
            Assert.Equal(TempImage.PatternByte(201_001), back[^1]);
        }
        var file = img.ReadAll();
        Assert.Equal(ImageSize, file.Length);
        Assert.All(file.AsSpan(1000, 200_001).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task A_read_only_node_reopened_read_write_accepts_writes()
    {
        using var img = new TempImage(65536);
        using var e = new IoEngine();
        e.AddOk($$$$"""{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}","read-only":true}""");
        e.Ok($$$$"""{"execute":"blockdev-reopen","arguments":{"options":[{"driver":"file","node-name":"f","filename":"{{{{img.Path}}}}","read-only":false}]}}""");
        var dev = e.Device("vd0", "f");
        await dev.WriteAsync(10, new byte[] { 9, 9, 9 });
        e.Ok("""{"execute":"device_del","arguments":{"id":"vd0"}}""");
        e.Ok("""{"execute":"blockdev-del","arguments":{"node-name":"f"}}""");
        Assert.Equal(new byte[] { 9, 9, 9 }, img.ReadAll().AsSpan(10, 3).ToArray());
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }
}
