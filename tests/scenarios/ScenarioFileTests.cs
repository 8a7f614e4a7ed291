// Each file in cases/ is a QMP scenario (JSON lines, the form a QMP client sends) with inline
// expectations taken from QEMU's tests, the series' tests and the measured facts in
// shared/reference. Every file runs on the model here; every step's reply, edges, perms and texts
// must match, and the model's invariants must hold after each step. Every file runs on the
// implementation too, with the same expectations: one scenario, two engines. The same files run against real
// QEMU with shared/tools/qmp_peer.py wherever they use no command of the series.
using Xunit;

namespace Verified.Tests.Scenarios;

public class ScenarioFileTests
{
    public static IEnumerable<object[]> Files() => ScenarioFile.All();

    /// <summary>The scenario holds on the model, step by step.</summary>
    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario_holds_on_the_model(string file)
    {
        var failures = ScenarioRunner.Run(new ModelEngine(), ScenarioFile.Load(file));
        Assert.True(failures.Count == 0, ScenarioRunner.Report(file, failures));
    }

    /// <summary>The same scenario holds on the implementation: same replies, texts, edges and perms.</summary>
    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario_holds_on_the_implementation(string file)
    {
        using var engine = new ImplEngine();
        var failures = ScenarioRunner.Run(engine, ScenarioFile.Load(file));
        Assert.True(failures.Count == 0, ScenarioRunner.Report(file, failures));
    }

    /// <summary>The folder is not empty, so a packaging mistake cannot pass as "no scenario failed".</summary>
    [Fact]
    public void Scenario_folder_holds_the_expected_files()
    {
        Assert.True(Files().Count() >= 8, $"only {Files().Count()} scenario files in {ScenarioFile.Folder}");
    }
}
