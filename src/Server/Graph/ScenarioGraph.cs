using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Server.Qmp;

namespace Verified.Server.Graph;

/// <summary>
/// The final graph of a scenario file (DECISIONS.md 6), run on a fresh engine in a temporary folder:
/// QMP lines through the daemon's dispatcher (a failing command is skipped, as QEMU would leave the
/// graph), host steps run with @TMP@ substituted.
/// </summary>
public static class ScenarioGraph
{
    /// <summary>Lines a scenario may hold (a bound against feeding it the wrong file).</summary>
    public const int StepsMax = 100_000;

    /// <summary>How long one host step may run.</summary>
    public static readonly TimeSpan HostStepTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Runs <paramref name="path"/>; returns x-debug-query-block-graph and the node-name → driver map of the final state.</summary>
    public static (JsonObject Graph, Dictionary<string, string> Drivers) Run(string path, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(log);
        var tmp = Directory.CreateTempSubdirectory("verified-graph.").FullName;
        try
        {
            using var engine = new BlockEngine();
            using var dispatcher = new QmpDispatcher(engine);
            int lineNo = 0;
            foreach (var raw in File.ReadLines(path))
            {
                if (++lineNo > StepsMax) throw new ArgumentException($"{path}: more than {StepsMax} lines");
                var line = raw.Trim();
                if (line.Length == 0 || line.StartsWith('#') || line.StartsWith("//", StringComparison.Ordinal)) continue;
                var step = JsonNode.Parse(line.Replace("@TMP@", tmp, StringComparison.Ordinal)) as JsonObject
                    ?? throw new ArgumentException($"{path}:{lineNo}: not a JSON object");
                if (step["run"] is JsonArray argv) RunHost(argv, tmp, log);
                if (step["execute"]?.GetValue<string>() is not { } cmd) continue;
                var reply = QmpDispatcher.HasCommand(cmd) && cmd is not ("quit" or "qmp_capabilities")
                    ? dispatcher.Run(cmd, step["arguments"] as JsonObject ?? [])
                    : null;
                if (reply is null) log.WriteLine($"{path}:{lineNo}: '{cmd}' skipped (not a command of verified serve)");
                else if (!reply.IsOk) log.WriteLine($"{path}:{lineNo}: {cmd}: {reply.Error!.Desc}");
            }
            var graph = dispatcher.Run("x-debug-query-block-graph", []).Return!.AsObject();
            return (graph, Drivers(dispatcher.Run("query-named-block-nodes", []).Return!));
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>node-name → driver, from a query-named-block-nodes reply.</summary>
    public static Dictionary<string, string> Drivers(JsonNode namedNodes)
    {
        ArgumentNullException.ThrowIfNull(namedNodes);
        return namedNodes.AsArray().Select(n => n!.AsObject())
            .ToDictionary(n => n["node-name"]!.GetValue<string>(), n => n["drv"]!.GetValue<string>(), StringComparer.Ordinal);
    }

    private static void RunHost(JsonArray argv, string tmp, TextWriter log)
    {
        var psi = new ProcessStartInfo(argv[0]!.GetValue<string>()) { WorkingDirectory = tmp, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a!.GetValue<string>());
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {psi.FileName}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(HostStepTimeout))
        {
            p.Kill();
            throw new TimeoutException($"{psi.FileName} ran longer than {HostStepTimeout}");
        }
        if (p.ExitCode != 0) log.WriteLine($"{psi.FileName} exited {p.ExitCode}: {stderr.Result.Trim()}");
        _ = stdout.Result;
    }
}
