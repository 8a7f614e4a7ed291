using System.Text.Json.Nodes;

namespace Verified.Tests.Scenarios;

/// <summary>One line of a scenario file (shared/DECISIONS.md §6), with Verified's extra expectations.</summary>
/// <param name="Line">1-based line number in the file, for failure messages.</param>
/// <param name="Json">The whole line.</param>
public sealed record ScenarioStep(int Line, JsonObject Json)
{
    /// <summary>True for a QMP command line (others are host steps, pauses and comments).</summary>
    public bool IsQmp => Json.ContainsKey("execute");

    /// <summary>The request as a QMP client sends it: <c>execute</c> and <c>arguments</c>, with @TMP@ substituted.</summary>
    public JsonObject Request(string tmp)
    {
        var r = new JsonObject { ["execute"] = Json["execute"]!.DeepClone() };
        if (Json["arguments"] is JsonNode a) r["arguments"] = JsonNode.Parse(a.ToJsonString().Replace("@TMP@", tmp, StringComparison.Ordinal));
        return r;
    }

    /// <summary>A string member, or null.</summary>
    public string? Str(string key) => Json[key] is JsonValue v ? v.GetValue<string>() : null;

    /// <summary>A compact text of the step for messages.</summary>
    public override string ToString() => $"line {Line}: {Json.ToJsonString()}";
}

/// <summary>Reads scenario files: JSON lines, blank lines and <c>#</c> / <c>//</c> comments skipped.</summary>
public static class ScenarioFile
{
    /// <summary>The folder holding the scenario files, copied next to the test assembly.</summary>
    public static string Folder => Path.Combine(AppContext.BaseDirectory, "cases");

    /// <summary>Every scenario file name (without folder), sorted.</summary>
    public static IEnumerable<object[]> All() =>
        Directory.GetFiles(Folder, "*.jsonl").Select(Path.GetFileName).Order(StringComparer.Ordinal).Select(f => new object[] { f! });

    /// <summary>Parses one file.</summary>
    public static IReadOnlyList<ScenarioStep> Load(string name)
    {
        var steps = new List<ScenarioStep>();
        var lines = File.ReadAllLines(Path.Combine(Folder, name));
        for (int i = 0; i < lines.Length; i++)
        {
            var t = lines[i].Trim();
            if (t.Length == 0 || t.StartsWith('#') || t.StartsWith("//", StringComparison.Ordinal)) continue;
            var node = JsonNode.Parse(t) as JsonObject ?? throw new FormatException($"{name}:{i + 1}: not a JSON object");
            steps.Add(new ScenarioStep(i + 1, node));
        }
        return steps;
    }
}
