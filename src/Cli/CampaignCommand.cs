using System.Globalization;
using Verified.Impl.Engine;
using Verified.Oracle;

namespace Verified.Cli;

/// <summary>
/// <c>verified campaign</c>: the implementation against the model on random step sequences (with I/O and
/// host faults), after the regression corpus; a progress bar, a summary, and on a divergence the shrunk
/// replayable scenario. <c>verified replay FILE</c> reruns a scenario file.
/// </summary>
internal static class CampaignCommand
{
    /// <summary>Coverage floor per command kind unless asked otherwise.</summary>
    private const int FloorDefault = 10;

    /// <summary>Z3 re-checks the model's graph every this many steps unless asked otherwise (a check costs milliseconds).</summary>
    private const int Z3EveryDefault = 500;

    /// <summary>How often the progress bar is redrawn.</summary>
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromMilliseconds(250);

    public static int Run(string[] args)
    {
        var o = new CampaignOptions { Z3Every = Z3EveryDefault };
        int floor = FloorDefault;
        bool stepsGiven = false;
        string? outDir = null, replay = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--seed": o = o with { Seed = Int(Value(), "--seed", int.MinValue / 2, int.MaxValue / 2) }; break;
                case "--steps": o = o with { Steps = Int(Value(), "--steps", 1, int.MaxValue) }; stepsGiven = true; break;
                case "--time": o = o with { Time = Duration(Value()) }; break;
                case "--run-length": o = o with { RunLength = Int(Value(), "--run-length", 1, 100_000) }; break;
                case "--shard": o = Shard(o, Value()); break;
                case "--workers": o = o with { Workers = Int(Value(), "--workers", 1, 256) }; break;
                case "--z3-every": o = o with { Z3Every = Int(Value(), "--z3-every", 0, 100_000) }; break;
                case "--no-io": o = o with { Io = false }; break;
                case "--no-faults": o = o with { Faults = false }; break;
                case "--mutant":
                    var m = Value();
                    o = o with { Mutation = Enum.TryParse<EngineMutation>(m, out var mm) && mm != EngineMutation.None ? mm
                        : throw new ArgumentException($"--mutant takes one of {string.Join(", ", Enum.GetNames<EngineMutation>().Skip(1))}") };
                    break;
                case "--floor": floor = Int(Value(), "--floor", 0, 1_000_000); break;
                case "--out": outDir = Value(); break;
                case "--replay": replay = Value(); break;
                default: throw new ArgumentException($"campaign: unknown option '{args[i]}'");
            }
        }
        if (o.Time is not null && !stepsGiven) o = o with { Steps = long.MaxValue / 4 };
        if (replay is not null)
        {
            var d = Campaign.ReplayString(replay);
            if (d is null)
            {
                Console.WriteLine($"replay {replay}: no divergence");
                return 0;
            }
            return Report(d, outDir);
        }
        if (o.Z3Every > 0 && !Proofs.Smt.SmtSolver.IsAvailable(out var why))
            throw new ArgumentException($"Z3 checks asked for (--z3-every {o.Z3Every}) but Z3 is unavailable: {why}; pass --z3-every 0 to skip them");

        var stats = new CampaignStats();
        Console.WriteLine($"campaign: seed {o.Seed}, " + (o.Time is { } t && !stepsGiven ? $"for {t.TotalSeconds:0} s" : $"{o.Steps} steps")
            + (o.Time is { } t2 && stepsGiven ? $" or {t2.TotalSeconds:0} s" : "") + $" in runs of {o.RunLength}, shard {o.ShardIndex}/{o.ShardCount}, "
            + $"{o.Workers} workers, Z3 every {o.Z3Every} steps{(o.Io ? ", I/O" : "")}{(o.Faults ? ", faults" : "")}"
            + (o.Mutation == EngineMutation.None ? "" : $", MUTANT {o.Mutation}"));
        if (o.Mutation == EngineMutation.None && Campaign.ReplayCorpus(stats) is { } bad)
        {
            Console.WriteLine($"DIVERGENCE in the regression corpus, {bad.Name}:\n{bad.Problem}");
            return 1;
        }
        Console.WriteLine($"regression corpus: {stats.CorpusReplayed} scenarios replayed, no divergence");
        var bar = new ProgressBar(o, stepsGiven);
        var d2 = Campaign.Run(o, stats, bar.Update);
        bar.Finish();
        PrintSummary(stats);
        if (d2 is not null) return Report(d2, outDir);
        Console.WriteLine($"no divergence: {stats.Steps} steps in {stats.Runs} runs, {stats.StepsPerSecond:0} steps/s, {stats.Z3Checks} graphs also checked by Z3");
        var thin = stats.BelowFloor(floor, Campaign.CoveredKinds.Where(k => (o.Io || !k.StartsWith("x-io", StringComparison.Ordinal)) && (o.Faults || !k.StartsWith("x-fault", StringComparison.Ordinal))));
        if (thin.Count > 0 && floor > 0)
        {
            Console.WriteLine($"COVERAGE below the floor of {floor} accepted: {string.Join(", ", thin)}");
            return 1;
        }
        Console.WriteLine($"coverage: every command kind accepted at least {floor} times");
        return 0;
    }

    private static int Report(Divergence d, string? outDir)
    {
        Console.WriteLine($"DIVERGENCE — replay: verified campaign --replay {d.Replay}");
        Console.WriteLine(d.Description);
        Console.WriteLine($"shrunk from {d.Original} to {d.Commands.Count} steps:");
        foreach (var c in d.Commands) Console.WriteLine("  " + Scenario.Line(c));
        var file = Path.Combine(outDir ?? ".", $"divergence-{d.Replay.Replace('/', '-').Replace('=', '-')}.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
        File.WriteAllText(file, d.ScenarioText());
        Console.WriteLine($"scenario written: {file} (verified replay {file})");
        return 1;
    }

    private static void PrintSummary(CampaignStats s)
    {
        int total = s.Generated.Values.Sum(), ok = s.Accepted.Values.Sum();
        Console.WriteLine();
        Console.WriteLine($"{"step kind",-28} {"generated",10} {"accepted",10} {"refused",8}");
        foreach (var kv in s.Generated.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            int acc = s.Accepted.GetValueOrDefault(kv.Key);
            Console.WriteLine($"{kv.Key,-28} {kv.Value,10} {acc,10} {Pct(kv.Value - acc, kv.Value),8}");
        }
        Console.WriteLine($"{"total",-28} {total,10} {ok,10} {Pct(total - ok, total),8}");
        Console.WriteLine();
        Console.WriteLine($"runs {s.Runs}, steps {s.Steps}, {s.StepsPerSecond:0} steps/s over {s.Elapsed.TotalSeconds:0.0} s");
        Console.WriteLine($"transactions {s.Transactions}: {s.RolledBack} rolled back ({s.Aborts} by an abort action)");
        Console.WriteLine($"faults armed {s.FaultsArmed}; steps failed by an injected fault {s.FailedByFault}");
        Console.WriteLine($"Z3 checks {s.Z3Checks}; regression scenarios replayed {s.CorpusReplayed}");
        if (s.Events.Count > 0)
        {
            Console.WriteLine("classified events:");
            foreach (var kv in s.Events.OrderBy(k => k.Key, StringComparer.Ordinal)) Console.WriteLine($"  {kv.Value,8}  {kv.Key}");
        }
        Console.WriteLine("refusals by reason (most common):");
        foreach (var kv in s.Refusals.OrderByDescending(k => k.Value).ThenBy(k => k.Key, StringComparer.Ordinal).Take(15))
            Console.WriteLine($"  {kv.Value,8}  {Pct(kv.Value, total),6}  {kv.Key}");
    }

    private static string Pct(long part, long whole) => whole == 0 ? "-" : (100.0 * part / whole).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    /// <summary>A one-line progress bar on a terminal (standard error); silent when output is redirected.</summary>
    private sealed class ProgressBar(CampaignOptions o, bool bySteps)
    {
        private const int Width = 30;
        private readonly bool on = !Console.IsErrorRedirected;
        private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
        private readonly Lock gate = new();
        private TimeSpan last = TimeSpan.MinValue;

        public void Update(long steps)
        {
            if (!on) return;
            lock (gate)
            {
                var now = clock.Elapsed;
                if (now - last < ProgressEvery) return;
                last = now;
                double frac = bySteps ? (double)steps / Math.Max(1, o.Steps / o.ShardCount) : now / (o.Time ?? TimeSpan.FromSeconds(1));
                frac = Math.Clamp(frac, 0, 1);
                int fill = (int)(frac * Width);
                Console.Error.Write($"\r[{new string('#', fill)}{new string('.', Width - fill)}] {frac * 100,5:0.0}%  {steps} steps  {steps / Math.Max(0.001, now.TotalSeconds):0} steps/s ");
            }
        }

        public void Finish()
        {
            if (on) Console.Error.WriteLine();
        }
    }

    /// <summary><c>verified replay FILE</c>: runs a scenario file's steps on both engines.</summary>
    public static int Replay(string[] args)
    {
        if (args.Length != 1) throw new ArgumentException("replay takes one scenario file");
        var commands = Scenario.Parse(File.ReadAllText(args[0]), args[0]);
        var d = Campaign.Replay(commands);
        Console.WriteLine(d is null ? $"{args[0]}: {commands.Count} steps, the implementation agrees with the model" : $"{args[0]}: DIVERGENCE\n{d}");
        return d is null ? 0 : 1;
    }

    private static CampaignOptions Shard(CampaignOptions o, string text)
    {
        var p = text.Split('/');
        if (p.Length != 2) throw new ArgumentException($"--shard takes i/n (0 <= i < n), not '{text}'");
        int n = Int(p[1], "--shard count", 1, 1_000_000), i = Int(p[0], "--shard index", 0, n - 1);
        return o with { ShardIndex = i, ShardCount = n };
    }

    /// <summary>A duration: <c>90</c>, <c>90s</c>, <c>10m</c>, <c>2h</c>.</summary>
    private static TimeSpan Duration(string text)
    {
        var unit = text.Length > 0 && char.IsLetter(text[^1]) ? text[^1] : 's';
        var number = char.IsLetter(text.Length > 0 ? text[^1] : '0') ? text[..^1] : text;
        int v = Int(number, "--time", 1, 10_000_000);
        return unit switch
        {
            's' => TimeSpan.FromSeconds(v),
            'm' => TimeSpan.FromMinutes(v),
            'h' => TimeSpan.FromHours(v),
            _ => throw new ArgumentException($"--time takes a duration such as 60s, 10m or 2h, not '{text}'"),
        };
    }

    private static int Int(string text, string what, long min, long max) =>
        long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max
            ? (int)v : throw new ArgumentException($"{what} takes an integer in [{min}, {max}], not '{text}'");
}
