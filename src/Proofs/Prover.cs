using System.Diagnostics;
using System.Globalization;
using Verified.Proofs.Smt;
using Verified.Vocabulary;

namespace Verified.Proofs;

/// <summary>The result of checking one theorem.</summary>
/// <param name="Theorem">The theorem.</param>
/// <param name="Proved">True when Z3 confirmed it.</param>
/// <param name="Verdict">Z3's raw verdict.</param>
/// <param name="Elapsed">Time of the check.</param>
/// <param name="Counterexample">For a refuted universal theorem, the values that break it (perms in short form); for an existential one, its witness.</param>
public sealed record ProofResult(Theorem Theorem, bool Proved, SmtVerdict Verdict, TimeSpan Elapsed, string? Counterexample);

/// <summary>Checks theorems with Z3 and optionally writes each query as a standalone <c>.smt2</c> file.</summary>
public static class Prover
{
    /// <summary>Checks every theorem in <paramref name="theorems"/>.</summary>
    public static IReadOnlyList<ProofResult> Run(SmtSolver solver, IEnumerable<Theorem> theorems, string? smt2Folder = null)
    {
        ArgumentNullException.ThrowIfNull(solver);
        ArgumentNullException.ThrowIfNull(theorems);
        if (smt2Folder is not null) Directory.CreateDirectory(smt2Folder);
        var results = new List<ProofResult>();
        foreach (var t in theorems)
        {
            if (smt2Folder is not null)
                File.WriteAllText(Path.Combine(smt2Folder, t.Name + ".smt2"),
                    $"; {t.Statement}\n; expected: {(t.Universal ? "unsat (the negation has no model)" : "sat (a witness exists)")}\n"
                    + SmtRules.Prelude + t.Query + "\n(check-sat)\n"
                    + (t.Universal ? "" : $"(get-value ({string.Join(' ', t.Variables)}))\n"));
            var sw = Stopwatch.StartNew();
            var r = solver.Check(SmtRules.Prelude + t.Query, t.Variables);
            sw.Stop();
            bool proved = t.Universal ? r.Verdict == SmtVerdict.Unsat : r.Verdict == SmtVerdict.Sat;
            results.Add(new ProofResult(t, proved, r.Verdict, sw.Elapsed, r.Model is null ? null : Describe(r.Model)));
        }
        return results;
    }

    /// <summary>Renders a Z3 model with permission values in short form (<c>p = CR|W</c>).</summary>
    public static string Describe(string model)
    {
        var values = SmtModelParser.Parse(model);
        return string.Join(", ", values.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv =>
            SmtModelParser.TryParseBitVector(kv.Value, out var v) ? $"{kv.Key} = {Perms.Short((Perm)v)}" : $"{kv.Key} = {kv.Value}"));
    }

    /// <summary>A plain-text table of results.</summary>
    public static string Table(IReadOnlyList<ProofResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        int w = Math.Max(7, results.Max(r => r.Theorem.Name.Length));
        var lines = new List<string> { $"{"theorem".PadRight(w)}  verdict   time", new string('-', w + 20) };
        foreach (var r in results)
        {
            var verdict = r.Proved ? "proved" : "REFUTED";
            lines.Add($"{r.Theorem.Name.PadRight(w)}  {verdict,-8}  {r.Elapsed.TotalMilliseconds.ToString("0.0", CultureInfo.InvariantCulture),6} ms");
            if (!r.Proved) lines.Add($"    {(r.Theorem.Universal ? "counterexample" : "no witness")}: {r.Counterexample ?? r.Verdict.ToString()}");
        }
        lines.Add($"{results.Count(r => r.Proved)} of {results.Count} theorems proved");
        return string.Join('\n', lines);
    }
}
