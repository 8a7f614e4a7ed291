using System.Text;
using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Serve;

/// <summary>
/// Same answers as QEMU: the same QMP input, sent byte for byte to qemu-storage-daemon 7.2 (or
/// qemu-system-x86_64 with no guest, where devices are needed) and to <c>verified serve</c>, must get
/// the same replies. Protocol tests compare whole reply lines (only version strings and timestamps
/// normalised); graph sequences compare outcomes, texts, events, edges with perms and node lists
/// after every command (see <see cref="Comparison"/>). Runs when QEMU is installed; CI installs it.
/// </summary>
public class QemuComparisonTests(ITestOutputHelper output)
{
    /// <summary>Envelope and framing cases, sent as raw bytes before and after negotiation.</summary>
    public static readonly string[] ProtocolCases =
    [
        "{\"execute\": \"query-version\"}",
        "{\"execute\": \"query-version\", \"id\": [1, {\"a\": null}, \"x\", 1.5, true]}",
        "{\"execute\": \"query-version\", \"id\": null}",
        "{\"execute\": \"query-version\", \"id\": 18446744073709551615}",
        "{\"execute\": \"query-version\", \"id\": -9223372036854775809}",
        "{\"execute\": \"query-version\", \"id\": 0.1}",
        "{\"execute\": \"query-version\", \"id\": \"\\u00e9\\ud83d\\ude00\\u0000\"}",
        "{\"execute\": \"nosuch\", \"id\": 7}",
        "{\"execute\": 1}",
        "{\"execute\": \"query-version\", \"arguments\": []}",
        "{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}",
        "{\"execute\": \"query-version\", \"foo\": 1, \"bar\": 2}",
        "{\"exec-oob\": \"query-version\"}",
        "{\"exec-oob\": \"query-version\", \"execute\": \"query-version\"}",
        "{\"exec-oob\": \"qmp_capabilities\", \"id\": 3}",
        "{\"exec-oob\": 7}",
        "{\"exec-oob\": \"nosuch\"}",
        "{}",
        "{\"id\": 5}",
        "[]",
        "[1, 2]",
        "\"str\"",
        "1",
        "null",
        "{\"execute\": \"quit\", \"arguments\": {\"now\": true}}",
        "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": \"oob\"}}",
        "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"nope\"]}}",
        "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"other\": 1}}",
        "{\"execute\"\u001b",
        "{\"a\": 1}}",
        "]",
        "\u0001",
        "\0",
        "012",
        "+1",
        "-",
        "1.",
        "1e",
        "1e+",
        ".5",
        "{\"a\": 1, \"a\": 2}",
        "{\"a\" 1}",
        "{1: 2}",
        "{\"a\": 1]",
        "[1 2]",
        "[1,]",
        "{\"a\":}",
        "{,}",
        "nul",
        "True",
        "\"\\q\"",
        "\"\\uD800\"",
        "\"\\uD800\\u0041\"",
        "\"\\uFFFF\"",
        "\"\\u12\"",
        "'single' 'it\\'s'",
        "{\"execute\": \"query-version\"}{\"execute\": \"query-version\"}\n{\"execute\"\n:\n\"query-version\"}",
        "{\"execute\": \"query-version\", \"id\": \"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
        "{\"execute\": \"query-commands-nope\", \"arguments\": {\"a\": [[[[{}]]]]}}",
    ];

    private static List<byte[]> ByteCases() =>
    [
        .. ProtocolCases.Select(Encoding.UTF8.GetBytes),
        [(byte)'"', 0xC3, 0x28, (byte)'"'],
        [0xFE],
        [0xFF, (byte)'{', (byte)'}'],
        [0xEF, 0xBB, 0xBF, (byte)'{', (byte)'}'],
        [(byte)'"', 0xC0, 0x80, (byte)'"'],
        [(byte)'"', 0xED, 0xA0, 0x80, (byte)'"'],
        [(byte)'"', 0xF4, 0x90, 0x80, 0x80, (byte)'"'],
        [(byte)'"', 0xE0, 0x80, 0xAF, (byte)'"'],
        Encoding.ASCII.GetBytes(new string('[', 1024) + new string(']', 1024)),
        Encoding.ASCII.GetBytes(new string('[', 1025) + new string(']', 1025)),
        Encoding.ASCII.GetBytes(new string('{', 2000)),
        Encoding.ASCII.GetBytes("{\"execute\": \"query-version\", \"id\": " + new string('[', 1000) + new string(']', 1000) + "}"),
        Encoding.ASCII.GetBytes("{\"execute\": \"query-version\", \"id\": " + new string('[', 1023) + new string(']', 1023) + "}"),
        Encoding.ASCII.GetBytes("{\"execute\": \"query-version\", \"id\": " + new string('[', 1024) + new string(']', 1024) + "}"),
        Encoding.ASCII.GetBytes("{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"x\", \"property\": \"drive\", \"value\": " + new string('[', 200) + new string(']', 200) + "}}"),
        Encoding.ASCII.GetBytes("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"n\", \"size\": " + new string('[', 200) + new string(']', 200) + "}}"),
    ];

