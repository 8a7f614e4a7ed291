using System.Globalization;
using System.Text;

namespace Verified.Proofs.Smt;

/// <summary>
/// Reads the model text Z3 prints for <c>(get-model)</c> (as in <see cref="SmtResult.Model"/>) and
/// the value texts it contains.
/// </summary>
/// <remarks>
/// Z3 4.8 prints a model as a list of definitions, one per declared symbol:
/// <code>
/// (
///   (define-fun y () (_ BitVec 4)
///     #x3)
///   (define-fun f ((x!0 Int)) Int
///     4)
/// )
/// </code>
/// Older versions put the symbol <c>model</c> first in the list; both forms are accepted.
/// </remarks>
public static class SmtModelParser
{
    /// <summary>
    /// The values of the model's constants (zero-arity <c>define-fun</c>s), by name. Functions with
    /// parameters and other entries (universes, comments) are skipped.
    /// </summary>
    /// <param name="modelText">Z3's output for <c>(get-model)</c>.</param>
    /// <returns>
    /// Name → value text, the value as one line with single spaces: <c>true</c>, <c>#x0b</c>,
    /// <c>#b0101</c>, <c>(_ bv11 4)</c>, <c>42</c>, <c>(- 3)</c>, <c>((as const (Array Int Int)) 0)</c>.
    /// Names written <c>|like this|</c> are returned without the bars.
    /// </returns>
    /// <exception cref="FormatException">The text is not a well-formed model.</exception>
    public static Dictionary<string, string> Parse(string modelText)
    {
        ArgumentNullException.ThrowIfNull(modelText);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (SExpr top in SExprReader.ReadAll(modelText))
        {
            // Tolerate a leading verdict ("sat") if the caller passed the whole transcript.
            if (top.Items is not { } entries)
            {
                continue;
            }

            int first = entries.Count > 0 && entries[0].IsAtom("model") ? 1 : 0;
            for (int i = first; i < entries.Count; i++)
            {
                if (entries[i].Items is { Count: 5 } def
                    && def[0].IsAtom("define-fun")
                    && def[1].Atom is { } name
                    && def[2].Items is { Count: 0 })
                {
                    values[Unquote(name)] = def[4].ToString();
                }
            }
        }

        return values;
    }

    /// <summary>
    /// The unsigned value of a bit-vector literal: <c>#x0b</c>, <c>#b0101</c> or <c>(_ bv11 4)</c>.
    /// </summary>
    /// <param name="valueText">A bit-vector value as Z3 prints it.</param>
    /// <returns>The value as an unsigned integer.</returns>
    /// <exception cref="FormatException">The text is not a bit-vector literal.</exception>
    /// <exception cref="OverflowException">The value does not fit in 64 bits.</exception>
    public static ulong ParseBitVector(string valueText)
    {
        ArgumentNullException.ThrowIfNull(valueText);
        return ParseBitVectorCore(valueText, throwOnError: true, out ulong value)
            ? value
            : throw new FormatException($"Not a bit-vector literal: '{valueText}'.");
    }

    /// <summary>Like <see cref="ParseBitVector"/>, without throwing.</summary>
    /// <param name="valueText">A bit-vector value as Z3 prints it.</param>
    /// <param name="value">The value, or 0 when the text is not a bit-vector literal of at most 64 bits of value.</param>
    /// <returns>Whether <paramref name="valueText"/> was read.</returns>
    public static bool TryParseBitVector(string? valueText, out ulong value)
    {
        value = 0;
        return valueText is not null && ParseBitVectorCore(valueText, throwOnError: false, out value);
    }

    private static bool ParseBitVectorCore(string valueText, bool throwOnError, out ulong value)
    {
        value = 0;
        string text = valueText.Trim();
        if (text.StartsWith("#x", StringComparison.Ordinal))
        {
            return Digits(text.AsSpan(2), 16, throwOnError, out value);
        }

        if (text.StartsWith("#b", StringComparison.Ordinal))
        {
            return Digits(text.AsSpan(2), 2, throwOnError, out value);
        }

        if (!text.StartsWith('('))
        {
            return false;
        }

        // (_ bvN W)
        List<SExpr> parsed;
        try
        {
            parsed = SExprReader.ReadAll(text);
        }
        catch (FormatException)
        {
            return false;
        }

        if (parsed is [{ Items: [{ Atom: "_" }, { Atom: { } bv }, { Atom: { } width }] }]
            && bv.StartsWith("bv", StringComparison.Ordinal)
            && width.Length > 0 && width.All(char.IsAsciiDigit))
        {
            return Digits(bv.AsSpan(2), 10, throwOnError, out value);
        }

        return false;
    }

