using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>A QMP reply: a return value or an error.</summary>
public sealed record Reply(JsonNode? Return, QmpError? Error)
{
    /// <summary>The empty success <c>{"return": {}}</c>.</summary>
    public static Reply Ok() => new(new JsonObject(), null);

    /// <summary>True for a success.</summary>
    public bool IsOk => Error is null;

    /// <summary>The reply as QMP sends it.</summary>
    public JsonObject ToJson() => Error is null
        ? new JsonObject { ["return"] = Return?.DeepClone() ?? new JsonObject() }
        : new JsonObject { ["error"] = new JsonObject { ["class"] = Error.ClassName, ["desc"] = Error.Desc } };

    /// <inheritdoc/>
    public override string ToString() => ToJson().ToJsonString();
}
