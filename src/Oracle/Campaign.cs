using System.Diagnostics;
using System.Text;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>The settings of a differential campaign.</summary>
/// <param name="Seed">Base seed; run r uses seed + r.</param>
/// <param name="Runs">Most runs.</param>
/// <param name="Steps">Commands per run.</param>
/// <param name="TimeBudget">Stop starting new runs after this long.</param>
/// <param name="Z3Every">Every this many steps, the model's graph is also checked by Z3 (0: never).</param>
public sealed record CampaignOptions(int Seed, int Runs, int Steps, TimeSpan TimeBudget, int Z3Every = 0);

/// <summary>A divergence found by a campaign, shrunk.</summary>
/// <param name="Replay">The one string that replays it: <c>seed/run/steps</c>.</param>
/// <param name="Commands">The shrunk command list.</param>
/// <param name="Description">What differed at the last command.</param>
public sealed record Divergence(string Replay, IReadOnlyList<Command> Commands, string Description)
{
    /// <summary>The commands as a scenario file (QMP JSON lines) any QMP client can replay.</summary>
    public string ScenarioText()
    {
        var sb = new StringBuilder($"# divergence found by verified campaign, replay: {Replay}\n");
        foreach (var line in Description.Split('\n')) sb.Append("# ").AppendLine(line);
        foreach (var f in CommandGen.DefaultFiles)
            sb.AppendLine($"{{\"run\": [\"qemu-img\", \"create\", \"-f\", \"raw\", \"@TMP@/{f}\", \"{Judge.PoolFileSize}\"]}}");
        foreach (var c in Commands) sb.AppendLine(Campaign.Relocate(Campaign.Line(c), f => "@TMP@/" + f));
        return sb.ToString();
    }
}

/// <summary>Campaign statistics: commands per kind, accepted per kind.</summary>
public sealed class CampaignStats
{
    /// <summary>Commands generated, by name.</summary>
    public Dictionary<string, int> Generated { get; } = [];

    /// <summary>Commands both engines accepted, by name.</summary>
    public Dictionary<string, int> Accepted { get; } = [];

    /// <summary>Refusal texts (shape only: names replaced), by count.</summary>
    public Dictionary<string, int> Refusals { get; } = [];

    /// <summary>Runs completed.</summary>
    public int Runs { get; set; }

    /// <summary>Graphs Z3 checked against the model.</summary>
    public int Z3Checks { get; set; }

    /// <summary>
    /// Command kinds that were accepted fewer than <paramref name="floor"/> times: a campaign that never
    /// exercises a command kind proves nothing about it, so it fails.
    /// </summary>
    public IReadOnlyList<string> BelowFloor(int floor, IEnumerable<string> kinds) =>
        [.. kinds.Where(k => Accepted.GetValueOrDefault(k) < floor)];
}

/// <summary>
/// The differential campaign: random command sequences on the model and the implementation side by
/// side (<see cref="Judge"/>), stopping at the first divergence, which it shrinks to a minimal command
/// list (whole commands first, then actions inside transactions) and reports with one replay string.
/// </summary>
public static class Campaign
{
    /// <summary>Most re-runs one shrink may spend.</summary>
    public const int ShrinkRunsMax = 2_000;

    /// <summary>The command kinds a campaign must see accepted, each at least the floor.</summary>
    public static readonly IReadOnlyList<string> CoveredKinds =
    [
        "blockdev-add", "blockdev-del", "x-blockdev-replace", "blockdev-reopen", "transaction", "device_add", "device_del",
        "qom-set", "nbd-server-start", "block-export-add", "block-export-del", "object-add", "object-del",
        "block-dirty-bitmap-add", "block-dirty-bitmap-remove",
    ];

    private static readonly Lazy<Proofs.Smt.SmtSolver> Z3 = new(() => new Proofs.Smt.SmtSolver());

    /// <summary>Runs a campaign; returns the first divergence (shrunk) or null.</summary>
    public static Divergence? Run(CampaignOptions o, CampaignStats stats, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(stats);
        var clock = Stopwatch.StartNew();
        for (int r = 0; r < o.Runs && clock.Elapsed < o.TimeBudget; r++)
        {
            var (log, problem) = Generate(o.Seed + r, o.Steps, stats, o.Z3Every);
            stats.Runs++;
            if (problem is null)
            {
                if ((r + 1) % 50 == 0) progress?.Invoke($"{r + 1} runs, {stats.Generated.Values.Sum()} commands, no divergence");
                continue;
            }
            var shrunk = Shrink(log);
            return new Divergence($"{o.Seed + r}/{o.Steps}", shrunk, Replay(shrunk) ?? problem);
        }
        return null;
    }

