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
