using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Server.Daemon;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// <c>verified serve</c> as a client sees it, with no QEMU needed: a plain JSON client over a real
/// unix socket checks the greeting, negotiation per client, id echo, events and their shape, the
/// socket's mode, the startup options, and clean shutdown on quit, SIGTERM and stdin EOF (the
/// <c>verified</c> command run as a process).
/// </summary>
public class ServeTests
{
    [Fact]
    public void Greeting_and_negotiation_are_QEMUs()
    {
        using var peer = Peer.StartVerified();
        using var c = peer.Connect();
        Assert.Equal("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"verified\"}, \"capabilities\": [\"oob\"]}}", c.Greeting);
        Assert.Equal(
        [
            "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\u0001'\"}}",
        ], c.Exchange("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"n\"}, \"id\": 1}")[..2]);
        Assert.Empty(peer.Daemon!.Engine.Nodes);
        Assert.Equal("{\"return\": {}, \"id\": {\"a\": [1, null]}}", c.Exchange("{\"execute\": \"qmp_capabilities\", \"id\": {\"a\": [1, null]}}")[0]);
        Assert.Equal("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation is already complete, command ignored\"}}",
            c.Exchange("{\"execute\": \"qmp_capabilities\"}")[0]);
        Assert.Equal("{\"id\": \"x\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nosuch has not been found\"}}",
            c.Exchange("{\"execute\": \"nosuch\", \"id\": \"x\"}")[0]);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Socket_is_private_to_its_owner()
    {
        using var peer = Peer.StartVerified();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(peer.SocketPath));
    }

    /// <summary>Each client negotiates on its own; events go to negotiated clients only, before the reply that caused them.</summary>
    [Fact]
    public void Clients_negotiate_on_their_own_and_events_reach_every_negotiated_client()
    {
        using var peer = Peer.StartVerified();
        using var a = peer.Connect();
        using var b = peer.Connect();
        using var waiting = peer.Connect();
        a.Negotiate();
        b.Negotiate();
        Assert.Equal(new JsonObject(), a.Execute("blockdev-add", Json("{\"driver\": \"null-co\", \"node-name\": \"n\"}"))["return"]);
        a.Execute("nbd-server-start", Json("{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"" + Path.Combine(peer.TmpDir, "nbd.sock") + "\"}}}"));
        a.Execute("block-export-add", Json("{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"n\"}"));
        var lines = b.Exchange("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"e0\"}, \"id\": 9}");
        Assert.Matches("^\\{\"timestamp\": \\{\"seconds\": \\d+, \"microseconds\": \\d+\\}, \"event\": \"BLOCK_EXPORT_DELETED\", \"data\": \\{\"id\": \"e0\"\\}\\}$", lines[0]);
        Assert.Equal("{\"return\": {}, \"id\": 9}", lines[1]);
        // a sees the event caused by b; the client that never negotiated sees nothing but refusals.
        Assert.Contains("BLOCK_EXPORT_DELETED", a.Exchange("")[0], StringComparison.Ordinal);
        Assert.DoesNotContain(waiting.Exchange("{\"execute\": \"query-version\"}"), l => l.Contains("event", StringComparison.Ordinal));
    }

    [Fact]
    public void Device_del_sends_DEVICE_DELETED_as_QEMU_does()
    {
        using var peer = Peer.StartVerified();
        using var c = peer.Connect();
        c.Negotiate();
        c.Execute("blockdev-add", Json("{\"driver\": \"null-co\", \"node-name\": \"n\"}"));
        c.Execute("device_add", Json("{\"driver\": \"virtio-blk-pci\", \"id\": \"vd0\", \"drive\": \"n\"}"));
        var lines = c.Exchange("{\"execute\": \"device_del\", \"arguments\": {\"id\": \"vd0\"}}");
        Assert.Equal("{\"return\": {}}", lines[0]); // the unplug completes after the reply, as in QEMU
        c.Events.AddRange(lines.Where(l => l.Contains("\"event\"", StringComparison.Ordinal)));
        Assert.Equal(["{\"path\":\"/machine/peripheral/vd0/virtio-backend\"}", "{\"device\":\"vd0\",\"path\":\"/machine/peripheral/vd0\"}"],
            c.Events.Select(l => JsonNode.Parse(l)!["data"]!.ToJsonString()));
        Assert.Empty(peer.Daemon!.Engine.Devices);
    }

