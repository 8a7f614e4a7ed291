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
