using System.Text;
using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Tests.Scenarios;

/// <summary>
/// Runs a scenario file on an engine and checks every inline expectation: <c>expect</c> (ok/error),
/// <c>expect_desc</c> (exact text), <c>expect_class</c>, <c>expect_edges</c> (the whole edge set),
/// <c>expect_perms</c> (exact perm/shared of the listed edges, Verified's extension) and
/// <c>expect_node_count</c>; after every QMP step the engine's invariants must hold. Host steps
/// (<c>run</c>: e.g. qemu-img create) run for engines doing real I/O, in a fresh temporary folder that
/// stands for <c>@TMP@</c>; <c>sleep</c>, <c>wait_event</c> and <c>qemu_args</c> concern real QEMU only.
/// </summary>
public static class ScenarioRunner
{
    /// <summary>Generated node names are random in QEMU; scenarios write them as <c>#auto</c>.</summary>
    public const string AutoName = "#auto";

    /// <summary>Runs <paramref name="steps"/>; returns the list of failures (empty when all hold).</summary>
    public static IReadOnlyList<string> Run(IScenarioEngine engine, IReadOnlyList<ScenarioStep> steps)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(steps);
        var tmp = Directory.CreateTempSubdirectory("verified-scenario-").FullName;
        try
        {
            return RunIn(engine, steps, tmp);
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>Most time a host step may take.</summary>
    private static readonly TimeSpan HostStepTimeout = TimeSpan.FromSeconds(60);

    private static string? RunHostStep(ScenarioStep step, string tmp)
    {
        var argv = step.Json["run"]!.AsArray().Select(x => x!.GetValue<string>().Replace("@TMP@", tmp, StringComparison.Ordinal)).ToList();
        var psi = new System.Diagnostics.ProcessStartInfo(argv[0]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        try
        {
            using var p = System.Diagnostics.Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(HostStepTimeout)) { p.Kill(); return $"host step timed out: {step}"; }
            bool ok = p.ExitCode == 0;
            bool want = (step.Str("expect") ?? "ok") == "ok";
            return ok == want ? null : $"host step exited {p.ExitCode} ({stderr.Result.Trim()}): {step}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"host step needs '{argv[0]}' ({e.Message}; scripts/deps.sh installs it): {step}";
        }
    }

    private static List<string> RunIn(IScenarioEngine engine, IReadOnlyList<ScenarioStep> steps, string tmp)
    {
        var failures = new List<string>();
        foreach (var step in steps)
        {
            if (step.Json.ContainsKey("run") && engine.RunsHostSteps)
            {
                var err = RunHostStep(step, tmp);
                if (err is not null) { failures.Add(err); break; }
                continue;
            }
            if (!step.IsQmp) continue;
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
