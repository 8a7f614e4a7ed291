using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>The NBD client programs the tests drive (qemu-utils and libnbd-bin; CI installs both through scripts/deps.sh).</summary>
public static class NbdTools
{
    /// <summary>qemu-io, qemu-img, nbdinfo and nbdcopy are all on PATH.</summary>
    public static bool Installed { get; } = new[] { "qemu-io", "qemu-img", "nbdinfo", "nbdcopy" }.All(p => QemuTools.Find(p) is not null);

    /// <summary>Runs a program to completion (bounded by <see cref="ToolTimeout"/>); returns its exit code and output.</summary>
    public static (int Exit, string Out, string Err) Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(ToolTimeout))
        {
            p.Kill();
            p.WaitForExit();
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {ToolTimeout}");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>How long one client program may run.</summary>
    public static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);
}

/// <summary>A fact that runs only where the NBD client programs are installed.</summary>
public sealed class NbdFactAttribute : FactAttribute
{
    /// <summary>Skips when a client program is missing.</summary>
    public NbdFactAttribute()
    {
        if (!NbdTools.Installed) Skip = "qemu-io, qemu-img, nbdinfo or nbdcopy is not installed (scripts/deps.sh installs qemu-utils and libnbd-bin)";
    }
}

/// <summary>
/// <c>verified serve</c> in this process with raw images in its temporary directory, an NBD server on
/// a unix socket, and a negotiated QMP client to change the graph while NBD clients work.
/// </summary>
public sealed class NbdRig : IDisposable
{
    private NbdRig(Peer peer)
    {
        Peer = peer;
        Qmp = peer.Connect();
        Qmp.Negotiate();
    }

    /// <summary>The daemon.</summary>
    public Peer Peer { get; }

    /// <summary>A negotiated monitor.</summary>
    public QmpClient Qmp { get; }

    /// <summary>The NBD server's socket.</summary>
    public string NbdSocket => Path.Combine(Peer.TmpDir, "nbd.sock");

    /// <summary>A path in the rig's directory.</summary>
    public string File(string name) => Path.Combine(Peer.TmpDir, name);

    /// <summary>The NBD URI of an export.</summary>
    public string Uri(string export) => $"nbd+unix:///{export}?socket={NbdSocket}";

    /// <summary>Starts a daemon with the NBD server running and one sparse raw image per (name, bytes), each a file node of that name.</summary>
    public static NbdRig Start(params (string Node, long Bytes)[] images) => Start(Verified.Impl.Engine.EngineMutation.None, images);

    /// <summary>As <see cref="Start(ValueTuple{string, long}[])"/>, over an engine built with <paramref name="mutation"/> (tests of the tests).</summary>
    public static NbdRig Start(Verified.Impl.Engine.EngineMutation mutation, params (string Node, long Bytes)[] images)
    {
        var peer = mutation == Verified.Impl.Engine.EngineMutation.None
            ? Peer.StartVerified()
            : Peer.StartVerifiedOn(new Verified.Impl.Engine.BlockEngine(new Verified.Impl.IO.EngineServices { Mutation = mutation }));
        var rig = new NbdRig(peer);
        foreach (var (node, bytes) in images)
        {
            using (var f = System.IO.File.Create(rig.File(node + ".raw"))) f.SetLength(bytes);
            rig.Ok("blockdev-add", $"{{\"driver\": \"file\", \"node-name\": \"{node}\", \"filename\": \"{rig.File(node + ".raw")}\"}}");
        }
        rig.Ok("nbd-server-start", $"{{\"addr\": {{\"type\": \"unix\", \"data\": {{\"path\": \"{rig.NbdSocket}\"}}}}}}");
        return rig;
    }

    /// <summary>Runs a command that must succeed.</summary>
    public JsonNode? Ok(string command, string arguments = "{}")
    {
        var r = Qmp.Execute(command, JsonNode.Parse(arguments));
        Assert.True(r.ContainsKey("return"), $"{command} {arguments} failed: {r.ToJsonString()}");
        return r["return"];
    }

    /// <summary>Runs a command that must fail; returns its error text.</summary>
    public string Error(string command, string arguments)
    {
        var r = Qmp.Execute(command, JsonNode.Parse(arguments));
        Assert.True(r.ContainsKey("error"), $"{command} {arguments} should have failed: {r.ToJsonString()}");
        return (string)r["error"]!["desc"]!;
    }

    /// <summary>Every node's name, sorted.</summary>
    public List<string> NodeNames() =>
        [.. Ok("query-named-block-nodes")!.AsArray().Select(n => (string)n!["node-name"]!).Order(StringComparer.Ordinal)];

    /// <summary>Adds an NBD export of <paramref name="node"/> named <paramref name="name"/> (id = name).</summary>
    public void Export(string name, string node, bool writable, string? description = null) =>
        Ok("block-export-add", new JsonObject
        {
            ["type"] = "nbd", ["id"] = name, ["node-name"] = node, ["name"] = name, ["writable"] = writable,
            ["description"] = description,
        }.ToJsonString().Replace(",\"description\":null", "", StringComparison.Ordinal));

    /// <inheritdoc/>
    public void Dispose()
    {
        Qmp.Dispose();
        Peer.Dispose();
    }
}
