// Every divergence a campaign ever found, shrunk, is kept as a scenario file in tests/regressions/
// (embedded in the oracle, so campaigns replay them first too) and replayed here on both engines:
// each must now run without divergence.
using Verified.Oracle;
using Xunit;

namespace Verified.Tests.Properties;

public class RegressionCorpusTests
{
    public static IEnumerable<object[]> Names() => Scenario.Corpus().Select(c => new object[] { c.Name });

    [Fact]
    public void The_corpus_is_embedded_and_holds_every_file_of_the_folder()
    {
        var onDisk = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "regressions"), "*.jsonl").Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Assert.Equal(onDisk, Scenario.Corpus().Select(c => c.Name));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Past_divergence_stays_fixed(string name)
    {
        var (_, text) = Scenario.Corpus().Single(c => c.Name == name);
        var steps = Scenario.Parse(text, name);
        Assert.NotEmpty(steps);
        var d = Campaign.Replay(steps);
        Assert.True(d is null, $"{name}: {d}");
    }
}