    [Fact]
    public void New_commands_answer_with_QEMUs_texts()
    {
        using var peer = Peer.StartVerified();
        using var c = peer.Connect();
        c.Negotiate();
        var img = Path.Combine(peer.TmpDir, "a.raw");
        File.WriteAllBytes(img, new byte[4096]);
        c.Execute("blockdev-add", Json($"{{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"{img}\"}}"));
        c.Execute("blockdev-add", Json("{\"driver\": \"raw\", \"node-name\": \"r\", \"file\": \"f\"}"));
        Assert.Equal(new JsonObject(), c.Execute("block_resize", Json("{\"node-name\": \"r\", \"size\": 65536}"))["return"]);
        Assert.Equal(65536, new FileInfo(img).Length);
        Assert.Equal("Cannot find device='' nor node-name='zz'", Desc(c.Execute("block_resize", Json("{\"node-name\": \"zz\", \"size\": 1}"))));
        Assert.Equal("Parameter 'size' expects a >0 size", Desc(c.Execute("block_resize", Json("{\"node-name\": \"r\", \"size\": -1}"))));
        Assert.Equal("Parameter 'size' is missing", Desc(c.Execute("block_resize", Json("{\"node-name\": \"r\"}"))));
        Assert.Equal("Cannot find iothread io0", Desc(c.Execute("x-blockdev-set-iothread", Json("{\"node-name\": \"r\", \"iothread\": \"io0\"}"))));
        Assert.Equal("The node r does not support removing a child", Desc(c.Execute("x-blockdev-change", Json("{\"parent\": \"r\", \"child\": \"file\"}"))));
        Assert.Equal("Device 'nosuch' not found", Desc(c.Execute("qom-get", Json("{\"path\": \"nosuch\", \"property\": \"drive\"}"))));
        Assert.Equal("DeviceNotFound", c.Execute("qom-get", Json("{\"path\": \"nosuch\", \"property\": \"drive\"}"))["error"]!["class"]!.GetValue<string>());
        c.Execute("device_add", Json("{\"driver\": \"virtio-blk-pci\", \"id\": \"vd0\", \"drive\": \"r\"}"));
        Assert.Equal("r", c.Execute("qom-get", Json("{\"path\": \"/machine/peripheral/vd0\", \"property\": \"drive\"}"))["return"]!.GetValue<string>());
    }

    [Fact]
    public void Startup_options_build_the_graph_in_order()
    {
        var tmp = Peer.NewTmp("serve-startup.");
        var img = Path.Combine(tmp, "a.raw");
        File.WriteAllBytes(img, new byte[65536]);
        using var peer = Peer.StartVerified(
            "--blockdev", $"driver=file,node-name=f,filename={img},read-only=on",
            "--blockdev", "{\"driver\": \"raw\", \"node-name\": \"r\", \"file\": \"f\", \"read-only\": true}",
            "--object", "throttle-group,id=tg,limits.iops-total=100",
            "--object", "iothread,id=io0",
            "--nbd-server", $"addr.type=unix,addr.path={Path.Combine(tmp, "nbd.sock")}",
            "--export", "type=nbd,id=e0,node-name=r,writable=off");
        var engine = peer.Daemon!.Engine;
        Assert.Equal(["f", "r"], engine.Nodes.Select(n => n.Name));
        Assert.True(engine.FindNode("f")!.ReadOnly);
        Assert.Equal(["io0", "tg"], engine.Objects.Select(o => o.Id));
        Assert.Equal("e0", Assert.Single(engine.Exports).Id);
        Directory.Delete(tmp, true);
    }

