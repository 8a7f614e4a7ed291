// Persistent dirty bitmaps in qcow2 images, against real QEMU 7.2 in both directions. The scenarios in
// bitmaps/ run on qemu-storage-daemon and on Verified's daemon (Comparison: every reply, and after every
// command the graph and query-named-block-nodes byte for byte, so dirty counts, granularities, recording,
// persistent and inconsistent members, and the image's format-specific bitmap list with its in-use flags).
// After each scenario the images each peer left are checked with qemu-img check (no errors, no leaks) and
// their bitmap lists (qemu-img info) compared; the images each peer stored are then swapped and loaded by
// the other peer, whose dirty counts must be the ones the writer showed; loaded bitmaps exported over NBD
// (qemu:dirty-bitmap:NAME) give qemu-img map the same extents on both. A daemon killed with SIGKILL must
// leave an image qemu-img check accepts, its bitmaps in use, loaded as inconsistent by QEMU and Verified alike.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Serve;

public class PersistentBitmapTests(ITestOutputHelper output)
{
    private static string Scenario(string name) => Path.Combine(AppContext.BaseDirectory, "bitmaps", name);

    /// <summary>Runs a bitmaps/ scenario on both peers and asserts they agree.</summary>
    private void RunBoth(string file, Peer qemu, Peer verified)
    {
        var (diffs, compared) = Comparison.Run(Comparison.LoadScenario(Scenario(file)), qemu, verified);
        output.WriteLine($"{file}: {compared} commands compared, {diffs.Count} differences");
        foreach (var d in diffs) output.WriteLine(d);
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    /// <summary>Runs a host tool; returns its exit code and output.</summary>
    private static (int Code, string Out) Tool(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, text + err.Result);
    }

    /// <summary>qemu-img check: no errors, no leaks.</summary>
    private static void CheckClean(string image)
    {
        var (code, text) = Tool("qemu-img", "check", image);
        Assert.True(code == 0 && text.Contains("No errors were found", StringComparison.Ordinal), $"qemu-img check {image}: exit {code}\n{text}");
    }

    /// <summary>The image's bitmap list as qemu-img info shows it (name, granularity, flags), or "none".</summary>
    private static string StoredBitmaps(string image)
    {
        var (code, text) = Tool("qemu-img", "info", "-U", "--output=json", image);
        Assert.True(code == 0, text);
        return JsonNode.Parse(text)!["format-specific"]?["data"]?["bitmaps"]?.ToJsonString() ?? "none";
    }

    /// <summary>A node's dirty-bitmaps member from query-named-block-nodes.</summary>
    private static string DirtyBitmaps(QmpClient c, string node) =>
        c.Execute("query-named-block-nodes", new JsonObject { ["flat"] = true })["return"]!.AsArray()
            .Single(n => n!["node-name"]!.GetValue<string>() == node)!["dirty-bitmaps"]?.ToJsonString() ?? "none";

    /// <summary>Opens <paramref name="image"/> as qcow2 node <paramref name="node"/> on a peer and returns its dirty bitmaps; the node stays open.</summary>
    private static string Load(QmpClient c, string node, string image, bool readOnly = false)
    {
        var r = c.Execute("blockdev-add", JsonNode.Parse($$$"""{"driver":"qcow2","node-name":"{{{node}}}","read-only":{{{(readOnly ? "true" : "false")}}},"file":{"driver":"file","filename":"{{{image}}}"}}"""));
        Assert.True(r.ContainsKey("return"), r.ToJsonString());
        return DirtyBitmaps(c, node);
    }

