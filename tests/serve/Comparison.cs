using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Verified.Tests.Serve;

/// <summary>
/// Runs one QMP sequence on two peers and lists every difference in what a client sees: each
/// command's outcome, error class and text, return value, events, and after each command the graph
/// (every edge with its perm and shared perm) and the node list. Only what must differ is
/// normalised: version strings, timestamps, the peers' temporary directories, the two random digits
/// of auto node names, and export backends' names (DECISIONS.md 5: Verified names them by export id,
/// QEMU 7.2 leaves them unnamed).
/// </summary>
public static partial class Comparison
{
    /// <summary>Normalises one raw reply line from either peer.</summary>
    public static string NormaliseLine(string line)
    {
        line = VersionRegex().Replace(line, "{\"qemu\": VERSION, \"package\": PACKAGE}");
        return TimestampRegex().Replace(line, "\"seconds\": S, \"microseconds\": US");
    }

    [GeneratedRegex("\\{\"qemu\": \\{\"micro\": \\d+, \"minor\": \\d+, \"major\": \\d+\\}, \"package\": \"[^\"]*\"\\}")]
    private static partial Regex VersionRegex();

    [GeneratedRegex("\"seconds\": \\d+, \"microseconds\": \\d+")]
    private static partial Regex TimestampRegex();

    [GeneratedRegex("#block\\d+")]
    private static partial Regex AutoNameRegex();

