using System.Text.Json.Nodes;
using BenchmarkDotNet.Attributes;
using Verified.Model;
using Verified.Proofs;
using Verified.Proofs.Smt;

namespace Verified.Benchmarks;

/// <summary>
/// Cost of one Z3 check of a whole graph against graph size N: N chains of a device over raw over
/// null-co, encoded by <see cref="GraphEncoding"/> and compared with the model's refresh (what the
/// campaign does every 100 steps). Needs libz3; without it the benchmark reports nothing useful and says so.
/// </summary>
[MemoryDiagnoser]
public class Z3QueryBenchmarks
{
    private SmtSolver solver = null!;
    private Graph graph = null!;

    [Params(2, 8, 32, 128)]
    public int Chains { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        if (!SmtSolver.IsAvailable(out var reason)) throw new InvalidOperationException(reason);
        solver = new SmtSolver();
        var s = ModelState.Initial;
        for (int i = 0; i < Chains; i++)
        {
            foreach (var json in new[]
            {
                $$$"""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n{{{i}}}"}}""",
                $$$"""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r{{{i}}}","file":"n{{{i}}}"}}""",
                $$$"""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd{{{i}}}","drive":"r{{{i}}}"}}""",
            })
            {
                var (next, reply) = Machine.Apply(s, JsonNode.Parse(json)!.AsObject());
                if (!reply.IsOk) throw new InvalidOperationException($"{json} -> {reply}");
                s = next;
            }
        }
        graph = s.Graph;
    }

    [GlobalCleanup]
    public void Cleanup() => solver.Dispose();

    [Benchmark]
    public bool EncodeOnly() => GraphEncoding.Encode(graph).Text.Length > 0;

    [Benchmark]
    public bool CheckAgainstModel() => GraphEncoding.Compare(solver, graph).Mismatch is null;
}
