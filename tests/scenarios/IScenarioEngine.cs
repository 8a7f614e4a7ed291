using System.Text.Json.Nodes;

namespace Verified.Tests.Scenarios;

/// <summary>One edge as scenarios name it: parent label, edge name, child node, perms in short form.</summary>
public sealed record EdgeView(string Parent, string Name, string Child, string Perm, string Shared);

/// <summary>
/// What a scenario needs of an engine: run a QMP request, show the graph. The model implements it now;
/// the implementation will too, so one scenario file checks both.
/// </summary>
public interface IScenarioEngine
{
    /// <summary>Runs one QMP request and returns the reply as QMP sends it.</summary>
    JsonObject Execute(JsonObject request);

    /// <summary>Every edge of the graph.</summary>
    IReadOnlyList<EdgeView> Edges();

    /// <summary>The number of nodes query-named-block-nodes lists.</summary>
    int NodeCount();

    /// <summary>Violated invariants (empty when consistent).</summary>
    IReadOnlyList<string> Invariants();

    /// <summary>Whether host steps (<c>run</c> lines, e.g. qemu-img create) must run: true for engines doing real I/O.</summary>
    bool RunsHostSteps { get; }
}
