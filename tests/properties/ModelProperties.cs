// Properties of the model, checked by FsCheck on random command sequences and random graphs. Each
// test draws an array of choices; CommandGen turns it into QMP commands against the evolving model
// state (RandomGraphs into a graph), so FsCheck's shrinking of the array shrinks the commands. A
// failure message holds the shrunk command list as QMP lines (replayable with any QMP client) and
// FsCheck prints the seed that regenerates it.
using System.Text;
using FsCheck.Xunit;
using Verified.Model;
using Verified.Proofs;
using Verified.Proofs.Smt;
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Properties;

public class ModelProperties
{
    /// <summary>A pick function over a choice array; past its end every choice is 0.</summary>
    internal static Func<int, int> Picker(int[] choices)
    {
        int i = 0;
        return n => n <= 1 || i >= choices.Length ? Skip(ref i) : (int)((uint)choices[i++] % (uint)n);
        static int Skip(ref int i) { i++; return 0; }
    }

    /// <summary>Runs generated commands; calls <paramref name="check"/> after each with (before, command, after, reply).</summary>
    internal static string? RunSequence(int[] choices, Func<ModelState, Command, ModelState, Reply, string?> check, Func<CommandGen, ModelState, Command>? next = null)
    {
        int used = 0;
        var pick = Picker(choices);
        Func<int, int> counting = n => { used++; return pick(n); };
        var gen = new CommandGen(counting);
        var s = ModelState.Initial;
        var log = new List<Command>();
        while (used < choices.Length)
        {
            var c = next is null ? gen.Next(s) : next(gen, s);
            log.Add(c);
            var (after, reply) = Machine.Apply(s, c);
            var problem = check(s, c, after, reply);
            if (problem is not null) return Report(problem, log);
            s = after;
        }
        return null;
    }

    internal static string Report(string problem, IEnumerable<Command> log)
    {
        var sb = new StringBuilder(problem).AppendLine().AppendLine("commands (QMP, replayable):");
        foreach (var c in log) sb.AppendLine(CommandWriter.ToQmp(c).ToJsonString());
        return sb.ToString();
    }

    /// <summary>A command that fails leaves the graph exactly as it was.</summary>
    [Property(MaxTest = 300)]
    public void Failed_command_leaves_the_graph_identical(int[] choices)
    {
        var failure = RunSequence(choices, (before, c, after, reply) =>
            reply.IsOk || after.Graph.Equals(before.Graph) ? null : $"{c.Name} failed ({reply.Error}) but changed the graph");
        Assert.True(failure is null, failure);
    }

    /// <summary>Every command that succeeds leaves a graph satisfying every invariant (I1…I12).</summary>
    [Property(MaxTest = 300)]
    public void Invariants_hold_after_every_command(int[] choices)
    {
        var failure = RunSequence(choices, (_, c, after, _) =>
        {
            var v = Invariants.Check(after.Graph);
            return v.Count == 0 ? null : $"after {c.Name}: {string.Join("; ", v)}";
        });
        Assert.True(failure is null, failure);
    }

    /// <summary>A transaction ending in an abort action changes nothing and reports the abort or an earlier error.</summary>
    [Property(MaxTest = 300)]
    public void Abort_restores_the_exact_graph(int[] choices)
    {
        var failure = RunSequence(choices, (before, c, after, reply) =>
        {
            if (c is not Vocabulary.Transaction t || t.Actions[^1] is not AbortAction) return null;
            if (reply.IsOk) return "a transaction ending in abort succeeded";
            if (!after.Graph.Equals(before.Graph)) return "an aborted transaction changed the graph";
            // Only the first error is reported: an earlier action's, or else the abort's.
            var (_, without) = Machine.Apply(before, t with { Actions = t.Actions.RemoveAt(t.Actions.Count - 1) });
            var want = without.Error ?? QmpError.Generic("Transaction aborted using Abort action");
            return reply.Error == want ? null : $"reported {reply.Error}, expected {want}";
        }, (gen, s) =>
        {
            var t = (Vocabulary.Transaction)gen.Transaction(s);
            return t with { Actions = t.Actions.Add(new AbortAction()) };
        });
        Assert.True(failure is null, failure);
    }

    /// <summary>Writing a generated command as QMP and parsing it back gives the same command.</summary>
    [Property(MaxTest = 300)]
    public void Commands_round_trip_through_QMP(int[] choices)
    {
        var failure = RunSequence(choices, (_, c, _, _) =>
        {
            var json = CommandWriter.ToQmp(c);
            var (back, err) = CommandParser.ParseRequest(json);
            return err is null && back!.Equals(c) ? null : $"{json.ToJsonString()} parsed back as {(object?)err ?? back}";
        });
        Assert.True(failure is null, failure);
    }

    /// <summary>
    /// Checking only the final graph accepts every sequence of graph actions that checking after every
    /// action accepts, with the identical result.
    /// </summary>
    [Property(MaxTest = 300)]
    public void Final_graph_check_accepts_all_that_step_by_step_accepts(int[] choices)
    {
        var failure = RunSequence(choices, (before, c, _, _) =>
        {
            if (c is not Vocabulary.Transaction t) return null;
            var stepwise = Model.Transaction.Run(before.Graph, before.NameCounter, t.Actions, refreshEveryAction: true);
            var final = Model.Transaction.Run(before.Graph, before.NameCounter, t.Actions);
            if (stepwise.Error is not null) return null;
            if (final.Error is not null) return $"step by step accepted, final-graph check refused: {final.Error}";
            return final.Graph.Equals(stepwise.Graph) ? null : "both accepted with different graphs";
        }, (gen, s) => gen.GraphTransaction(s));
        Assert.True(failure is null, failure);
    }

    /// <summary>Refreshing a graph whose refresh succeeded changes nothing.</summary>
    [Property(MaxTest = 500)]
    public void Refresh_is_idempotent(int[] choices)
    {
        var g = RandomGraphs.Build(Picker(choices));
        var all = g.Nodes.Keys.ToList();
        var once = Refresh.Nodes(g, all);
        if (!once.Ok) return;
        var twice = Refresh.Nodes(once.Get(), all);
        Assert.True(twice.Ok, twice.Error?.Desc);
        Assert.Equal(once.Get(), twice.Get());
        // Random graphs may hold unreferenced nodes (I7); every other invariant holds after a refresh.
        Assert.DoesNotContain(Invariants.Check(once.Get()), v => !v.StartsWith("I7", StringComparison.Ordinal));
    }

    /// <summary>
    /// Z3's verdict on a graph's permission state equals the model's, and in every consistent graph
    /// Z3's model of each edge's perms equals the model's refresh.
    /// </summary>
    [Property(MaxTest = 500)]
    public void Z3_verdict_equals_the_model_check(int[] choices)
    {
        Assert.True(SmtSolver.IsAvailable(out var reason), reason);
        var g = RandomGraphs.Build(Picker(choices));
        var a = GraphEncoding.Compare(Solver.Value, g);
        Assert.True(a.Mismatch is null, a.Mismatch);
    }

    private static readonly Lazy<SmtSolver> Solver = new(() => new SmtSolver());
}