    [Fact]
    public void Startup_options_are_refused_with_a_clear_message()
    {
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse([]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--qmp", "tcp:1"]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--monitor", "chardev=nope"]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--qmp", "stdio", "--chardev", "socket,path=/x,server=on,wait=on,id=m"]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--qmp", "stdio", "--blockdev"]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--qmp", "stdio", "--bogus"]));
        Assert.Throws<ArgumentException>(() => ServeOptions.Parse(["--qmp", "stdio", "--daemonize"]));
        var o = ServeOptions.Parse(["--chardev", "socket,path=/tmp/x,,y.sock,server=on,wait=off,id=m0", "--monitor", "chardev=m0"]);
        Assert.Equal("/tmp/x,y.sock", Assert.Single(o.Monitors).UnixPath);
    }

    /// <summary>The command as a process: a bad startup option exits 1 with QEMU's text; nothing is left listening.</summary>
    [Fact]
    public void A_failing_startup_option_exits_1_with_QEMUs_text()
    {
        var tmp = Peer.NewTmp("serve-fail.");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--qmp", $"unix:{Path.Combine(tmp, "qmp.sock")}", "--blockdev", "{\"driver\": \"null-co\", \"node-name\": \"1x\"}"]);
        Assert.True(peer.Process!.WaitForExit(30_000));
        Assert.Equal(1, peer.Process.ExitCode);
        Assert.Contains("--blockdev: Invalid node-name: '1x'", peer.Process.StandardError.ReadToEnd(), StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(tmp, "qmp.sock")));
    }

    /// <summary>--daemonize: the command returns 0 once the daemon serves; the daemon runs on as another process until quit.</summary>
    [Fact]
    public void Daemonize_returns_once_the_daemon_serves_and_it_runs_on_detached()
    {
        var tmp = Peer.NewTmp("serve-daemonize.");
        var sock = Path.Combine(tmp, "qmp.sock");
        var pidFile = Path.Combine(tmp, "pid");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--daemonize", "--pidfile", pidFile, "--qmp", $"unix:{sock}",
            "--blockdev", "{\"driver\": \"null-co\", \"node-name\": \"n\"}"]);
        Assert.True(peer.Process!.WaitForExit(30_000));
        Assert.Equal(0, peer.Process.ExitCode);
        // Serving already: the socket listens and the pid file names the daemon, not the command.
        Assert.True(File.Exists(sock));
        int pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            Assert.NotEqual(peer.Process.Id, pid);
            using (var c = QmpClient.Connect(sock))
            {
                c.Negotiate();
                Assert.Contains("\"node-name\": \"n\"", c.ExecuteRaw("query-named-block-nodes"), StringComparison.Ordinal);
                Assert.Equal("{\"return\": {}}", c.ExecuteRaw("quit"));
            }
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Directory.Exists($"/proc/{pid}") && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.False(Directory.Exists($"/proc/{pid}"), "the daemon did not exit after quit");
            Assert.False(File.Exists(sock));
        }
        finally
        {
            // A detached daemon must not outlive a failed test.
            if (Directory.Exists($"/proc/{pid}")) System.Diagnostics.Process.GetProcessById(pid).Kill();
        }
    }

    /// <summary>
    /// --daemonize with a failing startup option: the command relays the daemon's error and exits 1; with a
    /// stdio monitor it is a usage error (exit 2, as every bad command line of verified); nothing is left serving.
    /// </summary>
    [Theory]
    [InlineData("--blockdev", "{\"driver\": \"null-co\", \"node-name\": \"1x\"}", "--blockdev: Invalid node-name: '1x'", 1)]
    [InlineData("--qmp", "stdio", "cannot use stdio with --daemonize", 2)]
    public void Daemonize_reports_a_startup_failure(string option, string value, string text, int exitCode)
    {
        var tmp = Peer.NewTmp("serve-daemonize-fail.");
        var sock = Path.Combine(tmp, "qmp.sock");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--daemonize", "--qmp", $"unix:{sock}", option, value]);
        Assert.True(peer.Process!.WaitForExit(30_000));
        Assert.Equal(exitCode, peer.Process.ExitCode);
        Assert.Contains(text, peer.Process.StandardError.ReadToEnd(), StringComparison.Ordinal);
        Assert.False(File.Exists(sock));
    }

    /// <summary>quit: the reply arrives, then the process exits 0, its images closed (their locks released) and its socket removed.</summary>
    [Fact]
    public void Quit_replies_then_the_daemon_exits_cleanly()
    {
        var tmp = Peer.NewTmp("serve-quit.");
        var img = Path.Combine(tmp, "a.raw");
        File.WriteAllBytes(img, new byte[65536]);
        var sock = Path.Combine(tmp, "qmp.sock");
        var pidFile = Path.Combine(tmp, "pid");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--chardev", $"socket,path={sock},server=on,wait=off,id=m0", "--monitor", "chardev=m0",
            "--blockdev", $"{{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"{img}\"}}", "--pidfile", pidFile]);
        using (var c = peer.Connect())
        {
            Assert.Equal($"{peer.Process!.Id}\n", File.ReadAllText(pidFile));
            c.Negotiate();
            Assert.Equal("{\"return\": {}, \"id\": 1}", c.Exchange("{\"execute\": \"quit\", \"id\": 1}")[0]);
        }
        Assert.True(peer.Process!.WaitForExit(30_000));
        Assert.Equal(0, peer.Process.ExitCode);
        Assert.False(File.Exists(sock));
        Assert.False(File.Exists(pidFile));
    }

    /// <summary>The issue's acceptance test: the verified command, a real unix socket, a plain JSON client.</summary>
    [Fact]
    public void The_verified_command_serves_a_plain_JSON_client_over_a_unix_socket()
    {
        var tmp = Peer.NewTmp("serve-plain.");
        var sock = Path.Combine(tmp, "qmp.sock");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--qmp", $"unix:{sock}"]);
        using var c = peer.Connect();
        Assert.StartsWith("{\"QMP\": ", c.Greeting, StringComparison.Ordinal);
        c.Negotiate();
        Assert.Equal("{\"return\": {}}", c.ExecuteRaw("blockdev-add", Json("{\"driver\": \"null-co\", \"node-name\": \"disk\"}")));
        Assert.Equal("{\"return\": {}}", c.ExecuteRaw("blockdev-add", Json("{\"driver\": \"copy-on-read\", \"node-name\": \"cor\", \"file\": \"disk\"}")));
        Assert.Equal("{\"return\": {\"edges\": [{\"name\": \"file\", \"parent\": 2, \"shared-perm\": [\"resize\", \"write-unchanged\", \"write\", \"consistent-read\"], \"perm\": [\"write-unchanged\"], \"child\": 1}], "
            + "\"nodes\": [{\"name\": \"cor\", \"type\": \"block-driver\", \"id\": 2}, {\"name\": \"disk\", \"type\": \"block-driver\", \"id\": 1}]}}",
            c.ExecuteRaw("x-debug-query-block-graph"));
        // QEMU's refcount refusal: the copy-on-read node holds disk.
        Assert.Equal("{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"Block device disk is in use\"}}",
            c.Exchange("{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"disk\"}, \"id\": 3}")[0]);
        Assert.Equal("{\"return\": {}}", c.ExecuteRaw("quit"));
        Assert.True(peer.Process!.WaitForExit(30_000));
        Assert.Equal(0, peer.Process.ExitCode);
    }

    /// <summary>SIGTERM (and SIGINT) shut down as quit does, not by dying.</summary>
    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public void A_signal_shuts_the_daemon_down_cleanly(string signal)
    {
        var tmp = Peer.NewTmp("serve-signal.");
        var sock = Path.Combine(tmp, "qmp.sock");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--qmp", $"unix:{sock}", "--blockdev", "{\"driver\": \"null-co\", \"node-name\": \"n\"}"]);
        using (var c = peer.Connect()) c.Negotiate();
        using (var kill = Process.Start("kill", ["-" + signal, peer.Process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        Assert.True(peer.Process.WaitForExit(30_000));
        Assert.Equal(0, peer.Process.ExitCode);
        Assert.False(File.Exists(sock));
    }

    /// <summary>--qmp stdio: QMP on standard input and output; end of input ends the daemon.</summary>
    [Fact]
    public void Stdio_monitor_speaks_QMP_and_ends_with_its_input()
    {
        var tmp = Peer.NewTmp("serve-stdio.");
        using var peer = Peer.StartVerifiedProcess(tmp, ["--qmp", "stdio"]);
        var p = peer.Process!;
        Assert.StartsWith("{\"QMP\": {\"version\"", p.StandardOutput.ReadLine(), StringComparison.Ordinal);
        p.StandardInput.Write("{\"execute\": \"qmp_capabilities\"}{\"execute\":\n\"query-version\", \"id\": 2}");
        p.StandardInput.Flush();
        Assert.Equal("{\"return\": {}}", p.StandardOutput.ReadLine());
        Assert.Equal("{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"verified\"}, \"id\": 2}", p.StandardOutput.ReadLine());
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(0, p.ExitCode);
    }

    private static JsonObject Json(string s) => JsonNode.Parse(s)!.AsObject();

    private static string? Desc(JsonObject reply) => reply["error"]?["desc"]?.GetValue<string>();
}
