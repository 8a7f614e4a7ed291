using System.Text;

namespace Verified.Server.Json;

/// <summary>
/// QEMU's view of text: C strings in modified UTF-8 (NUL written as <c>C0 80</c>; overlong forms,
/// surrogates and noncharacters invalid), decoded one sequence at a time.
/// </summary>
internal static class QemuText
{
    /// <summary>Longest sequence QEMU's decoder looks at.</summary>
    private const int SequenceLengthMax = 6;

    private static readonly int[] MinCodepoint = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

    /// <summary>Whether QEMU accepts <paramref name="cp"/> as a character (not a surrogate, noncharacter or beyond U+10FFFF).</summary>
    public static bool IsValidCodepoint(long cp) =>
        cp is >= 0 and <= 0x10FFFF
        && !(cp is >= 0xFDD0 and <= 0xFDEF || (cp & 0xFFFE) == 0xFFFE)
        && !(cp is >= 0xD800 and <= 0xDFFF);

    /// <summary>
    /// Decodes one sequence at <paramref name="pos"/>; returns the code point or -1, and the position
    /// after what was consumed (a missing continuation byte is not consumed).
    /// </summary>
    public static (int Codepoint, int End) Decode(ReadOnlySpan<byte> s, int pos)
    {
        if (pos >= s.Length || s[pos] == 0) return (-1, pos);
        int n = Math.Min(SequenceLengthMax, s.Length - pos);
        int p = pos;
        int first = s[p++];
        if (first < 0x80) return (first, p);
        if (first >= 0xFE || (first & 0x40) == 0) return (-1, p);
        int len = 0, mask;
        for (mask = 0x80; (first & mask) != 0; mask >>= 1) len++;
        long cp = first & (mask - 1);
        for (int i = 1; i < len; i++)
        {
            int b = i < n ? s[p] : 0;
            if ((b & 0xC0) != 0x80) return (-1, p);
            p++;
            cp = (cp << 6) | (uint)(b & 0x3F);
        }
        if (!IsValidCodepoint(cp)) return (-1, p);
        if (cp < MinCodepoint[len - 2] && !(cp == 0 && len == 2)) return (-1, p);
        return ((int)cp, p);
    }

    /// <summary>A C string as QEMU would print it: up to the first NUL, each invalid sequence as U+FFFD.</summary>
    public static string FromCBytes(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        int pos = 0;
        while (pos < bytes.Length && bytes[pos] != 0)
        {
            var (cp, end) = Decode(bytes, pos);
            sb.Append(char.ConvertFromUtf32(cp < 0 ? 0xFFFD : cp));
            pos = end > pos ? end : pos + 1;
        }
        return sb.ToString();
    }
}
