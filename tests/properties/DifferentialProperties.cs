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
/// FsCheck property, with I/O and host faults, Z3 on the model's graph every 20 steps, and a coverage
/// floor per step kind.
/// </summary>
public class ShortCampaignTests
{
    /// <summary>Steps of the in-test campaign (a few seconds on two cores).</summary>
    private const int Steps = 12_000, RunLength = 60, CoverageFloor = 5;

    [Fact]
    public void Short_campaign_finds_no_divergence_and_covers_every_step_kind()
    {
        var stats = new CampaignStats();
        var o = new CampaignOptions { Seed = 7, Steps = Steps, RunLength = RunLength, Z3Every = 20 };
        var d = Campaign.Run(o, stats);
        Assert.True(d is null, d is null ? "" : $"replay: verified campaign --replay {d.Replay}\n{d.ScenarioText()}");
        Assert.Equal(Steps / RunLength, stats.Runs);
        Assert.Equal(Steps, stats.Steps);
        Assert.True(stats.Z3Checks >= Steps / 20, $"only {stats.Z3Checks} Z3 checks");
        Assert.True(stats.FaultsArmed > 0 && stats.FailedByFault > 0, $"faults armed {stats.FaultsArmed}, steps failed by them {stats.FailedByFault}");
        Assert.True(stats.Aborts > 0 && stats.RolledBack > stats.Aborts, $"rolled back {stats.RolledBack}, aborts {stats.Aborts}");
        Assert.Empty(stats.BelowFloor(CoverageFloor, Campaign.CoveredKinds));
    }

    [Fact]
    public void Shards_partition_the_runs_of_one_campaign()
    {
        var whole = new CampaignStats();
        var o = new CampaignOptions { Seed = 11, Steps = 600, RunLength = 60, Workers = 1 };
        Assert.Null(Campaign.Run(o, whole));
        var parts = new CampaignStats();
        for (int i = 0; i < 3; i++) Assert.Null(Campaign.Run(o with { ShardIndex = i, ShardCount = 3 }, parts));
        Assert.Equal(whole.Runs, parts.Runs);
        Assert.Equal(whole.Steps, parts.Steps);
        Assert.Equal(whole.Generated.OrderBy(k => k.Key), parts.Generated.OrderBy(k => k.Key));
        Assert.Equal(whole.Accepted.OrderBy(k => k.Key), parts.Accepted.OrderBy(k => k.Key));
    }

    [Fact]
    public void Replay_strings_round_trip()
    {
        var o = new CampaignOptions { RunLength = 45, Io = false, Z3Every = 7, Mutation = Impl.Engine.EngineMutation.WriteBeforeCopy };
        var (seed, back) = CampaignOptions.ParseReplay(o.ReplayOf(123));
        Assert.Equal(123, seed);
        Assert.Equal(o.ReplayOf(123), back.ReplayOf(123));
        Assert.Throws<ArgumentException>(() => CampaignOptions.ParseReplay("12"));
        Assert.Throws<ArgumentException>(() => CampaignOptions.ParseReplay("12/60/bogus"));
    }
}