    private static bool Digits(ReadOnlySpan<char> digits, int radix, bool throwOnError, out ulong value)
    {
        value = 0;
        if (digits.IsEmpty)
        {
            return false;
        }

        foreach (char c in digits)
        {
            int d = radix == 16
                ? (char.IsAsciiHexDigit(c) ? HexValue(c) : -1)
                : (c >= '0' && c < '0' + radix ? c - '0' : -1);
            if (d < 0)
            {
                return false;
            }

            // value * radix + d, checked against 64 bits.
            if (value > (ulong.MaxValue - (ulong)d) / (ulong)radix)
            {
                return throwOnError
                    ? throw new OverflowException($"Bit-vector value '{digits.ToString()}' (base {radix}) exceeds 64 bits.")
                    : false;
            }

            value = (value * (ulong)radix) + (ulong)d;
        }

        return true;
    }

    private static int HexValue(char c) =>
        c <= '9' ? c - '0' : (char.ToLowerInvariant(c) - 'a') + 10;

    private static string Unquote(string symbol) =>
        symbol.Length >= 2 && symbol[0] == '|' && symbol[^1] == '|' ? symbol[1..^1] : symbol;

    /// <summary>An S-expression: an atom or a list.</summary>
    private sealed class SExpr
    {
        private SExpr(string? atom, List<SExpr>? items)
        {
            Atom = atom;
            Items = items;
        }

        public string? Atom { get; }

        public List<SExpr>? Items { get; }

        public static SExpr OfAtom(string atom) => new(atom, null);

        public static SExpr OfList(List<SExpr> items) => new(null, items);

        public bool IsAtom(string text) => string.Equals(Atom, text, StringComparison.Ordinal);

        public override string ToString()
        {
            if (Atom is not null)
            {
                return Atom;
            }

            var sb = new StringBuilder();
            Write(sb);
            return sb.ToString();
        }

        private void Write(StringBuilder sb)
        {
            if (Atom is not null)
            {
                sb.Append(Atom);
                return;
            }

            sb.Append('(');
            for (int i = 0; i < Items!.Count; i++)
            {
                if (i > 0)
                {
                    sb.Append(' ');
                }

                Items[i].Write(sb);
            }

            sb.Append(')');
        }
    }

    /// <summary>Reads SMT-LIB2 S-expressions: symbols, numerals, <c>|quoted|</c> symbols, strings, <c>;</c> comments.</summary>
    private static class SExprReader
    {
        public static List<SExpr> ReadAll(string text)
        {
            var top = new List<SExpr>();
            var stack = new Stack<List<SExpr>>();
            int i = 0;
            while (i < text.Length)
            {
                char c = text[i];
                if (char.IsWhiteSpace(c))
                {
                    i++;
                }
                else if (c == ';')
                {
                    while (i < text.Length && text[i] != '\n')
                    {
                        i++;
                    }
                }
                else if (c == '(')
                {
                    stack.Push([]);
                    i++;
                }
                else if (c == ')')
                {
                    if (!stack.TryPop(out List<SExpr>? done))
                    {
                        throw new FormatException($"Unbalanced ')' at offset {i}.");
                    }

                    Add(SExpr.OfList(done));
                    i++;
                }
                else
                {
                    int start = i;
                    i = c switch
                    {
                        '|' => Closing(text, i, '|'),
                        '"' => StringEnd(text, i),
                        _ => SymbolEnd(text, i),
                    };
                    Add(SExpr.OfAtom(text[start..i]));
                }
            }

            if (stack.Count > 0)
            {
                throw new FormatException($"{stack.Count.ToString(CultureInfo.InvariantCulture)} unclosed '('.");
            }

            return top;

            void Add(SExpr e)
            {
                if (stack.TryPeek(out List<SExpr>? open))
                {
                    open.Add(e);
                }
                else
                {
                    top.Add(e);
                }
            }
        }

        /// <summary>The offset just past the closing delimiter of a token that starts at <paramref name="start"/>.</summary>
        private static int Closing(string text, int start, char delimiter)
        {
            int end = text.IndexOf(delimiter, start + 1);
            return end < 0
                ? throw new FormatException($"Unterminated {delimiter} at offset {start.ToString(CultureInfo.InvariantCulture)}.")
                : end + 1;
        }

        /// <summary>Strings escape a quote by doubling it (SMT-LIB 2.6).</summary>
        private static int StringEnd(string text, int start)
        {
            int i = start;
            while (true)
            {
                i = Closing(text, i, '"');
                if (i < text.Length && text[i] == '"')
                {
                    continue; // "" inside a string: keep going from the second quote.
                }

                return i;
            }
        }

        private static int SymbolEnd(string text, int start)
        {
            int i = start;
            while (i < text.Length && !char.IsWhiteSpace(text[i]) && text[i] is not ('(' or ')' or ';' or '"' or '|'))
            {
                i++;
            }

            return i;
        }
    }
}
