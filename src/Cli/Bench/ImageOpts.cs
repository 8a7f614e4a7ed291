using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Verified.Cli.Bench;

/// <summary>
/// An <c>--image-opts</c> string (<c>driver=raw,file.driver=null-co,file.size=1G</c>) as blockdev-add
/// arguments: dotted keys become nested objects, <c>,,</c> is a literal comma, and values are typed the
/// way QEMU's option visitor would read them for the options the benchmark uses (integers, sizes with a
/// suffix on <c>size</c>-like keys, on/off and true/false booleans); anything else stays a string.
/// </summary>
public static class ImageOpts
{
    /// <summary>Parses the option string; throws <see cref="BenchError"/> on a malformed one.</summary>
    public static JsonObject Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var root = new JsonObject();
        foreach (var (key, value) in Split(text))
        {
            var parts = key.Split('.');
            JsonObject at = root;
            foreach (var p in parts[..^1])
            {
                if (at[p] is not JsonObject child)
                {
                    if (at.ContainsKey(p)) throw new BenchError($"Parameter '{key}' conflicts with '{p}'");
                    child = new JsonObject();
                    at[p] = child;
                }
                at = child;
            }
            at[parts[^1]] = Typed(parts[^1], value);
        }
        return root;
    }

    /// <summary>Every <c>driver</c> named anywhere in the tree, top first.</summary>
    public static IEnumerable<string> Drivers(JsonObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o["driver"] is JsonValue v && v.TryGetValue<string>(out var d)) yield return d;
        foreach (var (_, child) in o)
        {
            if (child is JsonObject c)
                foreach (var x in Drivers(c)) yield return x;
        }
    }

    private static IEnumerable<(string Key, string Value)> Split(string text)
    {
        var sb = new StringBuilder();
        var items = new List<string>();
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == ',')
            {
                if (i + 1 < text.Length && text[i + 1] == ',')
                {
                    sb.Append(',');
                    i++;
                    continue;
                }
                items.Add(sb.ToString());
                sb.Clear();
                continue;
            }
            sb.Append(text[i]);
        }
        items.Add(sb.ToString());
        foreach (var item in items)
        {
            if (item.Length == 0) continue;
            int eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0) throw new BenchError($"Expected '=' after parameter '{item}'");
            yield return (item[..eq], item[(eq + 1)..]);
        }
    }

    private static JsonValue Typed(string key, string value)
    {
        if (value is "on" or "true") return JsonValue.Create(true);
        if (value is "off" or "false") return JsonValue.Create(false);
        if (long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long n)) return JsonValue.Create(n);
        if (key.EndsWith("size", StringComparison.Ordinal) && QemuNumbers.StrToSz(value) is { Error: QemuNumbers.SizeError.None } s && s.Value <= long.MaxValue)
            return JsonValue.Create((long)s.Value); // the schema reads integers as signed 64-bit
        return JsonValue.Create(value);
    }
}