    /// <summary>Loads a scenario file: one JSON object per line, '#' comments skipped.</summary>
    public static List<JsonObject> LoadScenario(string path) =>
        [.. File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith("//", StringComparison.Ordinal))
            .Select(l => JsonNode.Parse(l)!.AsObject())];

    /// <summary>The extra QEMU arguments a scenario asks for.</summary>
    public static List<string> QemuArgs(IEnumerable<JsonObject> steps) =>
        [.. steps.Where(s => s.ContainsKey("qemu_args")).SelectMany(s => s["qemu_args"]!.AsArray().Select(a => a!.GetValue<string>()))];

    /// <summary>Runs <paramref name="steps"/> on both peers; returns the differences (empty when the peers agree) and the number of steps compared.</summary>
    public static (List<string> Differences, int Compared) Run(IReadOnlyList<JsonObject> steps, Peer a, Peer b)
    {
        using var ca = a.Connect();
        using var cb = b.Connect();
        ca.Negotiate();
        cb.Negotiate();
        var diffs = new List<string>();
        int compared = 0;
        for (int i = 0; i < steps.Count; i++)
        {
            var step = steps[i];
            if (step.ContainsKey("run"))
            {
                foreach (var p in new[] { a, b }) RunHost(step["run"]!.AsArray(), p.TmpDir);
                continue;
            }
            if (!step.ContainsKey("execute")) continue;
            compared++;
            var cmd = step["execute"]!.GetValue<string>();
            Dictionary<string, string>? sa = null, sb = null;
            var (firstA, firstB) = (ca.Events.Count, cb.Events.Count);
            foreach (var (c, p) in new[] { (ca, a), (cb, b) })
            {
                try
                {
                    var seen = See(c, p, cmd, step["arguments"]);
                    if (p == a) sa = seen;
                    else sb = seen;
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                {
                    // A peer that dies or hangs ends the comparison; say which, and where.
                    diffs.Add($"{PeerFailed}: {p.Name} at step {i} ({cmd} {step["arguments"]?.ToJsonString()}): {e.Message}{p.ExitReport()}");
                    return (diffs, compared);
                }
            }
            // "settle": QEMU finishes this command after replying (an unplug): look again until the
            // graphs agree or the wait runs out, then compare what was seen last.
            var deadline = DateTime.UtcNow + SettleTimeout;
            while (step["settle"]?.GetValue<bool>() == true && !Observe(ca, a).SequenceEqual(Observe(cb, b)) && DateTime.UtcNow < deadline)
                Thread.Sleep(SettlePollMs);
            if (step["settle"]?.GetValue<bool>() == true)
            {
                foreach (var (k, v) in Observe(ca, a)) sa![k] = v;
                foreach (var (k, v) in Observe(cb, b)) sb![k] = v;
                // Events the command caused after its reply (a job finishing in the background) belong to it too:
                // wait until neither peer has received one for two polls.
                for (int quiet = 0, seen = -1; quiet < 2 && DateTime.UtcNow < deadline; Thread.Sleep(SettlePollMs))
                {
                    ca.Execute("query-version");
                    cb.Execute("query-version");
                    int now = ca.Events.Count + cb.Events.Count;
                    quiet = now == seen ? quiet + 1 : 0;
                    seen = now;
                }
                sa!["events"] = StepEvents(ca, a, firstA);
                sb!["events"] = StepEvents(cb, b, firstB);
            }
            foreach (var (key, va) in sa!)
            {
                var vb = sb!.GetValueOrDefault(key);
                if (va != vb) diffs.Add($"step {i} ({cmd}) {key}:\n    {a.Name}: {va}\n    {b.Name}: {vb}");
            }
        }
        // Events that come after a reply (DEVICE_DELETED) are compared as one ordered list at the end,
        // once both peers have sent as many (or the wait runs out).
        var until = DateTime.UtcNow + SettleTimeout;
        do
        {
            ca.Execute("query-version");
            cb.Execute("query-version");
        }
        while (ca.Events.Count != cb.Events.Count && DateTime.UtcNow < until && Sleep(SettlePollMs));
        var ea = string.Join("\n    ", ca.Events.Select(EventText));
        var eb = string.Join("\n    ", cb.Events.Select(EventText));
        if (ea != eb) diffs.Add($"all events:\n  {a.Name}:\n    {ea}\n  {b.Name}:\n    {eb}");
        return (diffs, compared);
    }

    /// <summary>How a difference starts when a peer stopped answering.</summary>
    public const string PeerFailed = "peer failed";

    /// <summary>Longest wait for what QEMU finishes after a reply (an unplug and its event).</summary>
    private static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How often a settling peer is looked at again.</summary>
    private const int SettlePollMs = 50;

    private static bool Sleep(int ms)
    {
        Thread.Sleep(ms);
        return true;
    }

    private static string EventText(string line)
    {
        var ev = JsonNode.Parse(line)!;
        return $"{ev["event"]}{ev["data"]?.ToJsonString()}";
    }

    private static void RunHost(JsonArray argv, string tmp)
    {
        var psi = new ProcessStartInfo(argv[0]!.GetValue<string>()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = tmp };
        foreach (var x in argv.Skip(1)) psi.ArgumentList.Add(x!.GetValue<string>().Replace("@TMP@", tmp, StringComparison.Ordinal));
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
    }

    private static JsonNode? Subst(JsonNode? n, string tmp) =>
        n is null ? null : JsonNode.Parse(n.ToJsonString().Replace("@TMP@", tmp.Replace("\\", "\\\\", StringComparison.Ordinal), StringComparison.Ordinal));

    private static string Norm(Peer p, string s) => AutoNameRegex().Replace(s.Replace(p.TmpDir, "@TMP@", StringComparison.Ordinal), "#blockN");

    /// <summary>The events a client saw since <paramref name="first"/>, as comparable text (DEVICE_DELETED aside: compared at the end).</summary>
    private static string StepEvents(QmpClient c, Peer p, int first) =>
        Norm(p, string.Join(" ", c.Events.Skip(first).Select(EventText).Where(e => !e.StartsWith("DEVICE_DELETED", StringComparison.Ordinal))));

    /// <summary>What a client sees of one command on one peer, as comparable strings.</summary>
    private static Dictionary<string, string> See(QmpClient c, Peer p, string cmd, JsonNode? args)
    {
        int firstEvent = c.Events.Count;
        args = Subst(args, p.TmpDir);
        // DECISIONS.md 2: x-perm-scheme selects per node the scheme QEMU 7.2 has natively; QEMU knows no such option.
        if (p.IsQemu && args is JsonObject o) o.Remove("x-perm-scheme");
        var line = c.ExecuteRaw(cmd, args);
        // QEMU 7.2 aborts in qcow2_get_specific_info (qcow2.c:5222, assert(false)) when query-named-block-nodes
        // meets the image a blockdev-create job has open, now and then (measured: 2 runs in 5): both peers are
        // observed once their create jobs have ended.
        if (cmd == "blockdev-create") WaitForJobsToEnd(c);
        var seen = new Dictionary<string, string>
        {
            // The reply's bytes, except the command list, where Verified implements fewer commands than QEMU.
            ["outcome"] = cmd is "query-commands" ? (line.StartsWith("{\"return\"", StringComparison.Ordinal) ? "ok" : Norm(p, line)) : Norm(p, line),
            ["events"] = StepEvents(c, p, firstEvent),
        };
        foreach (var (k, v) in Observe(c, p)) seen[k] = v;
        return seen;
    }

    /// <summary>Polls query-jobs until no job is still on its way (created … pending), or the settle time runs out.</summary>
    private static void WaitForJobsToEnd(QmpClient c)
    {
        var deadline = DateTime.UtcNow + SettleTimeout;
        while (DateTime.UtcNow < deadline && c.Execute("query-jobs")["return"]!.AsArray()
                   .Any(j => j!["status"]!.GetValue<string>() is not ("concluded" or "null")))
            Thread.Sleep(SettlePollMs);
    }

    /// <summary>The graph as a client sees it: the reply's bytes, the edges with perms, the node list.</summary>
    private static Dictionary<string, string> Observe(QmpClient c, Peer p)
    {
        var seen = new Dictionary<string, string>();
        var exportIds = c.Execute("query-block-exports")["return"]!.AsArray().Select(x => x!["id"]!.GetValue<string>()).ToHashSet();
        var graphLine = c.ExecuteRaw("x-debug-query-block-graph");
        var graph = JsonNode.Parse(graphLine)!["return"]!.AsObject();
        // The reply's bytes too (member order, perm order, ids), export backends unnamed as in QEMU 7.2.
        foreach (var id in exportIds) graphLine = graphLine.Replace($"{{\"name\": \"{id}\", \"type\": \"block-backend\"", "{\"name\": \"\", \"type\": \"block-backend\"", StringComparison.Ordinal);
        seen["graph bytes"] = Norm(p, graphLine);
        var names = graph["nodes"]!.AsArray().ToDictionary(n => n!["id"]!.GetValue<int>(), n =>
        {
            var name = n!["name"]!.GetValue<string>();
            return n["type"]!.GetValue<string>() == "block-backend" ? "BB:" + (exportIds.Contains(name) ? "" : name) : name;
        });
        seen["edges"] = Norm(p, string.Join("\n      ", graph["edges"]!.AsArray().Select(x => x!.AsObject())
            .Select(x => $"{names[x["parent"]!.GetValue<int>()]} -[{x["name"]}: {Perms(x["perm"])} / {Perms(x["shared-perm"])}]-> {names[x["child"]!.GetValue<int>()]}")
            .Order(StringComparer.Ordinal)));
        // Every node as query-named-block-nodes shows it, byte for byte: names, drivers, file names, sizes, bitmaps.
        seen["nodes"] = Norm(p, c.ExecuteRaw("query-named-block-nodes", new JsonObject { ["flat"] = true }));
        return seen;
    }

    private static string Perms(JsonNode? list) =>
        list is JsonArray a && a.Count > 0 ? string.Join(",", a.Select(x => x!.GetValue<string>())) : "-";
}