    /// <summary>Regenerates one run from its seed and step count (the replay string's parts).</summary>
    public static (List<Command> Log, string? Problem) Generate(int seed, int steps, CampaignStats? stats = null, int z3Every = 0)
    {
        using var judge = new Judge();
        var rnd = new Random(seed);
        var gen = new CommandGen(rnd.Next, io: true);
        var log = new List<Command>();
        for (int i = 0; i < steps; i++)
        {
            // The log keeps pool files by bare name, so a replay on another judge (another folder) means the same.
            var c = gen.Next(judge.Model);
            log.Add(c);
            var d = judge.Step(Rebase(c, judge));
            if (stats is not null) Count(stats, c, judge);
            if (d is not null) return (log, d);
            if (z3Every > 0 && (i + 1) % z3Every == 0)
            {
                // Z3 must agree with the model on the committed graph (verdict, and every edge's perms).
                var a = Proofs.GraphEncoding.Compare(Z3.Value, judge.Model.Graph);
                if (stats is not null) stats.Z3Checks++;
                if (a.Mismatch is not null) return (log, "Z3 disagrees with the model: " + a.Mismatch);
                if (!a.ModelConsistent) return (log, "the model committed a graph that is not consistent");
            }
        }
        return (log, null);
    }

    private static void Count(CampaignStats s, Command c, Judge j)
    {
        s.Generated[c.Name] = s.Generated.GetValueOrDefault(c.Name) + 1;
        if (j.LastReply?.IsOk == true) s.Accepted[c.Name] = s.Accepted.GetValueOrDefault(c.Name) + 1;
        else if (j.LastReply?.Error is { } e)
        {
            var shape = System.Text.RegularExpressions.Regex.Replace(e.Desc, "'[^']*'", "'…'");
            s.Refusals[shape] = s.Refusals.GetValueOrDefault(shape) + 1;
        }
    }

    /// <summary>Names in a generated command refer to the pool by file name; the judge's pool lives in its own folder.</summary>
    private static Command Rebase(Command c, Judge j) =>
        Retarget(c, name => j.Files.FirstOrDefault(f => Path.GetFileName(f) == name) ?? name);

    private static Command Retarget(Command c, Func<string, string> map) => c is IoStep ? c :
        CommandParser.ParseRequest(System.Text.Json.Nodes.JsonNode.Parse(Relocate(CommandWriter.ToQmp(c).ToJsonString(), map))!.AsObject()).Command!;

    /// <summary>A step as a scenario-file line: QMP for commands, Verified's <c>io</c> line for I/O.</summary>
    public static string Line(Command c) => c is IoStep io ? io.ToJson().ToJsonString() : CommandWriter.ToQmp(c).ToJsonString();

    /// <summary>Rewrites pool file names (bare or under <c>@TMP@/</c>) in a QMP line with <paramref name="map"/>.</summary>
    public static string Relocate(string json, Func<string, string> map)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(map);
        foreach (var f in CommandGen.DefaultFiles)
        {
            json = json.Replace($"\"@TMP@/{f}\"", $"\"{map(f)}\"", StringComparison.Ordinal)
                       .Replace($"\"{f}\"", $"\"{map(f)}\"", StringComparison.Ordinal);
        }
        return json;
    }

    /// <summary>Replays commands on a fresh judge; the divergence text, or null if they agree.</summary>
    public static string? Replay(IReadOnlyList<Command> commands)
    {
        ArgumentNullException.ThrowIfNull(commands);
        using var judge = new Judge();
        foreach (var c in commands)
        {
            var d = judge.Step(Rebase(c, judge));
            if (d is not null) return d;
        }
        return null;
    }

    /// <summary>Delta-debugging shrink: drop chunks of commands, then actions of transactions, while it still diverges.</summary>
    public static List<Command> Shrink(List<Command> log)
    {
        ArgumentNullException.ThrowIfNull(log);
        int budget = ShrinkRunsMax;
        var cur = log;
        bool Fails(List<Command> l) => budget-- > 0 && Replay(l) is not null;
        for (int chunk = Math.Max(1, cur.Count / 2); chunk >= 1; chunk /= 2)
        {
            for (int i = 0; i + chunk <= cur.Count;)
            {
                var cand = cur.Take(i).Concat(cur.Skip(i + chunk)).ToList();
                if (cand.Count > 0 && Fails(cand)) cur = cand;
                else i += chunk;
            }
        }
        for (int i = 0; i < cur.Count; i++)
        {
            if (cur[i] is not Vocabulary.Transaction t) continue;
            for (int k = 0; k < t.Actions.Count && t.Actions.Count > 1;)
            {
                var smaller = t with { Actions = t.Actions.RemoveAt(k) };
                var cand = cur.ToList();
                cand[i] = smaller;
                if (Fails(cand)) { cur = cand; t = smaller; }
                else k++;
            }
        }
        return cur;
    }
}
