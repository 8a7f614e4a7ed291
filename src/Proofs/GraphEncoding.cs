using System.Text;
using Verified.Model;
using Verified.Proofs.Smt;
using Verified.Vocabulary;

namespace Verified.Proofs;

/// <summary>
/// Encodes a graph's permission state for Z3: every node-parent edge equals its rule applied to its
/// parent's cumulative perms, root edges hold their parent's fixed perms, and the graph is consistent
/// when no two parents of a node conflict, no read-only node has a writer, and no two locking file
/// nodes on one file conflict. Because the graph is acyclic the equations have one solution, so the
/// query is satisfiable exactly when that solution is consistent.
/// </summary>
public static class GraphEncoding
{
    /// <summary>The query text and, per edge id, the names of its perm and shared constants.</summary>
    public sealed record Query(string Text, IReadOnlyDictionary<long, (string Perm, string Shared)> EdgeVars);

    /// <summary>Builds the consistency query of <paramref name="g"/>.</summary>
    public static Query Encode(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        var sb = new StringBuilder();
        var vars = new Dictionary<long, (string, string)>();
        var index = g.Nodes.Values.OrderBy(n => n.Seq).Select((n, i) => (n.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        foreach (var e in g.Edges)
        {
            vars[e.Id] = ($"p_{e.Id}", $"s_{e.Id}");
            sb.AppendLine($"(declare-const p_{e.Id} Perm)(declare-const s_{e.Id} Perm)");
        }
        foreach (var n in g.Nodes.Values)
        {
            var i = index[n.Name];
            var parents = g.ParentsOf(n.Name).ToList();
            sb.AppendLine($"(define-fun cp_{i} () Perm {Fold("bvor", parents.Select(e => $"p_{e.Id}"), "NONE")})");
            sb.AppendLine($"(define-fun cs_{i} () Perm {Fold("bvand", parents.Select(e => $"s_{e.Id}"), "ALL")})");
            sb.AppendLine($"(define-fun hp_{i} () Bool {SmtRules.Literal(parents.Count > 0)})");
        }
        foreach (var e in g.Edges)
        {
            var (perm, shared) = e.Parent switch
            {
                NodeParent np => NodeEdge(g, e, g.Nodes[np.Node], index[np.Node]),
                DeviceParent dp => ($"(device-perm {SmtRules.Literal(g.Devices[dp.Id].ReadOnly)})", $"(device-shared {SmtRules.Literal(g.Devices[dp.Id].ShareRw)})"),
                ExportParent ep => ($"(export-perm {SmtRules.Literal(g.Exports[ep.Id].Writable)})", "export-shared"),
                _ => (SmtRules.Literal(e.Perm), SmtRules.Literal(e.Shared)),
            };
            sb.AppendLine($"(assert (= p_{e.Id} {perm}))(assert (= s_{e.Id} {shared}))");
        }
        var ok = new List<string>();
        foreach (var n in g.Nodes.Values)
        {
            var i = index[n.Name];
            var parents = g.ParentsOf(n.Name).ToList();
            foreach (var a in parents)
            {
                foreach (var b in parents)
                {
                    if (a.Id != b.Id) ok.Add($"(subset p_{b.Id} s_{a.Id})");
                }
            }
            if (!n.Writable) ok.Add($"(not (has cp_{i} (bvor W WU)))");
        }
        var files = g.Nodes.Values.Where(n => n.Driver == "file" && n.Str("locking") != "off").ToList();
        foreach (var a in files)
        {
            foreach (var b in files.Where(b => b.Name != a.Name && b.Str("filename") == a.Str("filename")))
                ok.Add($"(subset cp_{index[a.Name]} cs_{index[b.Name]})");
        }
        sb.AppendLine($"(assert {Fold("and", ok, "true")})");
        return new Query(sb.ToString(), vars);
    }

    private static (string, string) NodeEdge(Graph g, Edge e, Node parent, int i)
    {
        var (perm, shared) = SmtRules.ChildRule(parent, e, $"cp_{i}", $"cs_{i}", $"hp_{i}");
        return (perm, g.Find(e.Child) is { ForceShare: true } ? "ALL" : shared);
    }

    private static string Fold(string op, IEnumerable<string> terms, string empty)
    {
        var list = terms.ToList();
        return list.Count switch { 0 => empty, 1 => list[0], _ => $"({op} {string.Join(' ', list)})" };
    }

    /// <summary>The outcome of checking one graph both ways.</summary>
    /// <param name="Z3Consistent">Z3's verdict.</param>
    /// <param name="ModelConsistent">The C# model's verdict (a full refresh succeeds).</param>
    /// <param name="Mismatch">A description of any disagreement, null when both agree in verdict and edge perms.</param>
    public sealed record Agreement(bool Z3Consistent, bool ModelConsistent, string? Mismatch);

    /// <summary>
    /// Asks Z3 about <paramref name="g"/> and compares with the model: same verdict, and when consistent,
    /// every edge's perm and shared in Z3's model equal those of the model's full refresh.
    /// </summary>
    public static Agreement Compare(SmtSolver solver, Graph g)
    {
        ArgumentNullException.ThrowIfNull(solver);
        ArgumentNullException.ThrowIfNull(g);
        var q = Encode(g);
        var result = solver.Check(SmtRules.Prelude + q.Text, q.EdgeVars.Count == 0 ? Array.Empty<string>() : [.. q.EdgeVars.Values.SelectMany(v => new[] { v.Perm, v.Shared })]);
        if (result.Verdict == SmtVerdict.Unknown) return new(false, false, "Z3 answered unknown");
        var refreshed = Refresh.Nodes(g, g.Nodes.Values.OrderBy(n => n.Seq).Select(n => n.Name));
        bool z3 = result.Verdict == SmtVerdict.Sat;
        if (z3 != refreshed.Ok)
            return new(z3, refreshed.Ok, $"Z3 says {(z3 ? "consistent" : "inconsistent")}, the model says {(refreshed.Ok ? "consistent" : refreshed.Error!.Desc)}");
        if (!z3) return new(false, false, null);
        var values = SmtModelParser.Parse(result.Model ?? "()");
        var model = refreshed.Get();
        foreach (var e in model.Edges)
        {
            var (pv, sv) = q.EdgeVars[e.Id];
            var zp = (Perm)SmtModelParser.ParseBitVector(values[pv]);
            var zs = (Perm)SmtModelParser.ParseBitVector(values[sv]);
            if (zp != e.Perm || zs != e.Shared)
                return new(true, true, $"edge {g.GraphName(e.Parent)} -{e.Name}-> {e.Child}: Z3 {Perms.Short(zp)}/{Perms.Short(zs)}, model {Perms.Short(e.Perm)}/{Perms.Short(e.Shared)}");
        }
        return new(true, true, null);
    }
}