    /// <summary>Seeded random mutations of a few valid requests: flipped, dropped, inserted and duplicated bytes.</summary>
    public static List<byte[]> Mutations(int count, int seed)
    {
        string[] bases =
        [
            "{\"execute\": \"query-version\", \"id\": \"q\"}",
            "{\"execute\": \"x-nosuch\", \"arguments\": {\"a\": [1, \"b\", {\"c\": null}], \"d\": 'e'}, \"id\": [1]}",
            "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
            "{\"execute\": \"query-block-exports\", \"id\": {\"n\": -1.5e3}}",
        ];
        byte[] interesting = [.. "{}[],:\"'\\ \n\t\u0001"u8, 0x00, 0x1b, 0x7f, 0x80, 0xC3, 0xFE, 0xFF, (byte)'0', (byte)'-', (byte)'e', (byte)'u'];
        var rng = new Random(seed);
        var list = new List<byte[]>();
        for (int i = 0; i < count; i++)
        {
            var b = Encoding.UTF8.GetBytes(bases[rng.Next(bases.Length)]).ToList();
            int edits = 1 + rng.Next(3);
            for (int e = 0; e < edits && b.Count > 0; e++)
            {
                int at = rng.Next(b.Count);
                byte x = rng.Next(3) == 0 ? (byte)rng.Next(256) : interesting[rng.Next(interesting.Length)];
                switch (rng.Next(5))
                {
                    case 0: b[at] = x; break;
                    case 1: b.RemoveAt(at); break;
                    case 2: b.Insert(at, x); break;
                    case 3: b.RemoveRange(at, b.Count - at); break; // truncated
                    default: b.InsertRange(at, b.GetRange(at, Math.Min(b.Count - at, 1 + rng.Next(8)))); break;
                }
            }
            list.Add([.. b]);
        }
        return list;
    }

    /// <summary>Sends every case on both peers, before and after negotiation; returns the differing cases.</summary>
    private static List<string> CompareProtocol(IReadOnlyList<byte[]> cases, out int compared)
    {
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        var diffs = new List<string>();
        compared = 0;
        // Three sessions each: before negotiation, negotiated, and negotiated with the oob capability.
        // A QEMU monitor serves one client at a time, so the oob session comes after the first closes.
        using (var cq = qemu.Connect())
        using (var cv = verified.Connect())
        {
            if (Comparison.NormaliseLine(cq.Greeting) != Comparison.NormaliseLine(cv.Greeting))
                diffs.Add($"greeting:\n  qemu:     {cq.Greeting}\n  verified: {cv.Greeting}");
            compared += CompareCases(cases, "before negotiation", cq, cv, diffs);
            Assert.Equal(cq.Negotiate(), cv.Negotiate());
            compared += CompareCases(cases, "negotiated", cq, cv, diffs);
        }
        using (var oq = qemu.Connect())
        using (var ov = verified.Connect())
        {
            var oobOn = JsonNode.Parse("{\"enable\": [\"oob\"]}");
            Assert.Equal(oq.ExecuteRaw("qmp_capabilities", oobOn), ov.ExecuteRaw("qmp_capabilities", oobOn));
            compared += CompareCases(cases, "oob", oq, ov, diffs);
        }
        return diffs;
    }

    private static int CompareCases(IReadOnlyList<byte[]> cases, string mode, QmpClient q0, QmpClient v0, List<string> diffs)
    {
        int compared = 0;
        foreach (var c in cases)
        {
            // quit would end the peers; it is compared in its own test.
            if (Encoding.UTF8.GetString(c).Contains("\"quit\"", StringComparison.Ordinal) && mode != "before negotiation") continue;
            compared++;
            var q = q0.Exchange(c).Select(Comparison.NormaliseLine).ToList();
            var v = v0.Exchange(c).Select(Comparison.NormaliseLine).ToList();
            if (!q.SequenceEqual(v))
                diffs.Add($"input {Convert.ToHexString(c)} ({Encoding.UTF8.GetString(c).Replace("\u0001", "\\x01", StringComparison.Ordinal)}), {mode}:\n  qemu:     {string.Join("\n            ", q)}\n  verified: {string.Join("\n            ", v)}");
        }
        return compared;
    }

