using System.Text.Json.Nodes;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Tests.Scenarios;

/// <summary>The model as a scenario engine.</summary>
public sealed class ModelEngine : IScenarioEngine
{
    /// <summary>The current state.</summary>
    public ModelState State { get; private set; } = ModelState.Initial;

    /// <inheritdoc/>
    public JsonObject Execute(JsonObject request)
    {
        var (next, reply) = Machine.Apply(State, request);
        State = next;
        return reply.ToJson();
    }

    /// <inheritdoc/>
    public IReadOnlyList<EdgeView> Edges()
    {
        var g = State.Graph;
        return [.. g.Edges.Select(e => new EdgeView(g.GraphName(e.Parent), e.Name, e.Child, Perms.Short(e.Perm), Perms.Short(e.Shared)))];
    }

    /// <inheritdoc/>
    public bool RunsHostSteps => false;

    /// <inheritdoc/>
    public int NodeCount() => State.Graph.Nodes.Count;

    /// <inheritdoc/>
    public IReadOnlyList<string> Invariants() => Model.Invariants.Check(State.Graph);
}
