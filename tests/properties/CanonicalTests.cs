// The campaign's fast path compares states field by field (Canonical.Same) and builds the canonical
// texts only at samples and to show a difference. This checks the two comparisons agree: along random
// runs on the real engine (where states agree) and on every planted-bug engine (where they come apart),
// at every step, Same(model, impl) must equal "the two canonical texts are equal".
using Verified.Impl.Engine;
using Verified.Oracle;
using Xunit;

namespace Verified.Tests.Properties;

public class CanonicalTests
{
    /// <summary>Runs per engine variant, and steps per run.</summary>
    private const int Runs = 25, Steps = 60;

    [Fact]
    public void Field_by_field_comparison_agrees_with_the_canonical_texts()
    {
        int differing = 0, agreeing = 0;
        foreach (var mutant in Enum.GetValues<EngineMutation>())
        {
            for (int seed = 1; seed <= Runs; seed++)
            {
                using var judge = new Judge(mutant);
                var rnd = new Random(seed);
                var gen = new CommandGen(rnd.Next, io: true, faults: true);
                for (int i = 0; i < Steps; i++)
                {
                    var c = gen.Next(judge.Model);
                    judge.Step(c); // divergences are expected on mutants; the states are what is compared here
                    bool texts = Canonical.Of(judge.Model) == Canonical.Of(judge.Impl);
                    Assert.True(texts == Canonical.Same(judge.Model, judge.Impl), $"{mutant} seed {seed} step {i}: texts equal {texts}, Same says otherwise\n{Scenario.Line(c)}");
                    if (texts) agreeing++;
                    else differing++;
                }
            }
        }
        Assert.True(differing > 0 && agreeing > 0, $"both outcomes must occur: {agreeing} equal, {differing} different");
    }
}
