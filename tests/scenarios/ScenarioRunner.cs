using System.Text;
using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Tests.Scenarios;

/// <summary>
/// Runs a scenario file on an engine and checks every inline expectation: <c>expect</c> (ok/error),
/// <c>expect_desc</c> (exact text), <c>expect_class</c>, <c>expect_edges</c> (the whole edge set),
/// <c>expect_perms</c> (exact perm/shared of the listed edges, Verified's extension) and
/// <c>expect_node_count</c>; after every QMP step the engine's invariants must hold. Host steps
/// (<c>run</c>, <c>sleep</c>, <c>wait_event</c>, <c>qemu_args</c>) are for real QEMU and are skipped.
/// </summary>
public static class ScenarioRunner
{
    /// <summary>Generated node names are random in QEMU; scenarios write them as <c>#auto</c>.</summary>
    public const string AutoName = "#auto";

    /// <summary>Runs <paramref name="steps"/>; returns the list of failures (empty when all hold).</summary>
    public static IReadOnlyList<string> Run(IScenarioEngine engine, IReadOnlyList<ScenarioStep> steps, string tmp = "/tmp/verified-scenario")
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(steps);
        var failures = new List<string>();
        foreach (var step in steps.Where(s => s.IsQmp))
        {
            var reply = engine.Execute(step.Request(tmp));
            var error = reply["error"] as JsonObject;
            var where = $"{step} -> {reply.ToJsonString()}";
            var expect = step.Str("expect") ?? (step.Json.ContainsKey("expect_desc") ? "error" : "ok");
            if (expect == "ok" && error is not null) failures.Add($"expected ok: {where}");
            if (expect == "error" && error is null) failures.Add($"expected an error: {where}");
            if (step.Str("expect_desc") is { } desc && error?["desc"]?.GetValue<string>() != desc)
                failures.Add($"expected desc '{desc}': {where}");
            if (step.Str("expect_class") is { } cls && error?["class"]?.GetValue<string>() != cls)
                failures.Add($"expected class '{cls}': {where}");
            var edges = engine.Edges();
            if (step.Json["expect_edges"] is JsonArray want)
            {
                var w = want.Select(x => string.Join(" ", x!.AsArray().Select(y => y!.GetValue<string>()))).Order(StringComparer.Ordinal).ToList();
                var got = edges.Select(e => $"{Label(e.Parent)} {e.Name} {Label(e.Child)}").Order(StringComparer.Ordinal).ToList();
                if (!w.SequenceEqual(got)) failures.Add($"edges differ at {step}:\n  want {string.Join(", ", w)}\n  got  {string.Join(", ", got)}");
            }
            if (step.Json["expect_perms"] is JsonArray perms)
            {
                foreach (var p in perms)
                {
                    var a = p!.AsArray().Select(y => y!.GetValue<string>()).ToArray();
                    var e = edges.FirstOrDefault(x => Label(x.Parent) == a[0] && x.Name == a[1] && Label(x.Child) == a[2]);
                    var wantPerm = Norm(a[3]);
                    var wantShared = Norm(a[4]);
                    if (e is null) failures.Add($"no edge {a[0]} -{a[1]}-> {a[2]} at {step}");
                    else if (e.Perm != wantPerm || e.Shared != wantShared)
                        failures.Add($"perms of {a[0]} -{a[1]}-> {a[2]} at {step}: want {wantPerm} / {wantShared}, got {e.Perm} / {e.Shared}");
                }
            }
            if (step.Json["expect_node_count"] is JsonValue n && n.GetValue<int>() != engine.NodeCount())
                failures.Add($"expected {n} nodes, got {engine.NodeCount()} at {step}");
            foreach (var v in engine.Invariants()) failures.Add($"invariant broken after {step}: {v}");
            if (failures.Count > 0) break; // the first divergence is the one to read
        }
        return failures;
    }

    /// <summary>Formats failures for an assertion message.</summary>
    public static string Report(string name, IReadOnlyList<string> failures)
    {
        var sb = new StringBuilder($"scenario {name} failed:\n");
        foreach (var f in failures) sb.AppendLine("  " + f);
        return sb.ToString();
    }

    private static string Label(string name) => name.StartsWith('#') ? AutoName : name;

    private static string Norm(string perm) => Perms.Short(Perms.ParseShort(perm));
}
