using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verified.Vocabulary;

/// <summary>The kind of a QAPI member, enough to validate QMP input the way QEMU's input visitor does.</summary>
public abstract record FieldType
{
    /// <summary>QAPI <c>str</c>.</summary>
    public static readonly FieldType Str = new Scalar("string");
    /// <summary>QAPI integer types.</summary>
    public static readonly FieldType Int = new Scalar("integer");
    /// <summary>QAPI <c>uint32</c>.</summary>
    public static readonly FieldType UInt32 = new Scalar("uint32_t");
    /// <summary>QAPI <c>bool</c>.</summary>
    public static readonly FieldType Bool = new Scalar("boolean");
    /// <summary>Any JSON value, kept as given (used where QEMU's own checks come later).</summary>
    public static readonly FieldType Any = new Scalar("any");

    /// <summary>A scalar with QAPI's expected-type word.</summary>
    public sealed record Scalar(string Expected) : FieldType;
    /// <summary>An enum with its accepted values.</summary>
    public sealed record Enum(string[] Values) : FieldType;
    /// <summary>A nested struct.</summary>
    public sealed record Struct(Field[] Fields) : FieldType;
    /// <summary>A list of one element type.</summary>
    public sealed record List(FieldType Element) : FieldType;
}

/// <summary>One member of a QAPI struct: name, type, and whether it is optional.</summary>
public sealed record Field(string Name, FieldType Type, bool Optional = true);

/// <summary>
/// Validation of JSON input against <see cref="Field"/> lists with QEMU's error texts and order:
/// members are visited in schema order (first missing or mistyped member wins), then unexpected
/// members are reported.
/// </summary>
public static class SchemaCheck
{
    /// <summary>Joins a member path the way QEMU's visitor names nested members (<c>file.filename</c>, <c>options[0]</c>).</summary>
    public static string Path(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    /// <summary>Checks one struct's members (not unexpected keys). Returns the first error or null.</summary>
    public static QmpError? CheckFields(JsonObject obj, IEnumerable<Field> fields, string prefix)
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentNullException.ThrowIfNull(fields);
        foreach (var f in fields)
        {
            var path = Path(prefix, f.Name);
            if (!obj.TryGetPropertyValue(f.Name, out var v))
            {
                if (!f.Optional) return QmpError.Generic($"Parameter '{path}' is missing");
                continue;
            }
            var err = CheckValue(v, f.Type, path);
            if (err is not null) return err;
        }
        return null;
    }

    /// <summary>Reports the first member of <paramref name="obj"/> that no field names (QEMU's "is unexpected").</summary>
    public static QmpError? CheckUnexpected(JsonObject obj, IEnumerable<string> allowed, string prefix)
    {
        ArgumentNullException.ThrowIfNull(obj);
        var set = allowed as ISet<string> ?? new HashSet<string>(allowed, StringComparer.Ordinal);
        foreach (var kv in obj)
        {
            if (!set.Contains(kv.Key)) return QmpError.Generic($"Parameter '{Path(prefix, kv.Key)}' is unexpected");
        }
        return null;
    }

    /// <summary>Checks one value against a type.</summary>
    public static QmpError? CheckValue(JsonNode? v, FieldType type, string path)
    {
        switch (type)
        {
            case FieldType.Scalar { Expected: "any" }:
                return null;
            case FieldType.Scalar { Expected: "uint32_t" }:
                if (!IsScalarOf(v, "integer")) return QmpError.Generic($"Invalid parameter type for '{path}', expected: integer");
                var u = v!.GetValue<long>();
                return u is >= 0 and <= uint.MaxValue ? null : QmpError.Generic($"Parameter '{path}' expects uint32_t");
            case FieldType.Scalar s:
                return IsScalarOf(v, s.Expected) ? null : QmpError.Generic($"Invalid parameter type for '{path}', expected: {s.Expected}");
            case FieldType.Enum e:
                if (!IsScalarOf(v, "string")) return QmpError.Generic($"Invalid parameter type for '{path}', expected: string");
                var text = v!.GetValue<string>();
                return e.Values.Contains(text, StringComparer.Ordinal) ? null : QmpError.Generic($"Parameter '{path}' does not accept value '{text}'");
            case FieldType.Struct st:
                if (v is not JsonObject o) return QmpError.Generic($"Invalid parameter type for '{path}', expected: object");
                return CheckFields(o, st.Fields, path) ?? CheckUnexpected(o, st.Fields.Select(f => f.Name), path);
            case FieldType.List l:
                if (v is not JsonArray a) return QmpError.Generic($"Invalid parameter type for '{path}', expected: array");
                for (int i = 0; i < a.Count; i++)
                {
                    var err = CheckValue(a[i], l.Element, $"{path}[{i}]");
                    if (err is not null) return err;
                }
                return null;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown field type");
        }
    }

    private static bool IsScalarOf(JsonNode? v, string expected)
    {
        if (v is not JsonValue jv) return false;
        var kind = jv.GetValueKind();
        return expected switch
        {
            "string" => kind == JsonValueKind.String,
            "boolean" => kind is JsonValueKind.True or JsonValueKind.False,
            "integer" => kind == JsonValueKind.Number && jv.TryGetValue<long>(out _),
            _ => false,
        };
    }

    /// <summary>Canonical compact JSON text of a value (keys in given order; used as an option's stored form).</summary>
    public static string Canonical(JsonNode? v) => v is null ? "null" : v.ToJsonString();
}
