using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Verified.Impl.Engine;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>The settings of a differential campaign.</summary>
public sealed record CampaignOptions
{
    /// <summary>Base seed: run r uses seed + r.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Steps in all (across runs and shards): the campaign has ceil(Steps / RunLength) runs.</summary>
    public long Steps { get; init; } = 20_000;

    /// <summary>Stop starting new runs after this long (null: no limit).</summary>
    public TimeSpan? Time { get; init; }

    /// <summary>Steps per run: each run starts from an empty engine pair.</summary>
    public int RunLength { get; init; } = Campaign.RunLengthDefault;

    /// <summary>This shard's index: it takes the runs r with r mod <see cref="ShardCount"/> = index.</summary>
    public int ShardIndex { get; init; }

    /// <summary>How many shards the seed space is split into.</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>Runs executed at once (each on its own engine pair and folder).</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;

    /// <summary>Every this many steps (counted across runs) the model's graph is also checked by Z3 (0: never).</summary>
    public int Z3Every { get; init; }

    /// <summary>Reads and writes through devices and exports, checked against the model's bytes.</summary>
    public bool Io { get; init; } = true;

    /// <summary>Host-storage faults armed and cleared (opens, reads, writes failing).</summary>
    public bool Faults { get; init; } = true;

    /// <summary>A deliberate bug planted in the implementation (the teeth tests); none by default.</summary>
    public EngineMutation Mutation { get; init; }

    /// <summary>The replay string of run <paramref name="seed"/>: everything that regenerates it.</summary>
    public string ReplayOf(int seed) =>
        string.Create(CultureInfo.InvariantCulture, $"{seed}/{RunLength}")
        + (Io ? "" : "/no-io") + (Faults ? "" : "/no-faults") + (Z3Every > 0 ? $"/z3={Z3Every}" : "")
        + (Mutation == EngineMutation.None ? "" : $"/mutant={Mutation}");

    /// <summary>Parses a replay string: the run's seed and the options that regenerate it.</summary>
    public static (int Seed, CampaignOptions Options) ParseReplay(string replay)
    {
        ArgumentNullException.ThrowIfNull(replay);
        var parts = replay.Split('/');
        if (parts.Length < 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var seed)
            || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out var length) || length < 1)
            throw new ArgumentException($"a replay string is SEED/LENGTH[/no-io][/no-faults][/z3=K][/mutant=NAME], not '{replay}'");
        var o = new CampaignOptions { RunLength = length };
        foreach (var p in parts[2..])
        {
            o = p switch
            {
                "no-io" => o with { Io = false },
                "no-faults" => o with { Faults = false },
                _ when p.StartsWith("z3=", StringComparison.Ordinal) && int.TryParse(p[3..], CultureInfo.InvariantCulture, out var k) => o with { Z3Every = k },
                _ when p.StartsWith("mutant=", StringComparison.Ordinal) && Enum.TryParse<EngineMutation>(p[7..], out var m) => o with { Mutation = m },
                _ => throw new ArgumentException($"unknown part '{p}' in replay string '{replay}'"),
            };
        }
        return (seed, o);
    }
}

/// <summary>A divergence found by a campaign, shrunk.</summary>
/// <param name="Replay">The one string that replays it (<see cref="CampaignOptions.ReplayOf"/>): regenerating the run and shrinking it again gives the same list.</param>
/// <param name="Commands">The shrunk command list.</param>
/// <param name="Description">What differed at the last command.</param>
/// <param name="Original">Steps before shrinking.</param>
public sealed record Divergence(string Replay, IReadOnlyList<Command> Commands, string Description, int Original = 0)
{
    /// <summary>The commands as a scenario file (QMP JSON lines) that <c>verified replay</c> and QMP clients can run.</summary>
    public string ScenarioText() =>
        Scenario.Write([$"divergence found by verified campaign, replay: verified campaign --replay {Replay}", Description], Commands);
}

/// <summary>Campaign statistics. One instance per worker; <see cref="Add"/> merges them.</summary>
public sealed partial class CampaignStats
{
    /// <summary>A quoted name in a refusal text (replaced, so refusals group by shape).</summary>
    [System.Text.RegularExpressions.GeneratedRegex("'[^']*'")]
    private static partial System.Text.RegularExpressions.Regex Quoted();

    /// <summary>Steps generated, by command name.</summary>
    public Dictionary<string, int> Generated { get; } = [];

    /// <summary>Steps both engines accepted, by command name.</summary>
    public Dictionary<string, int> Accepted { get; } = [];

    /// <summary>Refusal texts (shape only: quoted names replaced), by count.</summary>
    public Dictionary<string, int> Refusals { get; } = [];

