using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// Every scenario file in tests/scenarios/cases — QEMU 7.2's measurements and the series' own —
/// replayed through <c>verified serve</c> over its socket by a plain client, with each step's
/// expectations (outcome, error class and text, the whole edge set, listed perms, node count)
/// checked on what the client receives. The engine passes these directly (tests/scenarios); this
/// shows the daemon adds and loses nothing on the way.
/// </summary>
public class ScenarioOverSocketTests
{
    /// <summary>Generated node names are random in QEMU; scenarios write them as <c>#auto</c>.</summary>
    private const string AutoName = "#auto";

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "cases"), "*.jsonl").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario_expectations_hold_over_the_socket(string file)
    {
        var steps = Comparison.LoadScenario(Path.Combine(AppContext.BaseDirectory, "cases", file));
        using var peer = Peer.StartVerified();
        using var c = peer.Connect();
        c.Negotiate();
        var failures = new List<string>();
        foreach (var step in steps)
        {
            if (step["run"] is JsonArray argv)
            {
                RunHost(argv, peer.TmpDir);
                continue;
            }
            if (step["execute"]?.GetValue<string>() is not { } cmd) continue;
            var args = step["arguments"] is { } a ? JsonNode.Parse(a.ToJsonString().Replace("@TMP@", peer.TmpDir, StringComparison.Ordinal)) : null;
            var reply = c.Execute(cmd, args);
            var where = $"{step.ToJsonString()} -> {reply.ToJsonString()}";
            var error = reply["error"];
            var expect = step["expect"]?.GetValue<string>() ?? (step.ContainsKey("expect_desc") ? "error" : "ok");
            if ((expect == "ok") != (error is null)) failures.Add($"expected {expect}: {where}");
            if (step["expect_desc"]?.GetValue<string>() is { } desc && error?["desc"]?.GetValue<string>() != desc) failures.Add($"expected desc '{desc}': {where}");
            if (step["expect_class"]?.GetValue<string>() is { } cls && error?["class"]?.GetValue<string>() != cls) failures.Add($"expected class '{cls}': {where}");
            var edges = Edges(c);
            if (step["expect_edges"] is JsonArray want)
            {
                var w = want.Select(x => string.Join(" ", x!.AsArray().Select(y => y!.GetValue<string>()))).Order(StringComparer.Ordinal);
                var got = edges.Select(e => $"{e.Parent} {e.Name} {e.Child}").Order(StringComparer.Ordinal);
                if (!w.SequenceEqual(got)) failures.Add($"edges at {step.ToJsonString()}:\n  want {string.Join(", ", w)}\n  got  {string.Join(", ", got)}");
            }
            foreach (var p in step["expect_perms"] as JsonArray ?? [])
            {
                var x = p!.AsArray().Select(y => y!.GetValue<string>()).ToArray();
                var e = edges.FirstOrDefault(e => e.Parent == x[0] && e.Name == x[1] && e.Child == x[2]);
                if (e is null) failures.Add($"no edge {x[0]} -{x[1]}-> {x[2]} at {step.ToJsonString()}");
                else if (e.Perm != Perms.ParseShort(x[3]) || e.Shared != Perms.ParseShort(x[4]))
                    failures.Add($"perms of {x[0]} -{x[1]}-> {x[2]}: want {x[3]} / {x[4]}, got {Perms.Short(e.Perm)} / {Perms.Short(e.Shared)}");
            }
            if (step["expect_node_count"]?.GetValue<int>() is { } count && c.Execute("query-named-block-nodes")["return"]!.AsArray().Count != count)
                failures.Add($"expected {count} nodes at {step.ToJsonString()}");
            if (failures.Count > 0) break; // the first divergence is the one to read
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private sealed record Edge(string Parent, string Name, string Child, Perm Perm, Perm Shared);

    /// <summary>Every edge of x-debug-query-block-graph, nodes labelled by name (auto names as #auto).</summary>
    private static List<Edge> Edges(QmpClient c)
    {
        var g = c.Execute("x-debug-query-block-graph")["return"]!;
        var names = g["nodes"]!.AsArray().ToDictionary(n => n!["id"]!.GetValue<int>(), n => n!["name"]!.GetValue<string>() is var s && s.StartsWith('#') ? AutoName : s);
        return [.. g["edges"]!.AsArray().Select(e => new Edge(names[e!["parent"]!.GetValue<int>()], e["name"]!.GetValue<string>(), names[e["child"]!.GetValue<int>()],
            ToPerm(e["perm"]), ToPerm(e["shared-perm"])))];
    }

    private static Perm ToPerm(JsonNode? list) =>
        (list as JsonArray ?? []).Aggregate(Perm.None, (p, x) => p | (Perms.ParseQapi(x!.GetValue<string>()) ?? throw new FormatException($"unknown perm {x}")));

    private static void RunHost(JsonArray argv, string tmp)
    {
        var psi = new ProcessStartInfo(argv[0]!.GetValue<string>()) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = tmp };
        foreach (var x in argv.Skip(1)) psi.ArgumentList.Add(x!.GetValue<string>().Replace("@TMP@", tmp, StringComparison.Ordinal));
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{string.Join(" ", psi.ArgumentList)} failed");
    }
}
