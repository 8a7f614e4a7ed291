using BenchmarkDotNet.Attributes;
using Verified.Impl.Engine;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Benchmarks;

/// <summary>
/// Cost of a transaction against graph size: N null-co nodes each under a raw node, then one
/// x-blockdev-replace moving one raw node's file to another null-co node and back (two commits per
/// invocation). The implementation's cost should follow the nodes a change touches, not N; the model,
/// being immutable and plain, is run side by side for comparison.
/// </summary>
[MemoryDiagnoser]
public class TransactionBenchmarks
{
    private BlockEngine engine = null!;
    private ModelState model = null!;
    private Command there = null!, back = null!;

    [Params(10, 1_000, 10_000)]
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
        Apply("""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"spare"}}""");
        there = Parse("""{"execute":"x-blockdev-replace","arguments":{"parent-type":"driver","node-name":"r0","child":"file","new-child":"spare"}}""");
        back = Parse("""{"execute":"x-blockdev-replace","arguments":{"parent-type":"driver","node-name":"r0","child":"file","new-child":"n0"}}""");
    }

    private void Apply(string json)
    {
        var req = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        if (!engine.Execute(req).IsOk) throw new InvalidOperationException(json);
        if (Nodes <= 1_000) model = Machine.Apply(model, req).State; // the model is too slow to build 10,000 nodes here
    }

    private static Command Parse(string json) => CommandParser.ParseRequest(System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject()).Command!;

    [GlobalCleanup]
    public void Cleanup() => engine.Dispose();

    [Benchmark(Baseline = true)]
    public bool ImplReplaceThereAndBack() => engine.Execute(there).IsOk & engine.Execute(back).IsOk;

    [Benchmark]
    public bool ModelReplaceThereAndBack()
    {
        if (Nodes > 1_000) return true;
        var (s1, r1) = Machine.Apply(model, there);
        var (_, r2) = Machine.Apply(s1, back);
        return r1.IsOk & r2.IsOk;
    }
}