    /// <summary>Classified events (QEMU's graph-mod shapes and the series' patterns), by count.</summary>
    public Dictionary<string, int> Events { get; } = [];

    /// <summary>Runs completed.</summary>
    public int Runs { get; set; }

    /// <summary>Steps executed and checked.</summary>
    public long Steps { get; set; }

    /// <summary>Transactions run.</summary>
    public int Transactions { get; set; }

    /// <summary>Transactions refused and rolled back.</summary>
    public int RolledBack { get; set; }

    /// <summary>Transactions rolled back by an abort action.</summary>
    public int Aborts { get; set; }

    /// <summary>Faults armed.</summary>
    public int FaultsArmed { get; set; }

    /// <summary>Steps that failed because of an injected fault (a failed open, read or write: the fault's errno in the reply).</summary>
    public int FailedByFault { get; set; }

    /// <summary>Graphs Z3 checked against the model.</summary>
    public int Z3Checks { get; set; }

    /// <summary>Regression-corpus scenarios replayed before the random runs.</summary>
    public int CorpusReplayed { get; set; }

    /// <summary>Wall time of the random runs.</summary>
    public TimeSpan Elapsed { get; set; }

    /// <summary>Checked steps per second.</summary>
    public double StepsPerSecond => Elapsed.TotalSeconds > 0 ? Steps / Elapsed.TotalSeconds : 0;

    /// <summary>Share of steps refused (0…1).</summary>
    public double RefusedShare => Steps == 0 ? 0 : 1 - (double)Accepted.Values.Sum() / Generated.Values.Sum();

    /// <summary>
    /// Command kinds accepted fewer than <paramref name="floor"/> times: a campaign that never exercises a
    /// command kind proves nothing about it, so it fails.
    /// </summary>
    public IReadOnlyList<string> BelowFloor(int floor, IEnumerable<string> kinds) =>
        [.. kinds.Where(k => Accepted.GetValueOrDefault(k) < floor)];

    /// <summary>Adds <paramref name="o"/>'s counts to these.</summary>
    public void Add(CampaignStats o)
    {
        ArgumentNullException.ThrowIfNull(o);
        foreach (var (mine, theirs) in new[] { (Generated, o.Generated), (Accepted, o.Accepted), (Refusals, o.Refusals), (Events, o.Events) })
            foreach (var kv in theirs) mine[kv.Key] = mine.GetValueOrDefault(kv.Key) + kv.Value;
        Runs += o.Runs;
        Steps += o.Steps;
        Transactions += o.Transactions;
        RolledBack += o.RolledBack;
        Aborts += o.Aborts;
        FaultsArmed += o.FaultsArmed;
        FailedByFault += o.FailedByFault;
        Z3Checks += o.Z3Checks;
        CorpusReplayed += o.CorpusReplayed;
    }

    /// <summary>Counts one step of a run.</summary>
    internal void Count(Command c, Judge j, Model.Graph before)
    {
        Steps++;
        Generated[c.Name] = Generated.GetValueOrDefault(c.Name) + 1;
        bool ok = j.LastReply?.IsOk == true;
        if (ok) Accepted[c.Name] = Accepted.GetValueOrDefault(c.Name) + 1;
        else if (j.LastReply?.Error is { } e)
        {
            var shape = Quoted().Replace(e.Desc, "'…'");
            Refusals[shape] = Refusals.GetValueOrDefault(shape) + 1;
            if (before.Faults.Any(f => e.Desc.EndsWith(Model.HostFaults.ErrnoText(f.Errno), StringComparison.Ordinal) || e.Desc == $"errno {f.Errno}"))
                FailedByFault++;
        }
        if (c is FaultStep { Op: not "clear" }) FaultsArmed++;
        if (c is Vocabulary.Transaction t)
        {
            Transactions++;
            if (!ok) RolledBack++;
            if (!ok && j.LastReply?.Error?.Desc == "Transaction aborted using Abort action") Aborts++;
        }
    }
}

/// <summary>
/// The differential campaign: random command sequences on the model and the implementation side by side
/// (<see cref="Judge"/>), in runs spread over worker threads and shards, stopping at the first divergence,
/// which it shrinks to a minimal command list (whole steps first, then actions inside transactions) and
/// reports with one replay string. The regression corpus is replayed before any random run.
/// </summary>
public static class Campaign
{
    /// <summary>Most re-runs one shrink may spend.</summary>
    public const int ShrinkRunsMax = 2_000;

    /// <summary>Steps per run unless asked otherwise: long enough for stacks of a dozen nodes to form.</summary>
    public const int RunLengthDefault = 60;

