using System.Text;
using System.Text.Json.Nodes;
using Verified.Server.Json;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Serve;

/// <summary>
/// Hostile input: thousands of malformed and mutated messages from several clients at once, in
/// random chunk sizes, clients that vanish mid-message, and an oversized message. The daemon must
/// answer each bad value with an error (never a success), keep serving every client, and leave the
/// graph exactly as it was. Every run replays from its seed.
/// </summary>
public class HostileInputTests(ITestOutputHelper output)
{
    /// <summary>Messages each flooding client sends.</summary>
    private const int MessagesPerClient = 1500;

    /// <summary>Clients flooding at once.</summary>
    private const int FloodingClients = 3;

    /// <summary>
    /// Requests that fail however a few bytes of them are mutated: they name nodes, devices and
    /// exports that do not exist (no mutation of 1-3 bytes turns "zz9" into "disk0"), unknown
    /// drivers, or carry a member the command does not take.
    /// </summary>
    private static readonly string[] FailingRequests =
    [
        "{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"zz9\"}, \"id\": 1}",
        "{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"nosuchdrv\", \"node-name\": \"zz9\"}}",
        "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"zz9\"}}",
        "{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"zz9\"}}",
        "{\"execute\": \"x-blockdev-replace\", \"arguments\": {\"parent-type\": \"qdev\", \"qdev-id\": \"zz9\", \"new-child\": \"zz8\"}}",
        "{\"execute\": \"transaction\", \"arguments\": {\"actions\": [{\"type\": \"blockdev-del\", \"data\": {\"node-name\": \"zz9\"}}, {\"type\": \"abort\", \"data\": {}}]}}",
        "{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"/machine/peripheral/zz9\", \"property\": \"drive\", \"value\": \"disk0\"}}",
        "{\"execute\": \"blockdev-reopen\", \"arguments\": {\"options\": [{\"driver\": \"null-co\", \"node-name\": \"zz9\"}]}}",
        "{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"zz9\", \"size\": 1}}",
        "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"zz9\"}}",
        "{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"zz9\", \"node\": \"disk0\"}}",
        "{\"execute\": \"block-dirty-bitmap-add\", \"arguments\": {\"node\": \"zz9\", \"name\": \"b\"}}",
    ];

    private static byte[] Mutate(Random rng, byte[] message)
    {
        var b = message.ToList();
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits && b.Count > 0; e++)
        {
            int at = rng.Next(b.Count);
            byte x = (byte)rng.Next(256);
            switch (rng.Next(4))
            {
                case 0: b[at] = x; break;
                case 1: b.RemoveAt(at); break;
                case 2: b.Insert(at, x); break;
                default: b.InsertRange(at, b.GetRange(at, Math.Min(b.Count - at, 1 + rng.Next(8)))); break;
            }
        }
        return [.. b];
    }

    private static string GraphState(QmpClient c) =>
        string.Join("\n", new[] { "x-debug-query-block-graph", "query-named-block-nodes", "query-block-exports" }
            .Select(q => c.Execute(q)["return"]!.ToJsonString()));

    [Fact]
    public async Task Thousands_of_hostile_messages_leave_the_daemon_serving_and_the_graph_unchanged()
    {
        const int seed = 2026;
        using var peer = Peer.StartVerified();
        using var admin = peer.Connect();
        admin.Negotiate();
        foreach (var (cmd, args) in new[]
        {
            ("blockdev-add", "{\"driver\": \"null-co\", \"node-name\": \"disk0\"}"),
            ("blockdev-add", "{\"driver\": \"null-co\", \"node-name\": \"disk1\", \"read-only\": true}"),
            ("device_add", "{\"driver\": \"virtio-blk-pci\", \"id\": \"vd0\", \"drive\": \"disk0\"}"),
            ("nbd-server-start", "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"" + Path.Combine(peer.TmpDir, "nbd.sock") + "\"}}}"),
            ("block-export-add", "{\"type\": \"nbd\", \"id\": \"exp0\", \"node-name\": \"disk1\"}"),
        })
        {
            Assert.True(admin.Execute(cmd, JsonNode.Parse(args))["return"] is not null, cmd);
        }
        var before = GraphState(admin);

        int successes = 0, replies = 0;
        var tasks = Enumerable.Range(0, FloodingClients).Select(k => Task.Run(() =>
        {
            var rng = new Random(seed + k);
            using var c = peer.Connect();
            if (k > 0) c.Negotiate(); // one client floods before negotiating, the others after
            var batch = new MemoryStream();
            for (int i = 0; i < MessagesPerClient; i++)
            {
                var msg = Encoding.UTF8.GetBytes(FailingRequests[rng.Next(FailingRequests.Length)]);
                batch.Write(rng.Next(5) == 0 ? msg : Mutate(rng, msg));
                if (rng.Next(50) != 0) continue;
                // Send the batch in random chunk sizes, then resynchronise and count what came back.
                var bytes = batch.ToArray();
                batch.SetLength(0);
                for (int at = 0; at < bytes.Length;)
                {
                    int n = Math.Min(bytes.Length - at, 1 + rng.Next(700));
                    c.SendRaw(bytes.AsSpan(at, n));
                    at += n;
                }
                var lines = c.Exchange("");
                Interlocked.Add(ref replies, lines.Count - 1);
                Interlocked.Add(ref successes, lines.SkipLast(1).Count(l => l.Contains("\"return\"", StringComparison.Ordinal)));
            }
            c.Exchange(batch.ToArray());
        })).ToArray();

        // Meanwhile clients vanish mid-message.
        for (int i = 0; i < 20; i++)
        {
            using var gone = peer.Connect();
            gone.SendRaw("{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"dis");
        }
        await Task.WhenAll(tasks);
        output.WriteLine($"{FloodingClients * MessagesPerClient} hostile messages (seed {seed}), {replies} replies, {successes} successes");

        Assert.Equal(0, successes);
        Assert.True(replies >= FloodingClients * MessagesPerClient / 2, $"only {replies} replies");
        Assert.Equal(before, GraphState(admin));
        using var late = peer.Connect();
        late.Negotiate();
        Assert.Equal(before, GraphState(late));
    }

    /// <summary>A message over QEMU's 64 MiB bound is refused with QEMU's text; the connection goes on.</summary>
    [Fact]
    public void An_oversized_message_is_refused_and_the_client_is_still_served()
    {
        using var peer = Peer.StartVerified();
        using var c = peer.Connect();
        c.Negotiate();
        var big = new byte[JsonMessageStream.TokenSizeMax + 16];
        Array.Fill(big, (byte)'a');
        big[0] = (byte)'"';
        var lines = c.Exchange([.. "{\"execute\": "u8, .. big, .. "\"}"u8]);
        Assert.Equal("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON token size limit exceeded\"}}", lines[0]);
        Assert.Contains("\"return\"", c.Exchange("{\"execute\": \"query-version\"}")[0], StringComparison.Ordinal);
    }
}
