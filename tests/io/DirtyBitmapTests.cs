// Dirty bitmaps record where guest writes landed, as QEMU's do: a write, write-zeroes or discard that
// reaches a node sets the bits of that node's enabled bitmaps covering the range (and only that node's,
// so a bitmap on the file below a raw node sees the raw node's writes at their file offsets). The tests
// write through a real file and read the counts back from query-named-block-nodes, as a client would
// (a discard dirties only where the node may unmap, as in QEMU);
// clear and merge change the bits, and an aborted transaction puts them back exactly.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Xunit;

namespace Verified.Tests.IO;

public sealed class DirtyBitmapTests : IDisposable
{
    private const long Size = 1 << 20, Granularity = 65536;
    private readonly string path = Path.Combine(Path.GetTempPath(), $"verified-dirty-{Guid.NewGuid():N}.img");
    private readonly BlockEngine e = new();

    public DirtyBitmapTests()
    {
        using (var f = File.Create(path)) f.SetLength(Size);
        Ok($$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"{{{path}}}"}}""");
        Ok("""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":"f","offset":65536}}""");
        Ok("""{"execute":"block-dirty-bitmap-add","arguments":{"node":"f","name":"low"}}""");
        Ok("""{"execute":"block-dirty-bitmap-add","arguments":{"node":"r","name":"top","granularity":512}}""");
    }

    public void Dispose()
    {
        e.Dispose();
        File.Delete(path);
    }

    private void Ok(string json)
    {
        var r = e.Execute(JsonNode.Parse(json)!.AsObject());
        Assert.True(r.IsOk, $"{json} -> {r}");
    }

    /// <summary>name → count, from query-named-block-nodes on <paramref name="node"/>.</summary>
    private Dictionary<string, long> Counts(string node)
    {
        var r = e.Execute(JsonNode.Parse("""{"execute":"query-named-block-nodes","arguments":{"flat":true}}""")!.AsObject());
        var n = r.Return!.AsArray().Single(x => x!["node-name"]!.GetValue<string>() == node)!;
        return n["dirty-bitmaps"]!.AsArray().ToDictionary(b => b!["name"]!.GetValue<string>(), b => b!["count"]!.GetValue<long>());
    }

    [Fact]
    public async Task A_write_dirties_the_granules_it_touches_on_every_node_it_reaches()
    {
        await e.FindNode("r")!.WriteAsync(1000, new byte[20]);
        // On r: bytes 1000-1019, one 512-byte granule. On f the write lands at 66536: one 64 KiB granule.
        Assert.Equal(512, Counts("r")["top"]);
        Assert.Equal(Granularity, Counts("f")["low"]);
        // Across a granule boundary on f: two more granules.
        await e.FindNode("r")!.WriteAsync(3 * Granularity - 10, new byte[20]);
        Assert.Equal(3 * Granularity, Counts("f")["low"]);
    }

    [Fact]
    public async Task A_disabled_bitmap_records_nothing_and_discard_and_zeroes_dirty_too()
    {
        Ok("""{"execute":"block-dirty-bitmap-disable","arguments":{"node":"f","name":"low"}}""");
        await e.FindNode("r")!.WriteAsync(0, new byte[512]);
        Assert.Equal(0, Counts("f")["low"]);
        await e.FindNode("r")!.WriteZeroesAsync(4096, 1024);
        // A discard on a node that may not unmap (discard=ignore, the default of a node added on its own)
        // returns before QEMU's write bookkeeping: it dirties nothing.
        await e.FindNode("r")!.DiscardAsync(8192, 512);
        Assert.Equal(3 * 512, Counts("r")["top"]);
    }

    [Fact]
    public async Task Clear_and_merge_change_the_bits_and_an_abort_restores_them_exactly()
    {
        await e.FindNode("r")!.WriteAsync(0, new byte[2048]);
        Assert.Equal(2048, Counts("r")["top"]);
        Ok("""{"execute":"block-dirty-bitmap-add","arguments":{"node":"r","name":"other","granularity":512}}""");
        await e.FindNode("r")!.WriteAsync(Granularity, new byte[512]);
        // Clear, then fail the transaction: the bits come back.
        var r = e.Execute(JsonNode.Parse("""{"execute":"transaction","arguments":{"actions":[{"type":"block-dirty-bitmap-clear","data":{"node":"r","name":"top"}},{"type":"abort","data":{}}]}}""")!.AsObject());
        Assert.False(r.IsOk);
        Assert.Equal(2048 + 512, Counts("r")["top"]);
        Ok("""{"execute":"block-dirty-bitmap-clear","arguments":{"node":"r","name":"top"}}""");
        Assert.Equal(0, Counts("r")["top"]);
        Ok("""{"execute":"block-dirty-bitmap-merge","arguments":{"node":"r","target":"top","bitmaps":["other"]}}""");
        Assert.Equal(512, Counts("r")["top"]);
    }
}
