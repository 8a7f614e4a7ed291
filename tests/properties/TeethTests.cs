// The campaign's teeth: the engine is built with one deliberate bug at a time (EngineMutation, a
// test-only seam: an undo skipped, commit callbacks oldest first, a refresh after every action instead
// of once on the final graph, a shared-perm bit dropped in one driver, a guest write landing before
// copy-before-write copied the old data). For each, a campaign on the usual generator must find a
// divergence within a stated budget and shrink it to a short step list, which diverges on the mutant
// and replays cleanly on the real engine (so the bug found is the planted one).
using Verified.Impl.Engine;
using Verified.Oracle;
using Xunit;
using Xunit.Abstractions;

namespace Verified.Tests.Properties;

public class TeethTests(ITestOutputHelper output)
{
    /// <summary>Most steps a campaign may spend finding a planted bug.</summary>
    private const int Budget = 60_000;

    /// <summary>Longest shrunk step list accepted as "short".</summary>
    private const int ShortMax = 12;

    public static TheoryData<EngineMutation> Mutants() => [.. Enum.GetValues<EngineMutation>().Where(m => m != EngineMutation.None)];

    [Theory]
    [MemberData(nameof(Mutants))]
    public void Campaign_finds_and_shrinks_the_planted_bug(EngineMutation mutant)
    {
        var stats = new CampaignStats();
        var d = Campaign.Run(new CampaignOptions { Seed = 1, Steps = Budget, Mutation = mutant }, stats);
        Assert.True(d is not null, $"{mutant}: no divergence in {stats.Steps} steps");
        output.WriteLine($"{mutant}: found after about {stats.Steps} steps; replay {d.Replay}; shrunk from {d.Original} to {d.Commands.Count} steps");
        foreach (var c in d.Commands) output.WriteLine("  " + Scenario.Line(c));
        Assert.True(d.Commands.Count <= ShortMax, $"{mutant}: shrunk only to {d.Commands.Count} steps");
        Assert.NotNull(Campaign.Replay(d.Commands, mutant));
        Assert.Null(Campaign.Replay(d.Commands));
        Assert.Equal(WithoutStackFrames(d.Description), WithoutStackFrames(Campaign.ReplayString(d.Replay)?.Description));
    }

    /// <summary>
    /// A divergence's text without the stack frames of an exception it reports: the same failure (step,
    /// exception type, message) can be thrown from another line of the same undo log when a mutant
    /// reorders undo callbacks (a CI run once saw UndoLog.cs line 32 against 36).
    /// </summary>
    private static string? WithoutStackFrames(string? description) =>
        description is null ? null
            : string.Join('\n', description.Split('\n').Where(l => !l.TrimStart().StartsWith("at ", StringComparison.Ordinal)));
}