    /// <summary>Bitmaps qemu-img and qemu-io stored load (in use, read-only, inconsistent) and answer every command as in QEMU; what each peer stores back passes check and lists the same.</summary>
    [QemuFact]
    public void Bitmaps_QEMU_stored_load_and_answer_as_in_QEMU()
    {
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        RunBoth("load.jsonl", qemu, verified);
        using (var cq = qemu.Connect())
        using (var cv = verified.Connect())
        {
            cq.Negotiate();
            cv.Negotiate();
            // NBD's qemu:dirty-bitmap context over loaded (read-only) bitmaps: qemu-img map sees the same extents.
            foreach (var (c, p) in new[] { (cq, qemu), (cv, verified) })
            {
                Load(c, "ro2", Path.Combine(p.TmpDir, "b.qcow2"), readOnly: true);
                Assert.True(c.Execute("nbd-server-start", JsonNode.Parse($$$$"""{"addr":{"type":"unix","data":{"path":"{{{{Path.Combine(p.TmpDir, "nbd.sock")}}}}"}}}""")).ContainsKey("return"));
                var export = c.Execute("block-export-add", JsonNode.Parse("""{"type":"nbd","id":"e","node-name":"ro2","bitmaps":["s1","s3"]}"""));
                Assert.True(export.ContainsKey("return"), export.ToJsonString());
            }
            foreach (var bitmap in new[] { "s1", "s3" })
            {
                var maps = new[] { qemu, verified }.Select(p => Tool("qemu-img", "map", "--output=json", "--image-opts",
                    $"driver=nbd,server.type=unix,server.path={Path.Combine(p.TmpDir, "nbd.sock")},export=ro2,x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}")).ToList();
                Assert.True(maps[0].Code == 0, maps[0].Out);
                Assert.Equal(maps[0], maps[1]);
                Assert.Contains("\"data\": false", maps[1].Out, StringComparison.Ordinal);
            }
            foreach (var c in new[] { cq, cv })
            {
                c.Execute("block-export-del", new JsonObject { ["id"] = "e" });
                c.Execute("nbd-server-stop");
            }
            foreach (var n in new[] { "a", "inuse", "ro", "v2", "big", "r", "ro2" })
            {
                cq.Execute("blockdev-del", new JsonObject { ["node-name"] = n });
                cv.Execute("blockdev-del", new JsonObject { ["node-name"] = n });
            }
        }
        foreach (var f in new[] { "a.qcow2", "b.qcow2", "inuse.qcow2" })
        {
            CheckClean(Path.Combine(qemu.TmpDir, f));
            CheckClean(Path.Combine(verified.TmpDir, f));
            Assert.Equal(StoredBitmaps(Path.Combine(qemu.TmpDir, f)), StoredBitmaps(Path.Combine(verified.TmpDir, f)));
        }
        // The in-use copy keeps its inconsistent bitmap; the one removed is gone.
        Assert.Contains("in-use", StoredBitmaps(Path.Combine(verified.TmpDir, "inuse.qcow2")), StringComparison.Ordinal);
    }

    /// <summary>Bitmaps added through QMP and written through NBD are stored as QEMU stores them: check passes, the lists agree, and each peer loads the other's image with the writer's counts.</summary>
    [QemuFact]
    public void Bitmaps_Verified_stores_load_in_QEMU_with_the_same_counts()
    {
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        RunBoth("store.jsonl", qemu, verified);
        string countsQ, countsV;
        using (var cq = qemu.Connect())
        using (var cv = verified.Connect())
        {
            cq.Negotiate();
            cv.Negotiate();
            countsQ = DirtyBitmaps(cq, "a");
            countsV = DirtyBitmaps(cv, "a");
            Assert.Equal(countsQ, countsV);
            Assert.Contains("\"count\":5505024", countsV, StringComparison.Ordinal);
            cq.Execute("blockdev-del", new JsonObject { ["node-name"] = "a" });
            cv.Execute("blockdev-del", new JsonObject { ["node-name"] = "a" });
        }
        foreach (var f in new[] { "a.qcow2", "c4k.qcow2" })
        {
            CheckClean(Path.Combine(qemu.TmpDir, f));
            CheckClean(Path.Combine(verified.TmpDir, f));
            Assert.Equal(StoredBitmaps(Path.Combine(qemu.TmpDir, f)), StoredBitmaps(Path.Combine(verified.TmpDir, f)));
        }
        // Swapped: QEMU loads what Verified stored and Verified what QEMU stored.
        foreach (var f in new[] { "a.qcow2", "c4k.qcow2" })
        {
            File.Copy(Path.Combine(verified.TmpDir, f), Path.Combine(qemu.TmpDir, "from-verified-" + f));
            File.Copy(Path.Combine(qemu.TmpDir, f), Path.Combine(verified.TmpDir, "from-qemu-" + f));
        }
        using (var cq = qemu.Connect())
        using (var cv = verified.Connect())
        {
            cq.Negotiate();
            cv.Negotiate();
            Assert.Equal(countsV, Load(cq, "x", Path.Combine(qemu.TmpDir, "from-verified-a.qcow2")));
            Assert.Equal(countsQ, Load(cv, "x", Path.Combine(verified.TmpDir, "from-qemu-a.qcow2")));
            var smallQ = Load(cq, "y", Path.Combine(qemu.TmpDir, "from-verified-c4k.qcow2"));
            Assert.Equal(smallQ, Load(cv, "y", Path.Combine(verified.TmpDir, "from-qemu-c4k.qcow2")));
            Assert.Contains("\"count\":12288", smallQ, StringComparison.Ordinal);
        }
    }

