using BenchmarkDotNet.Attributes;
using Verified.Impl.Engine;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Benchmarks;

/// <summary>
/// Cost of a transaction against graph size N and action count K: N null-co nodes each under a raw
/// node; one transaction of K x-blockdev-replace actions moves K raw nodes onto spare null-co nodes,
/// a second moves them back (two commits per invocation). The implementation's cost should follow K
/// and the nodes a change touches, not N; the model (immutable and plain) runs side by side.
/// </summary>
[MemoryDiagnoser]
public class TransactionBenchmarks
{
    private BlockEngine engine = null!;
    private ModelState model = null!;
    private Command there = null!, back = null!;

    [Params(10, 1_000, 10_000)]
    public int Nodes { get; set; }

    [Params(1, 8)]
    public int Actions { get; set; }

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
        var thereActions = new List<Command>();
        var backActions = new List<Command>();
        for (int k = 0; k < Actions; k++)
        {
            Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"spare{{{k}}}"}}""");
            thereActions.Add(new BlockdevReplace(new ReplaceDriverParent($"r{k}", "file"), $"spare{k}"));
            backActions.Add(new BlockdevReplace(new ReplaceDriverParent($"r{k}", "file"), $"n{k}"));
        }
        there = new Vocabulary.Transaction(ValueList<Command>.From(thereActions), "individual");
        back = new Vocabulary.Transaction(ValueList<Command>.From(backActions), "individual");
    }

    private void Apply(string json)
    {
        var req = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        if (!engine.Execute(req).IsOk) throw new InvalidOperationException(json);
        if (Nodes <= 1_000) model = Machine.Apply(model, req).State; // the model is too slow to build 10,000 nodes here
    }

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
