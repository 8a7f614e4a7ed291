using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Scenario files as campaigns write and replay them: JSON lines, one QMP command each (what a QMP client
/// would send to real QEMU), plus Verified's own <c>io</c> and <c>fault</c> lines; <c>#</c> starts a
/// comment; <c>run</c> lines (host commands for real QEMU) are skipped. Pool files appear as
/// <c>@TMP@/a.img</c> so that a runner against real QEMU can place them.
/// </summary>
public static class Scenario
{
    /// <summary>The steps of a scenario file's text.</summary>
    public static List<Command> Parse(string text, string where = "scenario")
    {
        ArgumentNullException.ThrowIfNull(text);
        var commands = new List<Command>();
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#') || line.StartsWith("//", StringComparison.Ordinal)) continue;
            var o = JsonNode.Parse(Relocate(line, f => f))!.AsObject();
            if (o.ContainsKey("io")) commands.Add(IoStep.FromJson(o));
            else if (o.ContainsKey("fault")) commands.Add(FaultStep.FromJson(o));
            else if (o.ContainsKey("run-jobs")) commands.Add(JobRunStep.Instance);
            else if (o.ContainsKey("execute"))
            {
                var req = new JsonObject { ["execute"] = o["execute"]!.DeepClone() };
                if (o["arguments"] is { } a) req["arguments"] = a.DeepClone();
                var (c, err) = CommandParser.ParseRequest(req);
                if (err is not null) throw new ArgumentException($"{where}:{lineNo}: {err.Desc}");
                commands.Add(c!);
            }
        }
        return commands;
    }

    /// <summary>A step as a scenario-file line: QMP for commands, Verified's own line for I/O and faults.</summary>
    public static string Line(Command c) => c switch
    {
        IoStep io => io.ToJson().ToJsonString(),
        FaultStep f => f.ToJson().ToJsonString(),
        JobRunStep => JobRunStep.ToJson().ToJsonString(),
        _ => CommandWriter.ToQmp(c).ToJsonString(),
    };

    /// <summary>A scenario file: comment lines, pool-file creation, then one line per step.</summary>
    public static string Write(IEnumerable<string> comments, IEnumerable<Command> steps)
    {
        ArgumentNullException.ThrowIfNull(comments);
        ArgumentNullException.ThrowIfNull(steps);
        var sb = new StringBuilder();
        foreach (var c in comments)
            foreach (var line in c.Split('\n')) sb.Append("# ").AppendLine(line);
        foreach (var f in CommandGen.DefaultFiles)
            sb.AppendLine($"{{\"run\": [\"qemu-img\", \"create\", \"-f\", \"{Judge.PoolFormat(f)}\", \"@TMP@/{f}\", \"{Judge.PoolFileSize}\"]}}");
        sb.AppendLine($"{{\"run\": [\"qemu-img\", \"create\", \"-f\", \"qcow2\", \"-b\", \"{CommandGen.DefaultFiles[^1]}\", \"-F\", \"qcow2\", \"@TMP@/{CommandGen.ChainFile}\", \"{Judge.PoolFileSize}\"]}}");
        foreach (var c in steps) sb.AppendLine(Relocate(Line(c), f => "@TMP@/" + f));
        return sb.ToString();
    }

    /// <summary>Rewrites pool file names (bare or under <c>@TMP@/</c>) in a line with <paramref name="map"/>.</summary>
    public static string Relocate(string json, Func<string, string> map)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(map);
        foreach (var f in CommandGen.DefaultFiles.Append(CommandGen.ChainFile))
        {
            json = json.Replace($"\"@TMP@/{f}\"", $"\"{map(f)}\"", StringComparison.Ordinal)
                       .Replace($"\"{f}\"", $"\"{map(f)}\"", StringComparison.Ordinal);
        }
        return json;
    }

    /// <summary>
    /// The regression corpus: every shrunk divergence ever found (tests/regressions/*.jsonl, embedded in
    /// this assembly so that any campaign, wherever it runs, replays them first). Name and text, by name.
    /// </summary>
    public static IReadOnlyList<(string Name, string Text)> Corpus()
    {
        var asm = Assembly.GetExecutingAssembly();
        const string prefix = "regressions/";
        var list = new List<(string, string)>();
        foreach (var res in asm.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            using var s = asm.GetManifestResourceStream(res)!;
            using var r = new StreamReader(s);
            list.Add((res[prefix.Length..], r.ReadToEnd()));
        }
        return list;
    }
}
