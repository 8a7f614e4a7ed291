using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>
/// Writes values the way QEMU 7.2's monitor does, byte for byte: <c>{"k": v, "k2": v}</c>, members in
/// QEMU's hash-table order, every non-ASCII or control character as an upper-case <c>\uXXXX</c>.
/// </summary>
/// <remarks>
/// QEMU keeps JSON objects in a hash table of <see cref="DictBuckets"/> buckets and writes them in
/// bucket order, newest member first within a bucket; matching that order makes Verified's replies
/// identical to QEMU's rather than merely equivalent (<c>{"return": {}, "id": 1}</c> but
/// <c>{"id": 1, "error": …}</c>). Thread-safe: stateless.
/// </remarks>
public static class QmpJsonWriter
{
    /// <summary>Buckets in QEMU's dictionary (QDICT_BUCKET_MAX).</summary>
    public const int DictBuckets = 512;

    /// <summary>QEMU's compact JSON text of <paramref name="value"/> (null writes <c>null</c>).</summary>
    public static string Write(JsonNode? value)
    {
        var sb = new StringBuilder();
        Write(sb, value);
        return sb.ToString();
    }

    /// <summary>The members of <paramref name="obj"/> in the order QEMU would write them.</summary>
    public static IEnumerable<KeyValuePair<string, JsonNode?>> DictOrder(JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return obj.Select((kv, i) => (kv, i))
            .OrderBy(x => Bucket(x.kv.Key))
            .ThenByDescending(x => x.i)
            .Select(x => x.kv);
    }

    /// <summary>QEMU's bucket for a key: the TDB hash of its bytes, modulo <see cref="DictBuckets"/>.</summary>
    public static int Bucket(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var bytes = ModifiedUtf8(key);
        uint value = unchecked(0x238F13AFu * (uint)bytes.Length);
        for (int i = 0; i < bytes.Length; i++) value = unchecked(value + ((uint)bytes[i] << (i * 5 % 24)));
        int bucket = (int)(unchecked((1103515243u * value) + 12345u) % DictBuckets);
        System.Diagnostics.Debug.Assert(bucket is >= 0 and < DictBuckets, "a bucket index is within the table");
        return bucket;
    }

    private static byte[] ModifiedUtf8(string s) =>
        s.Contains('\0', StringComparison.Ordinal)
            ? [.. Encoding.UTF8.GetBytes(s).SelectMany(b => b == 0 ? new byte[] { 0xC0, 0x80 } : [b])]
            : Encoding.UTF8.GetBytes(s);

    private static void Write(StringBuilder sb, JsonNode? v)
    {
        switch (v)
        {
            case null:
                sb.Append("null");
                break;
            case JsonObject o:
                sb.Append('{');
                bool first = true;
                foreach (var kv in DictOrder(o))
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteString(sb, kv.Key);
                    sb.Append(": ");
                    Write(sb, kv.Value);
                }
                sb.Append('}');
                break;
            case JsonArray a:
                sb.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    Write(sb, a[i]);
                }
                sb.Append(']');
                break;
            case JsonValue jv:
                WriteScalar(sb, jv);
                break;
        }
    }

    private static void WriteScalar(StringBuilder sb, JsonValue jv)
    {
        switch (jv.GetValueKind())
        {
            case JsonValueKind.String: WriteString(sb, jv.GetValue<string>()); break;
            case JsonValueKind.True: sb.Append("true"); break;
            case JsonValueKind.False: sb.Append("false"); break;
            case JsonValueKind.Null: sb.Append("null"); break;
            case JsonValueKind.Number:
                // A JsonValue converts only to the CLR type it holds: try the integer types QEMU has first.
                if (jv.TryGetValue<long>(out var l)) sb.Append(l.ToString(CultureInfo.InvariantCulture));
                else if (jv.TryGetValue<ulong>(out var u)) sb.Append(u.ToString(CultureInfo.InvariantCulture));
                else if (jv.TryGetValue<double>(out var d)) sb.Append(FormatDouble(d));
                else sb.Append(jv.ToJsonString()); // int, uint and other CLR numbers print as plain integers
                break;
            default:
                throw new ArgumentException($"cannot write a JSON value of kind {jv.GetValueKind()}", nameof(jv));
        }
    }

    /// <summary>C's <c>%.17g</c>, which QEMU uses for doubles.</summary>
    internal static string FormatDouble(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        return d.ToString("G17", CultureInfo.InvariantCulture).Replace('E', 'e');
    }

    private static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        for (int i = 0; i < s.Length; i++)
        {
            int cp = s[i];
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cp = char.ConvertToUtf32(s[i], s[i + 1]);
                i++;
            }
            else if (char.IsSurrogate(s[i]))
            {
                cp = 0xFFFD; // a lone surrogate is not a character: QEMU writes the replacement character
            }
            switch (cp)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case > 0xFFFF:
                    sb.Append(CultureInfo.InvariantCulture, $"\\u{0xD800 + ((cp - 0x10000) >> 10):X4}\\u{0xDC00 + ((cp - 0x10000) & 0x3FF):X4}");
                    break;
                case < 0x20 or >= 0x7F:
                    sb.Append(CultureInfo.InvariantCulture, $"\\u{cp:X4}");
                    break;
                default:
                    sb.Append((char)cp);
                    break;
            }
        }
        sb.Append('"');
    }
}