    /// <summary>The command kinds a campaign must see accepted, each at least the floor.</summary>
    public static readonly IReadOnlyList<string> CoveredKinds =
    [
        "blockdev-add", "blockdev-del", "x-blockdev-replace", "blockdev-reopen", "transaction", "device_add", "device_del",
        "qom-set", "nbd-server-start", "block-export-add", "block-export-del", "object-add", "object-del",
        "block-dirty-bitmap-add", "x-io-read", "x-io-write", "x-fault-open", "x-fault-clear",
        "blockdev-backup", "x-run-jobs", "job-cancel", "job-pause", "block-job-set-speed",
    ];

    /// <summary>Replays the regression corpus; the first failure (name and divergence), or null.</summary>
    public static (string Name, string Problem)? ReplayCorpus(CampaignStats? stats = null)
    {
        foreach (var (name, text) in Scenario.Corpus())
        {
            var d = Replay(Scenario.Parse(text, name));
            if (stats is not null) stats.CorpusReplayed++;
            if (d is not null) return (name, d);
        }
        return null;
    }

    /// <summary>
    /// Runs a campaign: its shard's runs on <see cref="CampaignOptions.Workers"/> threads. Returns the
    /// divergence of the lowest-numbered failing run (shrunk), or null. <paramref name="progress"/> gets the
    /// steps done so far, from any thread.
    /// </summary>
    public static Divergence? Run(CampaignOptions o, CampaignStats stats, Action<long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(stats);
        if (o.ShardCount < 1 || o.ShardIndex < 0 || o.ShardIndex >= o.ShardCount) throw new ArgumentException("shard index must lie in [0, count)");
        long runsTotal = (o.Steps + o.RunLength - 1) / o.RunLength;
        var clock = Stopwatch.StartNew();
        long next = o.ShardIndex, stepsDone = 0;
        var found = new ConcurrentBag<(long Run, List<Command> Log, string Problem)>();
        var perWorker = new CampaignStats[Math.Max(1, o.Workers)];
        Parallel.For(0, perWorker.Length, new ParallelOptions { MaxDegreeOfParallelism = perWorker.Length }, w =>
        {
            var mine = perWorker[w] = new CampaignStats();
            using var z3 = o.Z3Every > 0 ? new Proofs.Smt.SmtSolver() : null;
            while (found.IsEmpty && (o.Time is not { } t || clock.Elapsed < t))
            {
                long r = Interlocked.Add(ref next, o.ShardCount) - o.ShardCount;
                if (r >= runsTotal) break;
                int length = (int)Math.Min(o.RunLength, o.Steps - r * o.RunLength);
                var (log, problem) = Generate((int)(o.Seed + r), length, o, mine, z3, s => progress?.Invoke(Interlocked.Add(ref stepsDone, s)));
                mine.Runs++;
                if (problem is not null) found.Add((r, log, problem));
            }
        });
        foreach (var s in perWorker) stats.Add(s);
        stats.Elapsed += clock.Elapsed;
        if (found.IsEmpty) return null;
        var first = found.MinBy(f => f.Run);
        var shrunk = Shrink(first.Log, o.Mutation);
        return new Divergence(o.ReplayOf((int)(o.Seed + first.Run)), shrunk, Replay(shrunk, o.Mutation) ?? first.Problem, first.Log.Count);
    }

    /// <summary>Regenerates one run (the parts of a replay string); the log up to the first divergence and the divergence, or null.</summary>
    public static (List<Command> Log, string? Problem) Generate(int seed, int steps, CampaignOptions o, CampaignStats? stats = null,
        Proofs.Smt.SmtSolver? z3 = null, Action<int>? stepped = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        using var judge = new Judge(o.Mutation, thorough: false, sampleAt: seed);
        var rnd = new Random(seed);
        var gen = new CommandGen(rnd.Next, io: o.Io, faults: o.Faults);
        var log = new List<Command>();
        for (int i = 0; i < steps; i++)
        {
            var c = gen.Next(judge.Model);
            log.Add(c);
            var before = judge.Model;
            var d = judge.Step(c);
            if (stats is not null)
            {
                stats.Count(c, judge, before.Graph);
                if (d is null)
                    foreach (var e in Events.Classify(before, c, judge.Model, judge.LastReply!).Concat(Shapes.Classify(before, c, judge.Model, judge.LastReply!)))
                        stats.Events[e] = stats.Events.GetValueOrDefault(e) + 1;
            }
            if ((i & 15) == 15) stepped?.Invoke(16);
            if (d is not null) return (log, d);
            // Z3's schedule is a function of the run's seed and the step, so a replay checks the same graphs.
            if (z3 is not null && o.Z3Every > 0 && ((long)seed * o.RunLength + i + 1) % o.Z3Every == 0)
            {
                // Z3 must agree with the model on the committed graph (verdict, and every edge's perms).
                var a = Proofs.GraphEncoding.Compare(z3, judge.Model.Graph);
                if (stats is not null) stats.Z3Checks++;
                if (a.Mismatch is not null) return (log, "Z3 disagrees with the model: " + a.Mismatch);
                if (!a.ModelConsistent) return (log, "the model committed a graph that is not consistent");
            }
        }
        return (log, null);
    }

