using BenchmarkDotNet.Attributes;
using Verified.Model;
using Verified.Oracle;
using Verified.Vocabulary;

namespace Verified.Benchmarks;

/// <summary>
/// Cost of one checked campaign step, and of its parts: a whole run of <see cref="Campaign.RunLengthDefault"/>
/// steps (generation, both engines, canonical states, sampled queries and invariants, I/O and faults; Z3
/// off), against the same commands on the model alone and on the implementation alone, and the two
/// canonical abstractions of a mid-run state. Divide a run's time by its steps for the per-step cost.
/// </summary>
[MemoryDiagnoser]
public class CampaignBenchmarks
{
    private readonly CampaignOptions options = new() { Z3Every = 0 };
    private List<Command> log = null!;
    private Judge judge = null!;

    /// <summary>The seed of the benchmarked run.</summary>
    [Params(3, 17)]
    public int Seed { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        log = Campaign.Generate(Seed, Campaign.RunLengthDefault, options).Log;
        judge = new Judge();
        foreach (var c in log.Take(log.Count / 2)) judge.Step(c);
    }

    [GlobalCleanup]
    public void Cleanup() => judge.Dispose();

    /// <summary>A whole checked run: generate, apply to both, compare.</summary>
    [Benchmark(Baseline = true)]
    public int CheckedRun() => Campaign.Generate(Seed, Campaign.RunLengthDefault, options).Log.Count;

    /// <summary>The run's commands on the model alone (graph commands; I/O and faults skipped).</summary>
    [Benchmark]
    public ModelState ModelOnly()
    {
        var s = ModelState.Initial;
        foreach (var c in log)
            if (c is not IoStep and not FaultStep) s = Machine.Apply(s, c).State;
        return s;
    }

    /// <summary>A judge's life: its folder and pool files, both engines, then closing and removing them.</summary>
    [Benchmark]
    public int JudgeLifecycle()
    {
        using var j = new Judge();
        return j.Files.Count;
    }

    /// <summary>The run's commands on the implementation alone (in a fresh judge's folder; judge lifecycle included).</summary>
    [Benchmark]
    public int ImplOnly()
    {
        using var j = new Judge();
        int ok = 0;
        foreach (var c in log)
            if (c is not IoStep and not FaultStep && j.Impl.Execute(c).IsOk) ok++;
        return ok;
    }

    /// <summary>Generating the run's commands against the model (what the generator costs, model steps included).</summary>
    [Benchmark]
    public int GenerateOnly()
    {
        var rnd = new Random(Seed);
        var gen = new CommandGen(rnd.Next, io: true, faults: true);
        var s = ModelState.Initial;
        for (int i = 0; i < Campaign.RunLengthDefault; i++)
        {
            var c = gen.Next(s);
            if (c is not IoStep and not FaultStep) s = Machine.Apply(s, c).State;
        }
        return s.Graph.Nodes.Count;
    }

    /// <summary>The canonical text of the model's mid-run state.</summary>
    [Benchmark]
    public int CanonicalModel() => Canonical.Of(judge.Model).Length;

    /// <summary>The field-by-field comparison of the mid-run states (the campaign's fast path).</summary>
    [Benchmark]
    public bool SameFieldByField() => Canonical.Same(judge.Model, judge.Impl);

    /// <summary>The implementation's node list (sorted copy under the graph lock).</summary>
    [Benchmark]
    public int ImplNodes() => judge.Impl.Nodes.Count;

    /// <summary>The canonical text of the implementation's mid-run state.</summary>
    [Benchmark]
    public int CanonicalImpl() => Canonical.Of(judge.Impl).Length;
}
