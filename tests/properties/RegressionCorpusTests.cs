// Every divergence a campaign ever found, shrunk, is kept as a scenario file in tests/regressions/
// and replayed here on both engines before any random search: each must now run without divergence.
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Properties;

public class RegressionCorpusTests
{
    private static string Folder => Path.Combine(AppContext.BaseDirectory, "regressions");

    public static IEnumerable<object[]> Files() =>
        Directory.GetFiles(Folder, "*.jsonl").Select(Path.GetFileName).Order(StringComparer.Ordinal).Select(f => new object[] { f! });

    [Theory]
    [MemberData(nameof(Files))]
    public void Past_divergence_stays_fixed(string file)
    {
        var commands = new List<Command>();
        foreach (var raw in File.ReadAllLines(Path.Combine(Folder, file)))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var o = System.Text.Json.Nodes.JsonNode.Parse(line)!.AsObject();
            if (!o.ContainsKey("execute")) continue;
            var (c, err) = CommandParser.ParseRequest(o);
            Assert.Null(err);
            commands.Add(c!);
        }
        Assert.NotEmpty(commands);
        var d = Campaign.Replay(commands);
        Assert.True(d is null, $"{file}: {d}");
    }
}
