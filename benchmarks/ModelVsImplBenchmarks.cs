using System.Text.Json.Nodes;
using BenchmarkDotNet.Attributes;
using Verified.Impl.Engine;
using Verified.Model;

namespace Verified.Benchmarks;

/// <summary>
/// One plain command pair on both engines against graph size N (N null-co nodes each under a raw node):
/// blockdev-add of a raw node over an existing null-co node, then blockdev-del of it. The implementation
/// is mutable with an undo log; the model is the immutable specification that derives everything by
/// scanning, so its cost is expected to grow with N.
/// </summary>
[MemoryDiagnoser]
public class ModelVsImplBenchmarks
{
    private BothEngines both = null!;
    private JsonObject add = null!, del = null!;

    [Params(10, 100, 1_000)]
    public int Nodes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        both = new BothEngines();
        both.AddRawOverNull(Nodes);
        both.Apply("""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"extra"}}""");
        add = JsonNode.Parse("""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"top","file":"extra"}}""")!.AsObject();
        del = JsonNode.Parse("""{"execute":"blockdev-del","arguments":{"node-name":"top"}}""")!.AsObject();
    }

    [GlobalCleanup]
    public void Cleanup() => both.Dispose();

    [Benchmark(Baseline = true)]
    public bool ImplAddDel() => both.Engine.Execute(add).IsOk & both.Engine.Execute(del).IsOk;

    [Benchmark]
    public bool ModelAddDel()
    {
        var (s1, r1) = Machine.Apply(both.Model, add);
        var (_, r2) = Machine.Apply(s1, del);
        return r1.IsOk & r2.IsOk;
    }
}
