using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>Option values are kept as JSON text; reading them back is hot, so the plain cases skip the parser.</summary>
public static class JsonText
{
    /// <summary>The string a JSON string literal denotes; <see cref="InvalidOperationException"/> if the text is not a string.</summary>
    public static string String(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        // A literal without escapes denotes its inside; anything else goes through the parser.
        if (json.Length >= 2 && json[0] == '"' && json[^1] == '"' && json.AsSpan(1, json.Length - 2).IndexOfAny('\\', '"') < 0)
            return json[1..^1];
        return JsonNode.Parse(json)!.GetValue<string>();
    }
}
