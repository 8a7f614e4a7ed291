using System.Globalization;
using Verified.Proofs;
using Verified.Proofs.Smt;

namespace Verified.Cli;

/// <summary><c>verified prove</c>: the theorems, then the encoding's agreement with the model on random graphs.</summary>
internal static class ProveCommand
{
    /// <summary>Most random graphs one run may check.</summary>
    private const int GraphsMax = 1_000_000;

    public static int Run(string[] args)
    {
        string? smt2 = null;
        int graphs = 200;
        int seed = 1;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--smt2": smt2 = Value(); break;
                case "--graphs": graphs = ParseInt(Value(), "--graphs", 0, GraphsMax); break;
                case "--seed": seed = ParseInt(Value(), "--seed", int.MinValue, int.MaxValue); break;
                default: throw new ArgumentException($"prove: unknown option '{args[i]}'");
            }
        }
        if (!SmtSolver.IsAvailable(out var reason))
        {
            Console.Error.WriteLine($"verified prove: Z3 is not available: {reason}");
            return 3;
        }
        using var solver = new SmtSolver();
        Console.WriteLine($"Z3 {solver.Version}; rules: src/Proofs/Smt2/rules.smt2");
        var results = Prover.Run(solver, Theorems.All, smt2);
        Console.WriteLine(Prover.Table(results));
        if (smt2 is not null) Console.WriteLine($"queries written to {Path.GetFullPath(smt2)}");

        int disagreements = 0, consistent = 0;
        var rnd = new Random(seed);
        for (int n = 0; n < graphs; n++)
        {
            var g = RandomGraphs.Build(rnd.Next);
            var a = GraphEncoding.Compare(solver, g);
            if (a.Z3Consistent) consistent++;
            if (a.Mismatch is null) continue;
            disagreements++;
            Console.WriteLine($"DISAGREEMENT on random graph {n} (seed {seed}): {a.Mismatch}");
        }
        Console.WriteLine($"encoding vs model: {graphs - disagreements} of {graphs} random graphs agree ({consistent} consistent, {graphs - consistent} not); replay with --seed {seed} --graphs {graphs}");
        return results.All(r => r.Proved) && disagreements == 0 ? 0 : 1;
    }

    private static int ParseInt(string text, string option, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min || v > max)
            throw new ArgumentException($"{option} takes an integer in [{min}, {max}], not '{text}'");
        return v;
    }
}
