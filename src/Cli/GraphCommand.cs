using System.Diagnostics;
using Verified.Server.Graph;
using Verified.Server.Qmp;

namespace Verified.Cli;

/// <summary><c>verified graph</c>: a running daemon's graph, or a scenario's final graph, as DOT or SVG.</summary>
internal static class GraphCommand
{
    /// <summary>How long to wait for a daemon's replies.</summary>
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Renders the graph; exit code 0, 1 when the source or Graphviz fails.</summary>
    public static int Run(string[] args)
    {
        string? qmp = null, scenario = null, outPath = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--qmp" when i + 1 < args.Length: qmp = args[++i]; break;
                case "--out" or "-o" when i + 1 < args.Length: outPath = args[++i]; break;
                case var a when !a.StartsWith('-') && scenario is null: scenario = a; break;
                default: throw new ArgumentException($"graph: unexpected argument '{args[i]}'");
            }
        }
        if ((qmp is null) == (scenario is null)) throw new ArgumentException("graph: give either --qmp unix:PATH or a scenario file");
        string dot;
        try
        {
            dot = qmp is not null ? FromDaemon(qmp) : FromScenario(scenario!);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine($"verified graph: {e.Message}");
            return 1;
        }
        if (outPath is null)
        {
            Console.Write(dot);
            return 0;
        }
        if (!outPath.EndsWith(".svg", StringComparison.OrdinalIgnoreCase))
        {
            File.WriteAllText(outPath, dot);
            return 0;
        }
        return ToSvg(dot, outPath);
    }

    private static string FromDaemon(string qmp)
    {
        if (!qmp.StartsWith("unix:", StringComparison.Ordinal)) throw new ArgumentException("graph: --qmp takes unix:PATH");
        using var c = QmpSocketClient.Connect(qmp["unix:".Length..], QmpTimeout);
        var graph = c.Run("x-debug-query-block-graph").AsObject();
        var drivers = ScenarioGraph.Drivers(c.Run("query-named-block-nodes", new() { ["flat"] = true }));
        return GraphDot.Render(graph, drivers);
    }

    private static string FromScenario(string path)
    {
        var (graph, drivers) = ScenarioGraph.Run(path, Console.Error);
        return GraphDot.Render(graph, drivers);
    }

    /// <summary>SVG through Graphviz's dot, when it is installed.</summary>
    private static int ToSvg(string dot, string outPath)
    {
        var psi = new ProcessStartInfo("dot") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-Tsvg");
        psi.ArgumentList.Add("-o");
        psi.ArgumentList.Add(outPath);
        Process? p;
        try
        {
            p = Process.Start(psi);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            p = null;
        }
        if (p is null)
        {
            Console.Error.WriteLine("verified graph: Graphviz's 'dot' is not installed (apt-get install graphviz); write a .dot file instead");
            return 1;
        }
        using (p)
        {
            p.StandardInput.Write(dot);
            p.StandardInput.Close();
            var err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode == 0) return 0;
            Console.Error.WriteLine($"verified graph: dot failed: {err.Trim()}");
            return 1;
        }
    }
}
