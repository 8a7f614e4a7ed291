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
    private BothEngines both = null!;
    private Command there = null!, back = null!;

    [Params(10, 1_000, 10_000)]
    public int Nodes { get; set; }

    [Params(1, 8)]
    public int Actions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        both = new BothEngines(withModel: Nodes <= 1_000); // the model is too slow to build 10,000 nodes here
        both.AddRawOverNull(Nodes);
        var thereActions = new List<Command>();
        var backActions = new List<Command>();
        for (int k = 0; k < Actions; k++)
        {
            both.Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"spare{{{k}}}"}}""");
            thereActions.Add(new BlockdevReplace(new ReplaceDriverParent($"r{k}", "file"), $"spare{k}"));
            backActions.Add(new BlockdevReplace(new ReplaceDriverParent($"r{k}", "file"), $"n{k}"));
        }
        there = new Vocabulary.Transaction(ValueList<Command>.From(thereActions), "individual");
        back = new Vocabulary.Transaction(ValueList<Command>.From(backActions), "individual");
    }

    [GlobalCleanup]
    public void Cleanup() => both.Dispose();

    [Benchmark(Baseline = true)]
    public bool ImplReplaceThereAndBack() => both.Engine.Execute(there).IsOk & both.Engine.Execute(back).IsOk;

    [Benchmark]
    public bool ModelReplaceThereAndBack()
    {
        if (Nodes > 1_000) return true;
        var (s1, r1) = Machine.Apply(both.Model, there);
        var (_, r2) = Machine.Apply(s1, back);
        return r1.IsOk & r2.IsOk;
    }
}
