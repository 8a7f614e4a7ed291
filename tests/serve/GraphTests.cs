using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Server.Graph;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// <c>verified graph</c>: a running daemon's graph (read over QMP by the command run as a process)
/// and a scenario's final graph render as DOT with driver/name node labels and child-name and
/// perm / shared-perm edge labels.
/// </summary>
public class GraphTests
{
    private static (int Exit, string Out, string Err) Verified(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "verified.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    [Fact]
    public void A_running_daemons_graph_renders_as_DOT()
    {
        using var peer = Peer.StartVerified(
            "--blockdev", "{\"driver\": \"null-co\", \"node-name\": \"disk\"}",
            "--blockdev", "{\"driver\": \"raw\", \"node-name\": \"fmt\", \"file\": \"disk\"}",
            "--nbd-server", $"addr.type=unix,addr.path={Path.Combine(Path.GetTempPath(), $"graph-{Environment.ProcessId}.sock")}",
            "--export", "type=nbd,id=exp0,node-name=fmt,writable=on");
        var (exit, dot, err) = Verified("graph", "--qmp", $"unix:{peer.SocketPath}");
        Assert.True(exit == 0, err);
        Assert.StartsWith("digraph block_graph {", dot, StringComparison.Ordinal);
        Assert.Contains("label=\"null-co\\ndisk\"", dot, StringComparison.Ordinal);
        Assert.Contains("label=\"raw\\nfmt\"", dot, StringComparison.Ordinal);
        Assert.Contains("[shape=box, label=\"exp0\"]", dot, StringComparison.Ordinal);
        // The export takes consistent-read and write and shares all but resize; raw passes that down.
        Assert.Contains("label=\"root\\nRW / RWU\"", dot, StringComparison.Ordinal);
        Assert.Contains("label=\"file\\nRW / RWU\"", dot, StringComparison.Ordinal);
    }

    [Fact]
    public void A_scenarios_final_graph_renders_as_DOT()
    {
        var (graph, drivers) = ScenarioGraph.Run(Path.Combine(AppContext.BaseDirectory, "cases", "qemu72-perms-filters.jsonl"), TextWriter.Null);
        var dot = GraphDot.Render(graph, drivers);
        Assert.Contains("label=\"copy-on-read\\ncor\"", dot, StringComparison.Ordinal);
        Assert.Equal(graph["edges"]!.AsArray().Count, dot.Split(" -> ").Length - 1);
    }

    [Fact]
    public void Rendering_refuses_what_is_not_a_block_graph() =>
        Assert.Throws<ArgumentException>(() => GraphDot.Render(new JsonObject { ["nodes"] = new JsonArray() }, new Dictionary<string, string>()));

    [Fact]
    public void Graph_needs_exactly_one_source()
    {
        var (exit, _, err) = Verified("graph");
        Assert.Equal(2, exit);
        Assert.Contains("either --qmp unix:PATH or a scenario file", err, StringComparison.Ordinal);
    }
}