    /// <summary>Reopening read-only stores the bitmaps and makes them read-only, read-write marks them in use again, and a snapshot's old top stores its bitmaps: as in QEMU, step by step and in the copies taken between.</summary>
    [QemuFact]
    public void Reopen_stores_and_marks_bitmaps_as_in_QEMU()
    {
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        RunBoth("reopen.jsonl", qemu, verified);
        foreach (var f in new[] { "ro-copy.qcow2", "rw-copy.qcow2", "snap-copy.qcow2" })
        {
            CheckClean(Path.Combine(qemu.TmpDir, f));
            CheckClean(Path.Combine(verified.TmpDir, f));
            Assert.Equal(StoredBitmaps(Path.Combine(qemu.TmpDir, f)), StoredBitmaps(Path.Combine(verified.TmpDir, f)));
        }
        Assert.DoesNotContain("in-use", StoredBitmaps(Path.Combine(verified.TmpDir, "ro-copy.qcow2")), StringComparison.Ordinal);
        Assert.Contains("in-use", StoredBitmaps(Path.Combine(verified.TmpDir, "rw-copy.qcow2")), StringComparison.Ordinal);
    }

    /// <summary>A Verified daemon killed while it holds an image with bitmaps leaves them in use in an image qemu-img check accepts; QEMU and Verified then load them as inconsistent, alike.</summary>
    [QemuFact]
    public void A_killed_daemon_leaves_bitmaps_in_use_that_check_accepts()
    {
        // The image lives apart from the killed daemon's directory, which its peer removes when disposed.
        var tmp = Peer.NewTmp("serve-bitmap-kill.");
        try
        {
            var image = Path.Combine(tmp, "a.qcow2");
            Assert.Equal(0, Tool("qemu-img", "create", "-f", "qcow2", image, "16M").Code);
            Assert.Equal(0, Tool("qemu-img", "bitmap", "--add", image, "s1").Code);
            Assert.Equal(0, Tool("qemu-io", "-f", "qcow2", "-c", "write 1M 64k", image).Code);
            var daemonTmp = Peer.NewTmp("serve-bitmap-killed.");
            using (var killed = Peer.StartVerifiedProcess(daemonTmp, ["--qmp", $"unix:{Path.Combine(daemonTmp, "qmp.sock")}"]))
            {
                using var c = WaitConnect(killed);
                c.Negotiate();
                Assert.Contains("\"count\":65536", Load(c, "a", image), StringComparison.Ordinal);
                var add = c.Execute("block-dirty-bitmap-add", JsonNode.Parse("""{"node":"a","name":"new","persistent":true}"""));
                Assert.True(add.ContainsKey("return"), add.ToJsonString());
                Assert.Contains("in-use", StoredBitmaps(image), StringComparison.Ordinal);
                killed.Process!.Kill(); // SIGKILL: no close, no store
                killed.Process.WaitForExit();
            }
            CheckClean(image);
            var stored = StoredBitmaps(image);
            Assert.Equal("""[{"flags":["in-use","auto"],"name":"s1","granularity":65536}]""", stored.Replace(" ", "", StringComparison.Ordinal));
            using var qemu = Peer.StartStorageDaemon();
            using var verified = Peer.StartVerified();
            File.Copy(image, Path.Combine(qemu.TmpDir, "a.qcow2"));
            File.Copy(image, Path.Combine(verified.TmpDir, "a.qcow2"));
            using var cq = qemu.Connect();
            using var cv = verified.Connect();
            cq.Negotiate();
            cv.Negotiate();
            var q = Load(cq, "a", Path.Combine(qemu.TmpDir, "a.qcow2"));
            Assert.Equal(q, Load(cv, "a", Path.Combine(verified.TmpDir, "a.qcow2")));
            Assert.Contains("\"inconsistent\":true", q, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>A daemon told to quit stores the bitmaps of the nodes still open, as qemu-storage-daemon does: an inconsistent one stays in use, a new one is added.</summary>
    [QemuFact]
    public void Quit_stores_the_bitmaps_of_open_nodes_as_QEMU_does()
    {
        var tmp = Peer.NewTmp("serve-bitmap-quit.");
        try
        {
            var image = Path.Combine(tmp, "a.qcow2");
            Assert.Equal(0, Tool("qemu-img", "create", "-f", "qcow2", image, "16M").Code);
            Assert.Equal(0, Tool("qemu-img", "bitmap", "--add", image, "s1").Code);
            Assert.Equal(0, Tool("qemu-img", "bitmap", "--add", image, "s2").Code);
            // s2 is left in use, as a crash would leave it: its entry's flags byte set by hand (in use | auto).
            SetInUse(image, "s2");
            Assert.Contains("in-use", StoredBitmaps(image), StringComparison.Ordinal);
            var stored = new List<string>();
            var daemonTmp = Peer.NewTmp("serve-bitmap-quitter.");
            foreach (var start in new Func<Peer>[] { Peer.StartStorageDaemon, () => Peer.StartVerifiedProcess(daemonTmp, ["--qmp", $"unix:{Path.Combine(daemonTmp, "qmp.sock")}"]) })
            {
                using var peer = start();
                var copy = Path.Combine(peer.TmpDir, "q.qcow2");
                File.Copy(image, copy);
                using (var c = WaitConnect(peer))
                {
                    c.Negotiate();
                    Assert.Contains("\"inconsistent\":true", Load(c, "a", copy), StringComparison.Ordinal);
                    var add = c.Execute("block-dirty-bitmap-add", JsonNode.Parse("""{"node":"a","name":"q","persistent":true,"granularity":4096}"""));
                    Assert.True(add.ContainsKey("return"), add.ToJsonString());
                    c.Execute("quit");
                }
                Assert.True(peer.Process!.WaitForExit(30_000), $"{peer.Name} did not exit after quit");
                CheckClean(copy);
                stored.Add(StoredBitmaps(copy));
            }
            Assert.Equal(stored[0], stored[1]);
            Assert.Contains("\"q\"", stored[1], StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>Sets the in-use flag of one directory entry in the file (what a crash leaves).</summary>
    private static void SetInUse(string image, string name)
    {
        var raw = File.ReadAllBytes(image);
        var (h, err) = Verified.Impl.Formats.Qcow2Header.Parse(raw, writable: false);
        Assert.Null(err);
        int at = (int)h!.BitmapDirectoryOffset;
        var (entries, dirErr) = Verified.Impl.Formats.Qcow2Bitmaps.ParseDirectory(raw.AsSpan(at, (int)h.BitmapDirectorySize), h.BitmapCount, h.ClusterSize, h.Size);
        Assert.Null(dirErr);
        foreach (var e in entries!)
        {
            if (e.Name == name) raw[at + 15] |= (byte)Verified.Impl.Formats.Qcow2Bitmaps.FlagInUse;
            at += Verified.Impl.Formats.Qcow2Bitmaps.EntryBytes(System.Text.Encoding.UTF8.GetByteCount(e.Name));
        }
        File.WriteAllBytes(image, raw);
    }

    /// <summary>Most attempts to reach a starting daemon's socket.</summary>
    private const int ConnectAttemptsMax = 100;

    private static QmpClient WaitConnect(Peer p)
    {
        for (int i = 0; ; i++)
        {
            try
            {
                return p.Connect();
            }
            catch (Exception e) when ((e is IOException or System.Net.Sockets.SocketException) && i < ConnectAttemptsMax)
            {
                Thread.Sleep(100);
            }
        }
    }
}
