using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Vocabulary;

namespace Verified.Tests.Scenarios;

/// <summary>The implementation as a scenario engine.</summary>
public sealed class ImplEngine : IScenarioEngine, IDisposable
{
    private readonly BlockEngine engine = new();

    /// <inheritdoc/>
    public JsonObject Execute(JsonObject request) => engine.Execute(request).ToJson();

    /// <inheritdoc/>
    public IReadOnlyList<EdgeView> Edges() =>
        [.. engine.Edges().Select(e => new EdgeView(e.Parent.GraphName, e.Name, e.Node.Name, Perms.Short(e.Perm), Perms.Short(e.Shared)))];

    /// <inheritdoc/>
    public bool RunsHostSteps => true;

    /// <inheritdoc/>
    public int NodeCount() => engine.Nodes.Count;

    /// <inheritdoc/>
    public IReadOnlyList<string> Invariants() => [];

    /// <inheritdoc/>
    public void Dispose() => engine.Dispose();
}
