using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Oracle;
using Verified.Vocabulary;

namespace Verified.Cli;

/// <summary>
/// <c>verified campaign</c>: the implementation against the model on random command sequences, with
/// statistics, and on a divergence a shrunk replayable scenario. <c>verified replay FILE</c> reruns one.
/// </summary>
internal static class CampaignCommand
{
    public static int Run(string[] args)
    {
        int seed = 1, runs = 500, steps = 60, minutes = 10, z3Every = 20, floor = 10;
        string? outDir = null;
        string? replay = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--seed": seed = Int(Value(), "--seed", int.MinValue / 2, int.MaxValue / 2); break;
                case "--runs": runs = Int(Value(), "--runs", 1, 10_000_000); break;
                case "--steps": steps = Int(Value(), "--steps", 1, 100_000); break;
                case "--minutes": minutes = Int(Value(), "--minutes", 1, 24 * 60); break;
                case "--out": outDir = Value(); break;
                case "--z3-every": z3Every = Int(Value(), "--z3-every", 0, 100_000); break;
                case "--floor": floor = Int(Value(), "--floor", 0, 1_000_000); break;
                case "--replay": replay = Value(); break;
                default: throw new ArgumentException($"campaign: unknown option '{args[i]}'");
            }
        }
        if (replay is not null)
        {
            var parts = replay.Split('/');
            if (parts.Length != 2) throw new ArgumentException("--replay takes SEED/STEPS as printed by a campaign");
            var (log, problem) = Campaign.Generate(Int(parts[0], "seed", int.MinValue, int.MaxValue), Int(parts[1], "steps", 1, 100_000));
            if (problem is null)
            {
                Console.WriteLine($"replay {replay}: {log.Count} commands, no divergence");
                return 0;
            }
            return Report(new Divergence(replay, Campaign.Shrink(log), problem), outDir);
        }
        var stats = new CampaignStats();
        Console.WriteLine($"campaign: seed {seed}, up to {runs} runs of {steps} commands, {minutes} min");
        if (z3Every > 0 && !Proofs.Smt.SmtSolver.IsAvailable(out var why))
            throw new ArgumentException($"Z3 checks asked for (--z3-every {z3Every}) but Z3 is unavailable: {why}; pass --z3-every 0 to skip them");
        var d = Campaign.Run(new CampaignOptions(seed, runs, steps, TimeSpan.FromMinutes(minutes), z3Every), stats, Console.WriteLine);
        PrintStats(stats);
        if (d is not null) return Report(d, outDir);
        Console.WriteLine($"no divergence in {stats.Runs} runs ({stats.Generated.Values.Sum()} commands, {stats.Z3Checks} graphs also checked by Z3)");
        var thin = stats.BelowFloor(floor, Campaign.CoveredKinds);
        if (thin.Count > 0)
        {
            Console.WriteLine($"COVERAGE below the floor of {floor} accepted commands: {string.Join(", ", thin)}");
            return 1;
        }
        Console.WriteLine($"coverage: every command kind accepted at least {floor} times");
        return 0;
    }

    private static int Report(Divergence d, string? outDir)
    {
        Console.WriteLine($"DIVERGENCE — replay: verified campaign --replay {d.Replay}");
        Console.WriteLine(d.Description);
        Console.WriteLine($"shrunk to {d.Commands.Count} commands:");
        foreach (var c in d.Commands) Console.WriteLine("  " + Campaign.Line(c));
        var file = Path.Combine(outDir ?? ".", $"divergence-{d.Replay.Replace('/', '-')}.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
        File.WriteAllText(file, d.ScenarioText());
        Console.WriteLine($"scenario written: {file} (verified replay {file})");
        return 1;
    }

    private static void PrintStats(CampaignStats s)
    {
        int total = s.Generated.Values.Sum(), ok = s.Accepted.Values.Sum();
        Console.WriteLine($"{"command",-28} {"generated",10} {"accepted",10}");
        foreach (var kv in s.Generated.OrderBy(k => k.Key, StringComparer.Ordinal))
            Console.WriteLine($"{kv.Key,-28} {kv.Value,10} {s.Accepted.GetValueOrDefault(kv.Key),10}");
        Console.WriteLine($"{"total",-28} {total,10} {ok,10} ({(total == 0 ? 0 : 100.0 * ok / total):0.0}% accepted)");
        Console.WriteLine("most common refusals:");
        foreach (var kv in s.Refusals.OrderByDescending(k => k.Value).Take(12)) Console.WriteLine($"  {kv.Value,6}  {kv.Key}");
    }

    /// <summary><c>verified replay FILE</c>: runs a scenario file's QMP lines on both engines.</summary>
    public static int Replay(string[] args)
    {
        if (args.Length != 1) throw new ArgumentException("replay takes one scenario file");
        var commands = new List<Command>();
        foreach (var raw in File.ReadAllLines(args[0]))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#') || line.StartsWith("//", StringComparison.Ordinal)) continue;
            var o = JsonNode.Parse(line)!.AsObject();
            if (o.ContainsKey("io"))
            {
                commands.Add(IoStep.FromJson(o));
                continue;
            }
            if (!o.ContainsKey("execute")) continue;
            var req = new JsonObject { ["execute"] = o["execute"]!.DeepClone() };
            if (o["arguments"] is { } a) req["arguments"] = a.DeepClone();
            var (c, err) = CommandParser.ParseRequest(req);
            if (err is not null) throw new ArgumentException($"{args[0]}: {line}: {err}");
            commands.Add(c!);
        }
        var d = Campaign.Replay(commands);
        Console.WriteLine(d is null ? $"{args[0]}: {commands.Count} commands, the implementation agrees with the model" : $"{args[0]}: DIVERGENCE\n{d}");
        return d is null ? 0 : 1;
    }

    private static int Int(string text, string what, int min, int max) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max
            ? v : throw new ArgumentException($"{what} takes an integer in [{min}, {max}], not '{text}'");
}
