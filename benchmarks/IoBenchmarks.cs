using BenchmarkDotNet.Attributes;
using Verified.Impl.Engine;
using Verified.Impl.Graph;

namespace Verified.Benchmarks;

/// <summary>
/// Per-request cost of the I/O path through 0, 1 and 2 raw layers and a throttle filter without limits,
/// on null-co (no data movement, so the block layer's own overhead shows), and through file and
/// raw over file on a real temporary file. One request per invocation, awaited.
/// </summary>
[MemoryDiagnoser]
public class IoBenchmarks
{
    private BlockEngine engine = null!;
    private DeviceParent device = null!;
    private byte[] buffer = null!;
    private string? path;

    [Params("null", "raw-null", "raw-raw-null", "throttle-raw-null", "file", "raw-file", "throttle-raw-file")]
    public string Stack { get; set; } = "null";

    [Params(4096, 65536)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        engine = new BlockEngine();
        buffer = new byte[Size];
        string bottom;
        if (Stack.EndsWith("file", StringComparison.Ordinal))
        {
            path = Path.Combine(Path.GetTempPath(), $"verified-bench-{Guid.NewGuid():N}.img");
            using (var f = File.Create(path)) f.SetLength(64 << 20);
            Qmp.Run(engine, $$$"""{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"n0","filename":"{{{path}}}"}}""");
            bottom = "n0";
        }
        else
        {
            Qmp.Run(engine, """{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n0","size":67108864}}""");
            bottom = "n0";
        }
        var top = bottom;
        int layer = 0;
        foreach (var part in Stack.Split('-').Reverse().Skip(1))
        {
            var name = $"l{++layer}";
            if (part == "throttle")
            {
                Qmp.Run(engine, """{"execute":"object-add","arguments":{"qom-type":"throttle-group","id":"tg"}}""");
                Qmp.Run(engine, $$$"""{"execute":"blockdev-add","arguments":{"driver":"throttle","node-name":"{{{name}}}","throttle-group":"tg","file":"{{{top}}}"}}""");
            }
            else
            {
                Qmp.Run(engine, $$$"""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"{{{name}}}","file":"{{{top}}}"}}""");
            }
            top = name;
        }
        Qmp.Run(engine, $$$"""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"{{{top}}}"}}""");
        device = engine.FindDevice("vd0")!;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        engine.Dispose();
        if (path is not null) File.Delete(path);
    }

    [Benchmark]
    public ValueTask Read() => device.ReadAsync(0, buffer);

    [Benchmark]
    public ValueTask Write() => device.WriteAsync(0, buffer);
}