    /// <summary>Replays a replay string: regenerates the run, and if it diverges, shrinks it.</summary>
    public static Divergence? ReplayString(string replay)
    {
        var (seed, o) = CampaignOptions.ParseReplay(replay);
        using var z3 = o.Z3Every > 0 ? new Proofs.Smt.SmtSolver() : null;
        var (log, problem) = Generate(seed, o.RunLength, o, z3: z3);
        if (problem is null) return null;
        var shrunk = Shrink(log, o.Mutation);
        return new Divergence(replay, shrunk, Replay(shrunk, o.Mutation) ?? problem, log.Count);
    }

    /// <summary>Replays steps on a fresh judge; the divergence text, or null if they agree.</summary>
    public static string? Replay(IReadOnlyList<Command> commands, EngineMutation mutation = EngineMutation.None)
    {
        ArgumentNullException.ThrowIfNull(commands);
        using var judge = new Judge(mutation);
        foreach (var c in commands)
        {
            var d = judge.Step(c);
            if (d is not null) return d;
        }
        return null;
    }

    /// <summary>
    /// Delta-debugging shrink, while it still diverges: drop chunks of steps, then actions of transactions,
    /// then arguments (each optional member of a command's arguments, at any depth, that the command
    /// still parses without; an I/O step's length down to one sector).
    /// </summary>
    public static List<Command> Shrink(List<Command> log, EngineMutation mutation = EngineMutation.None)
    {
        ArgumentNullException.ThrowIfNull(log);
        int budget = ShrinkRunsMax;
        var cur = log;
        bool Fails(List<Command> l) => budget-- > 0 && Replay(l, mutation) is not null;
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
        for (int i = 0; i < cur.Count; i++)
        {
            foreach (var simpler in Simpler(cur[i]))
            {
                var cand = cur.ToList();
                cand[i] = simpler;
                if (Fails(cand))
                {
                    cur = cand;
                    i--; // simplify the simpler step again
                    break;
                }
            }
        }
        return cur;
    }

    /// <summary>Candidate simplifications of one step, each with one thing less.</summary>
    private static IEnumerable<Command> Simpler(Command c)
    {
        if (c is IoStep io)
        {
            if (io.Length > Model.Data.Sector) yield return io with { Length = Model.Data.Sector };
            yield break;
        }
        if (c is FaultStep or JobRunStep) yield break;
        var json = CommandWriter.ToQmp(c);
        if (json["arguments"] is not System.Text.Json.Nodes.JsonObject) yield break;
        // Every member path under "arguments"; try the request without each.
        var paths = new List<List<string>>();
        Collect((System.Text.Json.Nodes.JsonObject)json["arguments"]!, [], paths);
        foreach (var path in paths)
        {
            var copy = json.DeepClone().AsObject();
            var parent = (System.Text.Json.Nodes.JsonNode)copy["arguments"]!;
            foreach (var key in path.Take(path.Count - 1)) parent = key.StartsWith('#') ? parent[int.Parse(key[1..], CultureInfo.InvariantCulture)]! : parent[key]!;
            var last = path[^1];
            if (last.StartsWith('#')) parent.AsArray().RemoveAt(int.Parse(last[1..], CultureInfo.InvariantCulture));
            else parent.AsObject().Remove(last);
            var (simpler, err) = CommandParser.ParseRequest(copy);
            if (err is null && simpler is not null) yield return simpler;
        }
    }

    private static void Collect(System.Text.Json.Nodes.JsonNode node, List<string> at, List<List<string>> paths)
    {
        if (node is System.Text.Json.Nodes.JsonObject o)
        {
            foreach (var (k, v) in o)
            {
                List<string> p = [.. at, k];
                paths.Add(p);
                if (v is not null) Collect(v, p, paths);
            }
        }
        else if (node is System.Text.Json.Nodes.JsonArray a)
        {
            for (int i = 0; i < a.Count; i++)
            {
                List<string> p = [.. at, "#" + i.ToString(CultureInfo.InvariantCulture)];
                paths.Add(p);
                if (a[i] is { } v) Collect(v, p, paths);
            }
        }
    }
}