    [QemuFact]
    public void Framing_and_envelope_errors_match_QEMU_byte_for_byte()
    {
        var diffs = CompareProtocol(ByteCases(), out int compared);
        output.WriteLine($"{compared} inputs compared, {diffs.Count} differ");
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    [QemuFact]
    public void Mutated_messages_get_the_same_replies_as_from_QEMU()
    {
        const int seed = 5;
        var diffs = CompareProtocol(Mutations(400, seed), out int compared);
        output.WriteLine($"{compared} mutated inputs (seed {seed}) compared, {diffs.Count} differ");
        Assert.True(diffs.Count == 0, string.Join("\n", diffs.Take(10)));
    }

    /// <summary>
    /// The QEMU 7.2 measurement scenarios in tests/scenarios/cases (the series' own scenarios change QEMU, so are
    /// not compared), and those in tests/serve/qemu72 (over images the model cannot know), as folder/file.
    /// </summary>
    public static TheoryData<string> Scenarios()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "cases"), "qemu72-*.jsonl").Order(StringComparer.Ordinal))
            data.Add("cases/" + Path.GetFileName(f));
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "qemu72"), "*.jsonl").Order(StringComparer.Ordinal))
            data.Add("qemu72/" + Path.GetFileName(f));
        return data;
    }

    [QemuTheory]
    [MemberData(nameof(Scenarios))]
    public void Graph_sequences_get_the_same_answers_as_from_QEMU(string file)
    {
        var steps = Comparison.LoadScenario(Path.Combine(AppContext.BaseDirectory, file));
        var qemuArgs = Comparison.QemuArgs(steps);
        using var qemu = qemuArgs.Count > 0 ? Peer.StartQemuSystem(qemuArgs) : Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        var (diffs, compared) = Comparison.Run(steps, qemu, verified);
        output.WriteLine($"{file}: {compared} commands compared on {qemu.Name} and verified, {diffs.Count} differences");
        foreach (var d in diffs) output.WriteLine(d);
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    [QemuFact]
    public void Resize_iothread_and_change_commands_answer_as_QEMU_does()
    {
        List<JsonObject> steps =
        [
            Step("{\"run\": [\"qemu-img\", \"create\", \"-f\", \"raw\", \"@TMP@/a.raw\", \"1M\"]}"),
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"@TMP@/a.raw\"}}"),
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"raw\", \"node-name\": \"r\", \"file\": \"f\"}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\", \"size\": 2097152}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"f\", \"size\": 1048576}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"device\": \"r\", \"size\": 1}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"size\": 1}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"nosuch\", \"size\": 1}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\", \"size\": -1}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\"}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\", \"size\": \"1\"}}"),
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"n\"}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"n\", \"size\": 4096}}"),
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"raw\", \"node-name\": \"fixed\", \"file\": \"f\", \"size\": 512}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"fixed\", \"size\": 4096}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\", \"size\": 4096}}"),
            Step("{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"fixed\"}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": [1]}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\"}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"bogus\", \"data\": {}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/no/such/dir.sock\"}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/nbd.sock\", \"x\": 1}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\"}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/nbd.sock\"}}, \"max-connections\": -1}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/nbd.sock\"}}, \"tls-creds\": \"nope\"}}"),
            Step("{\"execute\": \"nbd-server-add\", \"arguments\": {\"device\": \"nope\"}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/nbd.sock\"}}}}"),
            Step("{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"@TMP@/nbd.sock\"}}}}"),
            Step("{\"execute\": \"nbd-server-add\", \"arguments\": {\"device\": \"nope\"}}"),
            Step("{\"execute\": \"nbd-server-add\", \"arguments\": {\"device\": \"n\", \"name\": \"nn\"}}"),
            Step("{\"execute\": \"nbd-server-remove\", \"arguments\": {\"name\": \"nope\"}}"),
            Step("{\"execute\": \"nbd-server-remove\", \"arguments\": {\"name\": \"nn\"}}"),
            Step("{\"execute\": \"block-export-add\", \"arguments\": {\"type\": \"nbd\", \"id\": \"e1\", \"node-name\": \"r\"}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"r\", \"size\": 8192}}"),
            Step("{\"execute\": \"block_resize\", \"arguments\": {\"node-name\": \"f\", \"size\": 8192}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"r\", \"iothread\": null}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"n\", \"iothread\": \"io0\"}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"nosuch\", \"iothread\": null}}"),
            Step("{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"iothread\", \"id\": \"io0\"}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"n\", \"iothread\": \"io0\"}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"n\", \"iothread\": null}}"),
            Step("{\"execute\": \"x-blockdev-set-iothread\", \"arguments\": {\"node-name\": \"n\", \"iothread\": 1}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\", \"child\": \"file\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\", \"child\": \"nope\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\", \"node\": \"n\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\", \"node\": \"nope\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\", \"node\": \"n\", \"child\": \"file\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"r\"}}"),
            Step("{\"execute\": \"x-blockdev-change\", \"arguments\": {\"parent\": \"nope\"}}"),
            Step("{\"execute\": \"block-export-add\", \"arguments\": {\"type\": \"nbd\", \"id\": \"e2\", \"node-name\": \"n\"}}"),
            Step("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"e1\"}}"),
            Step("{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"e1\"}}"),
            Step("{\"execute\": \"block-export-add\", \"arguments\": {\"type\": \"nbd\", \"id\": \"e3\", \"node-name\": \"r\"}}"),
            Step("{\"execute\": \"nbd-server-stop\"}"),
            Step("{\"execute\": \"query-block-exports\"}"),
        ];
        using var qemu = Peer.StartStorageDaemon();
        using var verified = Peer.StartVerified();
        var (diffs, compared) = Comparison.Run(steps, qemu, verified);
        output.WriteLine($"{compared} commands compared, {diffs.Count} differences");
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
        Assert.Equal(new FileInfo(Path.Combine(qemu.TmpDir, "a.raw")).Length, new FileInfo(Path.Combine(verified.TmpDir, "a.raw")).Length);
    }

    /// <summary>
    /// Devices on qemu-system-x86_64 (-machine pc, no guest running): drive lookups by id and QOM
    /// path, qom-get and qom-set of drive, scsi-hd unplug with its DEVICE_DELETED. Not compared:
    /// device_del of a PCI device, which without a running guest never completes in QEMU ("already in
    /// the process of unplug"); Verified has no guest and completes it at once (DECISIONS.md 8).
    /// </summary>
    [QemuFact]
    public void Device_commands_answer_as_QEMU_does()
    {
        List<JsonObject> steps =
        [
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"n\"}}"),
            Step("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"m\"}}"),
            Step("{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", \"id\": \"vd0\", \"drive\": \"n\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"vd0\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/vd0\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/vd0/virtio-backend\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/nosuch\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"vd0\", \"property\": \"nope\"}}"),
            Step("{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"vd0\", \"property\": \"drive\", \"value\": \"m\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"vd0\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"vd0\", \"property\": \"drive\", \"value\": 1}}"),
            Step("{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-scsi-pci\", \"id\": \"scsi0\"}}"),
            Step("{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"scsi-hd\", \"id\": \"sd0\", \"drive\": \"m\"}}"),
            Step("{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"scsi-hd\", \"id\": \"sd0\", \"drive\": \"n\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"sd0\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"scsi0\", \"property\": \"drive\"}}"),
            Step("{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"n\"}}"),
            Step("{\"execute\": \"device_del\", \"arguments\": {\"id\": \"sd0\"}, \"settle\": true}"),
            Step("{\"execute\": \"blockdev-del\", \"arguments\": {\"node-name\": \"n\"}}"),
            Step("{\"execute\": \"device_del\", \"arguments\": {\"id\": \"nosuch\"}}"),
            Step("{\"execute\": \"device_del\", \"arguments\": {}}"),
        ];
        using var qemu = Peer.StartQemuSystem(["-machine", "pc,accel=tcg", "-S"]);
        using var verified = Peer.StartVerified();
        var (diffs, compared) = Comparison.Run(steps, qemu, verified);
        output.WriteLine($"{compared} commands compared, {diffs.Count} differences");
        foreach (var d in diffs) output.WriteLine(d);
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    private static JsonObject Step(string json) => JsonNode.Parse(json)!.AsObject();
}

/// <summary>A theory that runs only where QEMU is installed.</summary>
public sealed class QemuTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips when QEMU is missing.</summary>
    public QemuTheoryAttribute()
    {
        if (QemuTools.StorageDaemon is null || QemuTools.SystemX86 is null)
            Skip = "qemu-storage-daemon or qemu-system-x86_64 is not installed (scripts/deps.sh installs them)";
    }
}
