using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// The NBD server of <c>verified serve</c> as real clients use it: qemu-io writes and reads patterns
/// through an export, qemu-img compares an export with a reference file and maps it (its map must
/// match both the holes made on purpose and qemu-img's map of the image file itself), nbdinfo lists
/// exports with their sizes, descriptions and flags, nbdcopy copies a whole export. Errors on the wire
/// are checked with a small client of the tests' own that sees each request's errno: EPERM for writes
/// to a read-only export, EINVAL/ENOSPC past the end, EINVAL for bad flags or sizes, and a malformed
/// request closing only the connection that sent it. Deleting an export with clients follows QEMU:
/// refused in safe mode, clients dropped in hard mode with BLOCK_EXPORT_DELETED after the reply.
/// </summary>
public class NbdClientTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const long DiskBytes = 4 << 20;

    /// <summary>Patterns written by qemu-io through a writable export read back through it, and land in the image file.</summary>
    [NbdFact]
    public void Qemu_io_patterns_go_through_an_export_to_the_image()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        var (exit, output, err) = NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("exp"),
            "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 1M 4k", "-c", "write -z 2M 64k",
            "-c", "read -P 0xab 0 64k", "-c", "read -P 0xcd 1M 4k", "-c", "read -P 0 2M 64k", "-c", "flush");
        Assert.True(exit == 0, err);
        Assert.DoesNotContain("Pattern verification failed", output, StringComparison.Ordinal);
        Assert.DoesNotContain("failed", output + err, StringComparison.Ordinal);
        var onDisk = ReadShared(rig.File("disk.raw"));
        Assert.All(onDisk[..0x10000], b => Assert.Equal(0xab, b));
        Assert.All(onDisk.AsSpan(1 << 20, 4096).ToArray(), b => Assert.Equal(0xcd, b));
        Assert.Equal(0, onDisk[0x10000]);
    }

    /// <summary>qemu-img compare finds an export equal to a reference holding the same bytes, and different from one that does not.</summary>
    [NbdFact]
    public void Qemu_img_compare_agrees_with_a_reference_file()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        Assert.Equal(0, NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("exp"), "-c", "write -P 0x5a 128k 192k").Exit);
        var reference = new byte[DiskBytes];
        reference.AsSpan(128 << 10, 192 << 10).Fill(0x5a);
        System.IO.File.WriteAllBytes(rig.File("ref.raw"), reference);
        var same = NbdTools.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", rig.Uri("exp"), rig.File("ref.raw"));
        Assert.True(same.Exit == 0, same.Out + same.Err);
        reference[DiskBytes - 1] = 1;
        System.IO.File.WriteAllBytes(rig.File("ref.raw"), reference);
        var differ = NbdTools.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", rig.Uri("exp"), rig.File("ref.raw"));
        Assert.Equal(1, differ.Exit);
        // qemu-img names the 512-byte sector the difference lies in.
        Assert.Contains("Content mismatch at offset 4193792", differ.Out, StringComparison.Ordinal);
    }

    /// <summary>qemu-img map through the export (block status, base:allocation) shows the data written and the holes left, as the file's own map does.</summary>
    [NbdFact]
    public void Qemu_img_map_agrees_with_block_status()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        Assert.Equal(0, NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("exp"), "-c", "write -P 1 0 64k", "-c", "write -P 2 1M 64k", "-c", "flush").Exit);
        var viaNbd = Map(rig.Uri("exp"));
        var direct = Map(rig.File("disk.raw"));
        Assert.Equal(direct, viaNbd);
        Assert.Equal([(0L, 65536L, true), (65536, (1 << 20) - 65536, false), (1 << 20, 65536, true), ((1 << 20) + 65536, DiskBytes - (1 << 20) - 65536, false)], viaNbd);
        // The tests' own client asks for the same thing at an offset, and with NBD_CMD_FLAG_REQ_ONE's bound of one extent.
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("exp", blockStatus: true));
        var (e, extents) = c.BlockStatus(32 << 10, 64 << 10);
        Assert.Equal(0u, e);
        Assert.Equal([(32u << 10, 0u), (32u << 10, 3u)], extents);
    }

    /// <summary>
    /// qemu:allocation-depth is offered only by exports added with allocation-depth; through a raw
    /// image every byte is held by the top layer (depth 1), as QEMU says of raw images, and the
    /// context answers beside base:allocation in one reply, ended by the last chunk.
    /// </summary>
    [NbdFact]
    public void Allocation_depth_is_served_when_the_export_asks_for_it()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Ok("block-export-add", """{"type": "nbd", "id": "deep", "node-name": "disk", "allocation-depth": true}""");
        rig.Export("flat", "disk", writable: true);
        Assert.Equal(0, NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("flat"), "-c", "write -P 1 0 64k").Exit);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("disk", contexts: ["base:allocation", "qemu:allocation-depth"]));
        Assert.Equal(new Dictionary<string, uint> { ["base:allocation"] = 0, ["qemu:allocation-depth"] = 1 }, c.ContextIds);
        var (e, all) = c.BlockStatusAll(0, 1 << 20);
        Assert.Equal(0u, e);
        Assert.Equal([(64u << 10, 0u), ((1u << 20) - (64u << 10), 3u)], all[0]);
        Assert.Equal([(1u << 20, 1u)], all[1]);
        using var flat = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, flat.Go("flat", contexts: ["base:allocation", "qemu:allocation-depth"]));
        Assert.Equal(["base:allocation"], flat.ContextIds.Keys);
        var map = NbdTools.Run("nbdinfo", "--map=qemu:allocation-depth", rig.Uri("disk"));
        Assert.True(map.Exit == 0, map.Err);
        Assert.Matches(@"^\s*0\s+4194304\s+1\s", map.Out);
    }

    /// <summary>
    /// A dirty bitmap records the writes made through a writable export (write, write-zeroes; not a
    /// discard the node ignores), and a read-only export of it serves <c>qemu:dirty-bitmap:b0</c>:
    /// nbdinfo's map of it shows exactly the 64 KiB granules written, and is the same map
    /// qemu-storage-daemon gives for the same steps (when QEMU is installed).
    /// </summary>
    [NbdFact]
    public void Dirty_bitmap_contexts_show_what_was_written()
    {
        using var verified = Peer.StartVerified();
        var map = DirtyMap(verified);
        Assert.Equal(["0 65536 0 clean", "65536 65536 1 dirty", "131072 917504 0 clean", "1048576 65536 1 dirty",
            "1114112 2031616 0 clean", "3145728 131072 1 dirty", "3276800 917504 0 clean"], map);
        if (QemuTools.StorageDaemon is null) return;
        using var qsd = Peer.StartStorageDaemon();
        Assert.Equal(DirtyMap(qsd), map);
    }

    /// <summary>A bitmap's contents follow clear and merge, and an aborted transaction leaves them as they were.</summary>
    [NbdFact]
    public void Bitmap_contents_follow_clear_merge_and_abort()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Ok("block-dirty-bitmap-add", """{"node": "disk", "name": "b0"}""");
        rig.Export("w", "disk", writable: true);
        Assert.Equal(0, NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("w"), "-c", "write -P 1 0 64k").Exit);
        rig.Ok("block-dirty-bitmap-add", """{"node": "disk", "name": "b1", "disabled": true}""");
        rig.Error("transaction", """{"actions": [{"type": "block-dirty-bitmap-clear", "data": {"node": "disk", "name": "b0"}}, {"type": "block-dirty-bitmap-add", "data": {"node": "nosuch", "name": "x"}}]}""");
        rig.Ok("block-dirty-bitmap-disable", """{"node": "disk", "name": "b0"}""");
        Assert.Equal(["0 65536 1 dirty", "65536 4128768 0 clean"], BitmapMap(rig, "b0"));
        rig.Ok("block-dirty-bitmap-merge", """{"node": "disk", "target": "b1", "bitmaps": ["b0"]}""");
        Assert.Equal(["0 65536 1 dirty", "65536 4128768 0 clean"], BitmapMap(rig, "b1"));
        rig.Ok("block-dirty-bitmap-clear", """{"node": "disk", "name": "b0"}""");
        Assert.Equal(["0 4194304 0 clean"], BitmapMap(rig, "b0"));
    }

    /// <summary>nbdinfo's map of a bitmap through a temporary read-only export of it (deleted again, so the bitmap is free).</summary>
    private static List<string> BitmapMap(NbdRig rig, string bitmap)
    {
        rig.Ok("block-export-add", $$"""{"type": "nbd", "id": "m", "node-name": "disk", "name": "m", "bitmaps": ["{{bitmap}}"]}""");
        var (exit, output, err) = NbdTools.Run("nbdinfo", $"--map=qemu:dirty-bitmap:{bitmap}", rig.Uri("m"));
        rig.Ok("block-export-del", """{"id": "m"}""");
        Assert.True(exit == 0, err);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))];
    }

    private static List<string> DirtyMap(Peer peer)
    {
        using var q = peer.Connect();
        q.Negotiate();
        var image = Path.Combine(peer.TmpDir, "d.raw");
        var sock = Path.Combine(peer.TmpDir, "nbd.sock");
        using (var f = System.IO.File.Create(image)) f.SetLength(DiskBytes);
        void Ok(string cmd, string args) => Assert.True(q.Execute(cmd, JsonNode.Parse(args)).ContainsKey("return"), $"{peer.Name}: {cmd} {args}");
        Ok("blockdev-add", $"{{\"driver\": \"file\", \"node-name\": \"d\", \"filename\": \"{image}\"}}");
        Ok("block-dirty-bitmap-add", "{\"node\": \"d\", \"name\": \"b0\"}");
        Ok("nbd-server-start", $"{{\"addr\": {{\"type\": \"unix\", \"data\": {{\"path\": \"{sock}\"}}}}}}");
        Ok("block-export-add", "{\"type\": \"nbd\", \"id\": \"w\", \"node-name\": \"d\", \"name\": \"w\", \"writable\": true}");
        var uri = $"nbd+unix:///w?socket={sock}";
        var io = NbdTools.Run("qemu-io", "-f", "raw", uri, "-c", "write -P 1 64k 64k", "-c", "write -P 2 1048676 100",
            "-c", "write -z 3M 128k", "-c", "discard 2M 64k");
        Assert.True(io.Exit == 0, io.Out + io.Err);
        Ok("block-dirty-bitmap-disable", "{\"node\": \"d\", \"name\": \"b0\"}");
        Ok("block-export-add", "{\"type\": \"nbd\", \"id\": \"r\", \"node-name\": \"d\", \"name\": \"r\", \"bitmaps\": [\"b0\"]}");
        var (exit, output, err) = NbdTools.Run("nbdinfo", "--map=qemu:dirty-bitmap:b0", $"nbd+unix:///r?socket={sock}");
        Assert.True(exit == 0, err);
        return [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))];
    }

    /// <summary>nbdinfo --list shows every export with its size, description and read-only flag.</summary>
    [NbdFact]
    public void Nbdinfo_lists_exports_and_sizes()
    {
        using var rig = NbdRig.Start(("a", 1 << 20), ("b", 3 << 20));
        rig.Export("alpha", "a", writable: true, description: "first disk");
        rig.Export("beta", "b", writable: false);
        var (exit, output, err) = NbdTools.Run("nbdinfo", "--list", "--json", $"nbd+unix:///?socket={rig.NbdSocket}");
        Assert.True(exit == 0, err);
        var exports = JsonNode.Parse(output)!["exports"]!.AsArray().ToDictionary(x => (string)x!["export-name"]!, x => x!);
        Assert.Equal(["alpha", "beta"], exports.Keys.Order());
        Assert.Equal(1 << 20, (long)exports["alpha"]["export-size"]!);
        Assert.Equal(3 << 20, (long)exports["beta"]["export-size"]!);
        Assert.Equal("first disk", (string?)exports["alpha"]["description"]);
        Assert.False((bool)exports["alpha"]["is_read_only"]!);
        Assert.True((bool)exports["beta"]["is_read_only"]!);
        Assert.Contains("base:allocation", exports["beta"]["contexts"]!.AsArray().Select(c => (string)c!));
    }

    /// <summary>nbdcopy copies a whole export (several connections, as nbdcopy uses them) into a file byte for byte.</summary>
    [NbdFact]
    public void Nbdcopy_copies_a_whole_export()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        Assert.Equal(0, NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("exp"), "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3M 512k").Exit);
        rig.Ok("block-export-del", "{\"id\": \"exp\"}");
        rig.Export("ro", "disk", writable: false);
        var (exit, _, err) = NbdTools.Run("nbdcopy", rig.Uri("ro"), rig.File("copy.raw"));
        Assert.True(exit == 0, err);
        Assert.Equal(ReadShared(rig.File("disk.raw")), System.IO.File.ReadAllBytes(rig.File("copy.raw")));
    }

    /// <summary>A read-only export advertises read-only, and a write through it is refused with EPERM (qemu-io says so too).</summary>
    [NbdFact]
    public void Writes_to_a_read_only_export_fail_with_EPERM()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("ro", "disk", writable: false);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("ro"));
        Assert.NotEqual(0, c.Flags & 2); // NBD_FLAG_READ_ONLY
        Assert.Equal(1u, c.Write(0, new byte[512]));
        Assert.Equal(1u, c.Raw(6, 0, 0, 4096)); // write zeroes
        Assert.Equal(1u, c.Raw(4, 0, 0, 4096)); // trim
        Assert.Equal(0u, c.Read(0, 512).Errno); // the connection goes on
        // qemu-io believes the advertised flag and refuses before sending anything.
        var q = NbdTools.Run("qemu-io", "-f", "raw", "-r", rig.Uri("ro"), "-c", "write -P 1 0 4k");
        Assert.Contains("Block node is read-only", q.Out + q.Err, StringComparison.Ordinal);
        Assert.All(ReadShared(rig.File("disk.raw"))[..4096], b => Assert.Equal(0, b));
    }

    /// <summary>Requests past the end, too large, with unknown flags or of unknown types get QEMU's errors and leave the connection usable.</summary>
    [NbdFact]
    public void Bad_requests_get_NBD_errors_and_the_connection_goes_on()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("exp"));
        Assert.Equal(DiskBytes, c.Size);
        Assert.Equal(22u, c.Read(DiskBytes - 512, 1024).Errno);               // read past the end: EINVAL
        Assert.Equal(28u, c.Write(DiskBytes, new byte[512]));                  // write past the end: ENOSPC, as QEMU says
        Assert.Equal(22u, c.Raw(0, 0, 0, (32 << 20) + 1));                     // read longer than 32 MiB: EINVAL
        Assert.Equal(22u, c.Raw(0, 1 << 7, 0, 512));                           // unknown flag
        Assert.Equal(22u, c.Raw(99, 0, 0, 512));                               // unknown command
        Assert.Equal(22u, c.Raw(7, 0, 0, 512));                                // block status without a context
        Assert.Equal(0u, c.Write(4096, [1, 2, 3], fua: true));
        Assert.Equal([1, 2, 3], c.Read(4096, 3).Data);
        Assert.Equal(0u, c.Flush());
    }

    /// <summary>A malformed request (bad magic, or a write longer than 32 MiB whose payload cannot be skipped) closes that connection only.</summary>
    [NbdFact]
    public void A_malformed_request_closes_only_its_connection()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        using var good = NbdTestClient.Connect(rig.NbdSocket);
        using var bad = NbdTestClient.Connect(rig.NbdSocket);
        using var big = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, good.Go("exp"));
        Assert.Equal(1u, bad.Go("exp"));
        Assert.Equal(1u, big.Go("exp"));
        bad.SendRaw(new byte[28]);
        Assert.True(bad.IsClosedByServer());
        Assert.Equal(22u, big.Raw(1, 0, 0, (32 << 20) + 1)); // EINVAL, then the connection ends
        Assert.True(big.IsClosedByServer());
        Assert.Equal(0u, good.Write(0, [9]));
        Assert.Equal([9], good.Read(0, 1).Data);
        Assert.Equal(1u, NbdTestClient.Connect(rig.NbdSocket).Go("exp")); // the server still accepts
    }

    /// <summary>An unknown export name is refused at NBD_OPT_GO with NBD_REP_ERR_UNKNOWN; the export set is the engine's.</summary>
    [NbdFact]
    public void Unknown_exports_are_refused_at_negotiation()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(0x80000006u, c.Go("nope"));
    }

    /// <summary>Several qemu-io clients write disjoint ranges of one export at once; every write is there afterwards.</summary>
    [NbdFact]
    public void Several_clients_share_an_export()
    {
        const int Clients = 4;
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        var runs = Enumerable.Range(0, Clients).Select(i => Task.Run(() =>
            NbdTools.Run("qemu-io", "-f", "raw", rig.Uri("exp"), "-c", $"write -P {i + 1} {i}M 1M", "-c", $"read -P {i + 1} {i}M 1M"))).ToArray();
        Task.WaitAll(runs);
        Assert.All(runs, r => Assert.True(r.Result.Exit == 0 && !r.Result.Out.Contains("failed", StringComparison.Ordinal), r.Result.Out + r.Result.Err));
        var onDisk = ReadShared(rig.File("disk.raw"));
        for (int i = 0; i < Clients; i++) Assert.All(onDisk.AsSpan(i << 20, 1 << 20).ToArray(), b => Assert.Equal(i + 1, b));
    }

    /// <summary>TCP on loopback serves the same exports (nbd-server-start with an inet address, port chosen by the system).</summary>
    [NbdFact]
    public void Tcp_on_loopback_serves_exports()
    {
        using var peer = Peer.StartVerified();
        using var q = peer.Connect();
        q.Negotiate();
        using (var f = System.IO.File.Create(Path.Combine(peer.TmpDir, "d.raw"))) f.SetLength(DiskBytes);
        q.Execute("blockdev-add", JsonNode.Parse($"{{\"driver\": \"file\", \"node-name\": \"d\", \"filename\": \"{Path.Combine(peer.TmpDir, "d.raw")}\"}}"));
        Assert.True(q.Execute("nbd-server-start", JsonNode.Parse("{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"0\"}}}")).ContainsKey("return"));
        q.Execute("block-export-add", JsonNode.Parse("{\"type\": \"nbd\", \"id\": \"e\", \"node-name\": \"d\", \"writable\": true}"));
        int port = ((IPEndPoint)peer.Daemon!.Nbd.LocalEndPoint!).Port;
        var (exit, output, err) = NbdTools.Run("qemu-io", "-f", "raw", $"nbd://127.0.0.1:{port}/d", "-c", "write -P 7 0 4k", "-c", "read -P 7 0 4k");
        Assert.True(exit == 0 && !output.Contains("failed", StringComparison.Ordinal), output + err);
    }

    /// <summary>
    /// QEMU's block-export-del with a client connected: safe mode refuses ("still in use") and keeps
    /// serving; hard mode disconnects the client, deletes the export, and BLOCK_EXPORT_DELETED follows the reply.
    /// </summary>
    [NbdFact]
    public void Deleting_an_export_with_clients_is_QEMUs()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("exp"));
        Assert.Equal("export 'exp' still in use", rig.Error("block-export-del", "{\"id\": \"exp\"}"));
        Assert.Equal(0u, c.Write(0, [1]));
        var lines = rig.Qmp.Exchange("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"exp\", \"mode\": \"hard\"}, \"id\": 1}");
        Assert.Equal("{\"return\": {}, \"id\": 1}", lines[0]);
        Assert.Contains("\"event\": \"BLOCK_EXPORT_DELETED\", \"data\": {\"id\": \"exp\"}", lines[1], StringComparison.Ordinal);
        Assert.True(c.IsClosedByServer());
        Assert.Equal(new JsonArray(), rig.Ok("query-block-exports"));
        // The node is free again: it can be deleted.
        rig.Ok("blockdev-del", "{\"node-name\": \"disk\"}");
    }

    /// <summary>nbd-server-stop disconnects every client and deletes every export before its reply; the socket goes away.</summary>
    [NbdFact]
    public void Nbd_server_stop_disconnects_clients()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("exp"));
        var lines = rig.Qmp.Exchange("{\"execute\": \"nbd-server-stop\", \"id\": 1}");
        Assert.Contains("BLOCK_EXPORT_DELETED", lines[0], StringComparison.Ordinal);
        Assert.Equal("{\"return\": {}, \"id\": 1}", lines[1]);
        Assert.True(c.IsClosedByServer());
        Assert.False(System.IO.File.Exists(rig.NbdSocket));
    }

    /// <summary>I/O errors from the graph reach the client as QEMU maps them: EIO as EIO, ENOSPC as ENOSPC, EACCES (no NBD name) as EINVAL; other requests go on.</summary>
    [NbdFact]
    public void Graph_errors_reach_the_wire_with_NBD_errnos()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Ok("blockdev-add", """
            {"driver": "raw", "node-name": "faulty", "file": {"driver": "blkdebug", "node-name": "dbg", "image": "disk",
             "inject-error": [{"event": "read_aio", "iotype": "read", "sector": 2048},
                              {"event": "write_aio", "iotype": "write", "sector": 4096, "errno": 28},
                              {"event": "write_aio", "iotype": "write", "sector": 6144, "errno": 13}]}}
            """);
        rig.Export("exp", "faulty", writable: true);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, c.Go("exp", structuredReplies: true));
        Assert.Equal(5u, c.Read(1 << 20, 4096).Errno);
        Assert.Equal(28u, c.Write(2 << 20, new byte[4096]));
        Assert.Equal(22u, c.Write(3 << 20, new byte[4096]));
        Assert.Equal(0u, c.Read(0, 4096).Errno);
        Assert.Equal(0u, c.Write(0, new byte[4096]));
    }

    /// <summary>max-connections bounds the clients served at once: as in QEMU, one more waits to be accepted until a client leaves.</summary>
    [NbdFact]
    public void Max_connections_bounds_the_clients()
    {
        using var peer = Peer.StartVerified();
        using var q = peer.Connect();
        q.Negotiate();
        var sock = Path.Combine(peer.TmpDir, "nbd.sock");
        q.Execute("blockdev-add", JsonNode.Parse("{\"driver\": \"null-co\", \"node-name\": \"n\"}"));
        Assert.True(q.Execute("nbd-server-start", JsonNode.Parse($"{{\"addr\": {{\"type\": \"unix\", \"data\": {{\"path\": \"{sock}\"}}}}, \"max-connections\": 2}}")).ContainsKey("return"));
        q.Execute("block-export-add", JsonNode.Parse("{\"type\": \"nbd\", \"id\": \"e\", \"node-name\": \"n\"}"));
        using var a = NbdTestClient.Connect(sock);
        using var b = NbdTestClient.Connect(sock);
        Assert.Equal(1u, a.Go("n"));
        Assert.Equal(1u, b.Go("n"));
        using var third = NbdTestClient.Connect(sock);
        var go = Task.Run(() => third.Go("n"));
        Assert.False(go.Wait(TimeSpan.FromMilliseconds(QueuedWaitMs)), "a third client was served beyond max-connections");
        a.Disconnect();
        Assert.True(go.Wait(TimeSpan.FromSeconds(10)), "the waiting client was not served once a slot freed");
        Assert.Equal(1u, go.Result);
    }

    /// <summary>How long a client beyond the bound is watched to stay unserved.</summary>
    private const int QueuedWaitMs = 500;

    /// <summary>Old-style NBD_OPT_EXPORT_NAME selects an export (or closes the connection for an unknown one); NBD_OPT_ABORT is acknowledged.</summary>
    [NbdFact]
    public void Export_name_and_abort_options_work()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: false);
        using var c = NbdTestClient.Connect(rig.NbdSocket);
        Assert.True(c.ExportName("exp"));
        Assert.Equal(DiskBytes, c.Size);
        Assert.NotEqual(0, c.Flags & 2);
        Assert.Equal(0u, c.Read(0, 512).Errno);
        using var unknown = NbdTestClient.Connect(rig.NbdSocket);
        Assert.False(unknown.ExportName("nope"));
        using var abort = NbdTestClient.Connect(rig.NbdSocket);
        Assert.Equal(1u, abort.Abort());
        Assert.True(abort.IsClosedByServer());
    }

    /// <summary>
    /// Shutdown drains: the daemon is disposed while a writer is busy; the writer's connection ends,
    /// and every write it had acknowledged is in the image file afterwards.
    /// </summary>
    [NbdFact]
    public void Shutdown_keeps_every_acknowledged_write()
    {
        using var rig = NbdRig.Start(("disk", DiskBytes));
        rig.Export("exp", "disk", writable: true);
        using var writer = new StampedWriter(rig.NbdSocket, "exp", DiskBytes, seed: 5);
        writer.WaitFor(200, TimeSpan.FromSeconds(30));
        rig.Peer.Daemon!.DisposeAsync().AsTask().Wait();
        writer.Stop();
        Assert.True(writer.Count >= 200);
        Assert.DoesNotContain(writer.Errors, e => e.Contains("errno", StringComparison.Ordinal)); // the connection was cut; no write was refused
        Assert.Null(writer.CheckHoldsAcknowledged(System.IO.File.ReadAllBytes(rig.File("disk.raw"))));
    }

    /// <summary>
    /// Deleting an export that has a client, side by side with qemu-storage-daemon: the same refusal in
    /// safe mode, the export still listed, then in hard mode the reply before BLOCK_EXPORT_DELETED and
    /// the client's connection closed.
    /// </summary>
    [QemuFact]
    public void Export_deletion_with_a_client_matches_qemu_storage_daemon()
    {
        if (!NbdTools.Installed) return;
        using var qsd = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        var expected = DeletionTranscript(qsd);
        output.WriteLine(string.Join("\n", expected));
        Assert.Equal(expected, DeletionTranscript(verified));
    }

    private static List<string> DeletionTranscript(Peer peer)
    {
        using var q = peer.Connect();
        q.Negotiate();
        var image = Path.Combine(peer.TmpDir, "d.raw");
        var sock = Path.Combine(peer.TmpDir, "nbd.sock");
        using (var f = System.IO.File.Create(image)) f.SetLength(DiskBytes);
        q.Execute("blockdev-add", JsonNode.Parse($"{{\"driver\": \"file\", \"node-name\": \"d\", \"filename\": \"{image}\"}}"));
        q.Execute("nbd-server-start", JsonNode.Parse($"{{\"addr\": {{\"type\": \"unix\", \"data\": {{\"path\": \"{sock}\"}}}}}}"));
        q.Execute("block-export-add", JsonNode.Parse("{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"d\", \"name\": \"exp\", \"writable\": true}"));
        using var c = NbdTestClient.Connect(sock);
        var lines = new List<string> { $"go {c.Go("exp")}" };
        lines.AddRange(q.Exchange("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"e0\"}, \"id\": 1}")[..^1]);
        lines.AddRange(q.Exchange("{\"execute\": \"query-block-exports\", \"id\": 2}")[..^1]);
        var hard = q.Exchange("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"e0\", \"mode\": \"hard\"}, \"id\": 3}")[..^1];
        // QEMU sends the event once the client has gone, which may be after the exchange's own reply.
        while (!hard.Any(l => l.Contains("BLOCK_EXPORT_DELETED", StringComparison.Ordinal)) && q.ReadLine() is { } more) hard.Add(more);
        lines.AddRange(hard);
        lines.Add($"closed {c.IsClosedByServer()}");
        lines.AddRange(q.Exchange("{\"execute\": \"query-block-exports\", \"id\": 4}")[..^1]);
        // Timestamps differ, and the exchanges' resynchronising bytes say nothing; the rest must not differ.
        return [.. lines.Where(l => !l.Contains("stray", StringComparison.Ordinal))
            .Select(l => System.Text.RegularExpressions.Regex.Replace(l, "\"timestamp\": \\{[^}]*\\}, ", ""))];
    }

    private static List<(long Start, long Length, bool Data)> Map(string target)
    {
        var (exit, output, err) = NbdTools.Run("qemu-img", "map", "--output=json", "-U", "-f", "raw", target);
        Assert.True(exit == 0, err);
        return [.. JsonNode.Parse(output)!.AsArray().Select(e => ((long)e!["start"]!, (long)e["length"]!, (bool)e["data"]!))];
    }

    /// <summary>The image file's bytes, read beside the daemon that has it open.</summary>
    internal static byte[] ReadShared(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[f.Length];
        f.ReadExactly(b);
        return b;
    }
}
