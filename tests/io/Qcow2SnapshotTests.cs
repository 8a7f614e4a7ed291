// Real overlays: blockdev-snapshot-sync creates a qcow2 file whose backing is the old top, reads
// through it show the old top's data, writes land in the overlay only (the old top, reopened read-only,
// keeps its bytes), and qemu-img finds the overlay clean and equal to the expected content. Copy-on-read
// over a qcow2 top with a backing chain copies what the top does not hold into it (qemu-img map then
// shows it allocated in the top) and never re-copies what the top holds.
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;

namespace Verified.Tests.IO;

public sealed class Qcow2SnapshotTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("verified-qcow2snap-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    /// <summary>An external snapshot's overlay reads the old top, takes the writes, and is a valid image.</summary>
    [Fact]
    public async Task Snapshot_sync_overlay_reads_the_old_top_and_takes_the_writes()
    {
        var baseFile = P("base.raw");
        var data = new byte[1 << 20];
        new Random(5).NextBytes(data);
        File.WriteAllBytes(baseFile, data);
        var overlay = P("ov.qcow2");
        using (var io = new IoEngine())
        {
            io.AddOk($$$"""{"driver":"raw","node-name":"top","file":{"driver":"file","filename":{{{JsonSerializer.Serialize(baseFile)}}}}}""");
            var dev = io.Device("d", "top");
            io.Ok($$$"""{"execute":"blockdev-snapshot-sync","arguments":{"node-name":"top","snapshot-file":{{{JsonSerializer.Serialize(overlay)}}},"snapshot-node-name":"ov","format":"qcow2"}}""");
            var buf = new byte[data.Length];
            await dev.ReadAsync(0, buf);
            Assert.Equal(data, buf);
            await dev.WriteAsync(4096, new byte[] { 1, 2, 3 });
            await dev.FlushAsync();
            Assert.True(io.Engine.FindNode("top")!.ReadOnly);
        }
        Assert.Equal(data, File.ReadAllBytes(baseFile)); // the old top is untouched
        Qemu.CheckClean(overlay);
        data[4096] = 1;
        data[4097] = 2;
        data[4098] = 3;
        var expected = P("expected.raw");
        File.WriteAllBytes(expected, data);
        Qemu.Ok("qemu-img", "compare", "-f", "qcow2", "-F", "raw", overlay, expected);
    }

    /// <summary>copy-on-read over a qcow2 top fills the top with what it read from the backing chain, and only that.</summary>
    [Fact]
    public async Task Copy_on_read_fills_the_top_image()
    {
        string b = P("cb.qcow2"), t = P("ct.qcow2");
        Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", b, "1M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 1M", b);
        Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", b, "-F", "qcow2", t);
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x55 512k 64k", t);
        using (var io = new IoEngine())
        {
            io.AddOk($$$$"""
                {"driver":"qcow2","node-name":"top","file":{"driver":"file","filename":{{{{JsonSerializer.Serialize(t)}}}}},
                 "backing":{"driver":"qcow2","node-name":"bk","file":{"driver":"file","filename":{{{{JsonSerializer.Serialize(b)}}}}}}}
                """);
            io.AddOk("""{"driver":"copy-on-read","node-name":"cor","file":"top"}""");
            var dev = io.Device("d", "cor");
            var buf = new byte[128 << 10];
            await dev.ReadAsync(448 << 10, buf); // 64k from the backing, 64k the top holds
            Assert.All(buf.AsSpan(0, 64 << 10).ToArray(), x => Assert.Equal(0x21, x));
            Assert.All(buf.AsSpan(64 << 10).ToArray(), x => Assert.Equal(0x55, x));
            var cor = (Verified.Impl.IO.CopyOnReadDriver)io.Engine.FindNode("cor")!.Driver;
            Assert.Equal(64 << 10, cor.CopiedBytes);
        }
        Qemu.CheckClean(t);
        var map = JsonNode.Parse(Qemu.Ok("qemu-img", "map", "--output=json", "-f", "qcow2", t))!.AsArray();
        // The clusters the top holds, whatever order their host clusters are in: exactly the 128k read.
        var inTop = map.Where(e => e!["depth"]!.GetValue<int>() == 0 && e["data"]!.GetValue<bool>())
            .SelectMany(e => Enumerable.Range(0, (int)(e!["length"]!.GetValue<long>() >> 16)).Select(i => e["start"]!.GetValue<long>() + ((long)i << 16)))
            .Order().ToList();
        Assert.Equal([448L << 10, 512L << 10], inTop);
    }
}
