// The implementation against the model: random command sequences (CommandGen, the same generator the
// model properties use) run on both engines side by side; after every step the replies must be equal
// byte for byte, the canonical states equal, and the query replies equal. A failure prints the
// divergence and the shrunk command list as QMP lines; FsCheck prints the seed that regenerates it.
using FsCheck.Xunit;
using Verified.Oracle;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.Properties;

public class DifferentialProperties
{
    /// <summary>The implementation equals the model after every step of any command sequence.</summary>
    [Property(MaxTest = 300)]
    public void Impl_equals_Model_after_every_step(int[] choices)
    {
        using var judge = new Judge();
        int used = 0;
        var pick = ModelProperties.Picker(choices);
        var gen = new CommandGen(n => { used++; return pick(n); }, judge.Files);
        var log = new List<Command>();
        while (used < choices.Length)
        {
            var c = gen.Next(judge.Model);
            log.Add(c);
            var d = judge.Step(c);
            Assert.True(d is null, ModelProperties.Report(d ?? "", log));
        }
    }
}

/// <summary>
/// A short, fixed-seed campaign in every test run: the same engine pair, longer sequences than the
/// FsCheck property, Z3 on the model's graph every 20 steps, and a coverage floor per command kind.
/// </summary>
public class ShortCampaignTests
{
    /// <summary>Runs and steps of the in-test campaign (about ten seconds on two cores).</summary>
    private const int Runs = 150, Steps = 60, CoverageFloor = 5;

    [Fact]
    public void Short_campaign_finds_no_divergence_and_covers_every_command_kind()
    {
        var stats = new CampaignStats();
        var d = Campaign.Run(new CampaignOptions(Seed: 7, Runs, Steps, TimeSpan.FromMinutes(5), Z3Every: 20), stats);
        Assert.True(d is null, d is null ? "" : $"replay: verified campaign --replay {d.Replay}\n{d.ScenarioText()}");
        Assert.Equal(Runs, stats.Runs);
        Assert.True(stats.Z3Checks >= Runs * (Steps / 20), $"only {stats.Z3Checks} Z3 checks");
        Assert.Empty(stats.BelowFloor(CoverageFloor, Campaign.CoveredKinds));
    }
}
