// Graph changes while I/O runs: writers keep writing through a device while filters are inserted
// above the device's node and removed again, hundreds of times, each change one transaction. The
// engine drains admitted requests before every change and holds new ones until it commits, so no
// request may fail, be lost or land twice: afterwards every block holds the last pattern its writer
// saw acknowledged, read back through the device and straight from the file.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Xunit;

namespace Verified.Tests.IO;

public sealed class DrainTests : IDisposable
{
    private const int Blocks = 64, BlockSize = 4096, Writers = 4, Cycles = 200;
    private readonly string path = Path.Combine(Path.GetTempPath(), $"verified-drain-{Guid.NewGuid():N}.img");

    public void Dispose() => File.Delete(path);

    private static void Ok(BlockEngine e, string json)
    {
        var r = e.Execute(JsonNode.Parse(json)!.AsObject());
        Assert.True(r.IsOk, $"{json} -> {r}");
    }

    private static byte[] Pattern(int block, int seq)
    {
        var b = new byte[BlockSize];
        BitConverter.TryWriteBytes(b, block);
        BitConverter.TryWriteBytes(b.AsSpan(4), seq);
        b.AsSpan(8).Fill((byte)(block * 31 + seq));
        return b;
    }

    [Fact]
    public async Task IO_during_filter_insertion_and_removal_loses_nothing()
    {
        using (var f = File.Create(path)) f.SetLength(Blocks * BlockSize);
        using var engine = new BlockEngine();
        Ok(engine, $$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"disk","filename":"{{{path}}}"}}""");
        Ok(engine, """{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"disk"}}""");
        var dev = engine.FindDevice("vd0")!;
        var acked = new int[Blocks];
        using var stop = new CancellationTokenSource();
        var errors = new List<Exception>();
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            int seq = 0;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    for (int b = w; b < Blocks; b += Writers)
                    {
                        seq++;
                        await dev.WriteAsync((long)b * BlockSize, Pattern(b, seq));
                        Volatile.Write(ref acked[b], seq);
                    }
                }
            }
            catch (Exception e)
            {
                lock (errors) errors.Add(e);
            }
        })).ToList();
        // Every writer must be writing before the graph starts changing under it.
        var started = DateTime.UtcNow;
        while (Enumerable.Range(0, Writers).Any(w => Volatile.Read(ref acked[w]) == 0) && DateTime.UtcNow - started < TimeSpan.FromSeconds(30))
            await Task.Delay(1);

        string[] filters = ["preallocate", "raw"];
        for (int i = 0; i < Cycles; i++)
        {
            var drv = filters[i % filters.Length];
            Ok(engine, $$$"""{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-add","data":{"driver":"{{{drv}}}","node-name":"flt","file":"disk"}},{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"vd0","new-child":"flt"}}]}}""");
            Ok(engine, """{"execute":"transaction","arguments":{"actions":[{"type":"x-blockdev-replace","data":{"parent-type":"qdev","qdev-id":"vd0","new-child":"disk"}},{"type":"blockdev-del","data":{"node-name":"flt"}}]}}""");
        }
        stop.Cancel();
        await Task.WhenAll(writers);
        Assert.Empty(errors);
        Assert.Equal(0, engine.Io.InFlight);

        var buf = new byte[BlockSize];
        for (int b = 0; b < Blocks; b++)
        {
            await dev.ReadAsync((long)b * BlockSize, buf);
            Assert.Equal(Pattern(b, acked[b]), buf);
        }
        await dev.FlushAsync();
        engine.Dispose();
        var onDisk = await File.ReadAllBytesAsync(path);
        for (int b = 0; b < Blocks; b++) Assert.Equal(Pattern(b, acked[b]), onDisk.AsSpan(b * BlockSize, BlockSize).ToArray());
    }
}
