using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Verified.Server.Json;

/// <summary>
/// Parses one complete token list into a value with QEMU's parser texts (<c>JSON parse error, …</c>).
/// The first error found wins, as in QEMU; the streamer bounds nesting, so recursion is bounded by
/// <see cref="JsonMessageStream.NestingDepthMax"/>.
/// </summary>
internal sealed class JsonTokenParser
{
    private readonly List<JsonToken> tokens;
    private int next;
    private string? error;

    private JsonTokenParser(List<JsonToken> tokens) => this.tokens = tokens;

    /// <summary>Parses <paramref name="tokens"/> (a whole message as the streamer cut it).</summary>
    public static JsonMessage Parse(List<JsonToken> tokens)
    {
        var p = new JsonTokenParser(tokens);
        var value = p.ParseValue();
        Debug.Assert(p.error is not null || p.next == tokens.Count, "a value that parsed consumed every token");
        return p.error is not null ? new JsonMessage(null, p.error) : new JsonMessage(value, null);
    }

    private void Fail(string message) => error ??= "JSON parse error, " + message;

    private JsonToken? Peek() => next < tokens.Count ? tokens[next] : null;

    private JsonToken? Pop() => next < tokens.Count ? tokens[next++] : null;

    private JsonNode? ParseValue()
    {
        if (Peek() is not { } t)
        {
            Fail("premature EOI");
            return null;
        }
        switch (t.Type)
        {
            case TokenType.LCurly: return ParseObject();
            case TokenType.LSquare: return ParseArray();
            case TokenType.Integer or TokenType.Float or TokenType.String: return ParseLiteral();
            case TokenType.Keyword: return ParseKeyword();
            default:
                Fail("expecting value");
                return null;
        }
    }

    private JsonObject? ParseObject()
    {
        Pop();
        var obj = new JsonObject();
        if (Peek() is not { } peek)
        {
            Fail("premature EOI");
            return null;
        }
        if (peek.Type == TokenType.RCurly)
        {
            Pop();
            return obj;
        }
        if (!ParsePair(obj)) return null;
        while (true)
        {
            if (Pop() is not { } t)
            {
                Fail("premature EOI");
                return null;
            }
            if (t.Type == TokenType.RCurly) return obj;
            if (t.Type != TokenType.Comma)
            {
                Fail("expected separator in dict");
                return null;
            }
            if (!ParsePair(obj)) return null;
        }
    }

    private bool ParsePair(JsonObject obj)
    {
        if (Peek() is null)
        {
            Fail("premature EOI");
            return false;
        }
        var key = ParseValue();
        if (key is not JsonValue kv || !kv.TryGetValue<string>(out var name))
        {
            Fail("key is not a string in object");
            return false;
        }
        if (Pop() is not { } colon)
        {
            Fail("premature EOI");
            return false;
        }
        if (colon.Type != TokenType.Colon)
        {
            Fail("missing : in object pair");
            return false;
        }
        var value = ParseValue();
        if (error is not null)
        {
            Fail("Missing value in dict");
            return false;
        }
        if (obj.ContainsKey(name))
        {
            Fail("duplicate key");
            return false;
        }
        obj[name] = value ?? JsonValue.Create((string?)null);
        return true;
    }

    private JsonArray? ParseArray()
    {
        Pop();
        var list = new JsonArray();
        if (Peek() is not { } peek)
        {
            Fail("premature EOI");
            return null;
        }
        if (peek.Type == TokenType.RSquare)
        {
            Pop();
            return list;
        }
        while (true)
        {
            var v = ParseValue();
            if (error is not null)
            {
                Fail("expecting value");
                return null;
            }
            list.Add(v);
            if (Pop() is not { } t)
            {
                Fail("premature EOI");
                return null;
            }
            if (t.Type == TokenType.RSquare) return list;
            if (t.Type != TokenType.Comma)
            {
                Fail("expected separator in list");
                return null;
            }
        }
    }

    private JsonValue? ParseKeyword()
    {
        var t = Pop()!.Value;
        var word = Encoding.ASCII.GetString(t.Text);
        switch (word)
        {
            case "true": return JsonValue.Create(true);
            case "false": return JsonValue.Create(false);
            // JSON null: JsonObject/JsonArray store it as a null reference; see JsonMessage.
            case "null": return null;
            default:
                Fail($"invalid keyword '{word}'");
                return null;
        }
    }

    private JsonValue? ParseLiteral()
    {
        var t = Pop()!.Value;
        if (t.Type == TokenType.String) return ParseString(t.Text);
        var text = Encoding.ASCII.GetString(t.Text);
        if (t.Type == TokenType.Integer)
        {
            // QEMU keeps an integer as int64 when it fits, else uint64, else a double.
            if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
            if (text[0] != '-' && ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var u)) return JsonValue.Create(u);
        }
        return JsonValue.Create(double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    private JsonValue? ParseString(byte[] text)
    {
        byte quote = text[0];
        var sb = new StringBuilder(text.Length);
        int p = 1;
        while (text[p] != quote)
        {
            if (text[p] == '\\')
            {
                int beg = p++;
                byte esc = text[p++];
                switch (esc)
                {
                    case (byte)'"': sb.Append('"'); break;
                    case (byte)'\'': sb.Append('\''); break;
                    case (byte)'\\': sb.Append('\\'); break;
                    case (byte)'/': sb.Append('/'); break;
                    case (byte)'b': sb.Append('\b'); break;
                    case (byte)'f': sb.Append('\f'); break;
                    case (byte)'n': sb.Append('\n'); break;
                    case (byte)'r': sb.Append('\r'); break;
                    case (byte)'t': sb.Append('\t'); break;
                    case (byte)'u':
                        long cp = Hex4(text, p);
                        p += 4;
                        if (cp is >= 0xD800 and <= 0xDBFF && p + 1 < text.Length && text[p] == '\\' && text[p + 1] == 'u')
                        {
                            // A leading surrogate followed by \u: only a trailing surrogate completes it.
                            long trailing = Hex4(text, p + 2);
                            if (trailing is >= 0xDC00 and <= 0xDFFF)
                            {
                                cp = 0x10000 + ((cp & 0x3FF) << 10) | (trailing & 0x3FF);
                                p += 6;
                            }
                            else
                            {
                                cp = -1;
                            }
                        }
                        if (!QemuText.IsValidCodepoint(cp))
                        {
                            int end = Math.Min(p, text.Length);
                            Fail($"{QemuText.FromCBytes(text.AsSpan(beg, end - beg))} is not a valid Unicode character");
                            return null;
                        }
                        sb.Append(char.ConvertFromUtf32((int)cp));
                        break;
                    default:
                        Fail("invalid escape sequence in string");
                        return null;
                }
                if (p >= text.Length) break;
                continue;
            }
            var (c, after) = QemuText.Decode(text, p);
            if (c < 0)
            {
                Fail("invalid UTF-8 sequence in string");
                return null;
            }
            sb.Append(char.ConvertFromUtf32(c));
            p = after;
        }
        return JsonValue.Create(sb.ToString());
    }

    private static int HexDigit(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    /// <summary>Four hex digits at <paramref name="at"/> as a number, or -1 (QEMU's cvt4hex).</summary>
    private static long Hex4(byte[] s, int at)
    {
        long cp = 0;
        for (int i = 0; i < 4; i++)
        {
            if (at + i >= s.Length || !char.IsAsciiHexDigit((char)s[at + i])) return -1;
            cp = (cp << 4) | (uint)HexDigit(s[at + i]);
        }
        return cp;
    }
}
