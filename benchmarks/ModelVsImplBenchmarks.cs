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
    private BlockEngine engine = null!;
    private ModelState model = null!;
    private JsonObject add = null!, del = null!;

    [Params(10, 100, 1_000)]
    public int Nodes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        engine = new BlockEngine();
        model = ModelState.Initial;
        for (int i = 0; i < Nodes; i++)
        {
            Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n{{{i}}}"}}""");
            Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r{{{i}}}","file":"n{{{i}}}"}}""");
        }
        Apply("""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"extra"}}""");
        add = JsonNode.Parse("""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"top","file":"extra"}}""")!.AsObject();
        del = JsonNode.Parse("""{"execute":"blockdev-del","arguments":{"node-name":"top"}}""")!.AsObject();
    }

    private void Apply(string json)
    {
        var req = JsonNode.Parse(json)!.AsObject();
        if (!engine.Execute(req).IsOk) throw new InvalidOperationException(json);
        model = Machine.Apply(model, req).State;
    }

    [GlobalCleanup]
    public void Cleanup() => engine.Dispose();

    [Benchmark(Baseline = true)]
    public bool ImplAddDel() => engine.Execute(add).IsOk & engine.Execute(del).IsOk;

    [Benchmark]
    public bool ModelAddDel()
    {
        var (s1, r1) = Machine.Apply(model, add);
        var (_, r2) = Machine.Apply(s1, del);
        return r1.IsOk & r2.IsOk;
    }
}
