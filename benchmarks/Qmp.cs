using System.Text.Json.Nodes;
using Verified.Impl.Engine;

namespace Verified.Benchmarks;

/// <summary>Small helpers to drive the engine with QMP JSON in benchmark setups.</summary>
internal static class Qmp
{
    public static void Run(BlockEngine e, string json)
    {
        var r = e.Execute(JsonNode.Parse(json)!.AsObject());
        if (!r.IsOk) throw new InvalidOperationException($"{json} -> {r}");
    }
}

/// <summary>
/// The implementation and the model built side by side from the same QMP commands, for benchmarks that
/// compare them on one graph.
/// </summary>
internal sealed class BothEngines(bool withModel = true) : IDisposable
{
    /// <summary>The implementation.</summary>
    public BlockEngine Engine { get; } = new();

    /// <summary>The model (left initial when built without it).</summary>
    public Verified.Model.ModelState Model { get; private set; } = Verified.Model.ModelState.Initial;

    /// <summary>Runs one command on both; it must succeed.</summary>
    public void Apply(string json)
    {
        var req = JsonNode.Parse(json)!.AsObject();
        if (!Engine.Execute(req).IsOk) throw new InvalidOperationException(json);
        if (withModel) Model = Verified.Model.Machine.Apply(Model, req).State;
    }

    /// <summary><paramref name="n"/> null-co nodes <c>n{i}</c>, each under a raw node <c>r{i}</c>.</summary>
    public void AddRawOverNull(int n)
    {
        for (int i = 0; i < n; i++)
        {
            Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"n{{{i}}}"}}""");
            Apply($$$"""{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r{{{i}}}","file":"n{{{i}}}"}}""");
        }
    }

    /// <inheritdoc/>
    public void Dispose() => Engine.Dispose();
}
