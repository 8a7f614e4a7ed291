using System.Globalization;

namespace Verified.Cli.Bench;

/// <summary>
/// QEMU 7.2's number parsers as <c>qemu-img bench</c> uses them, so that the same argument is accepted
/// or refused with the same text: <c>qemu_strtoul</c> (C's strtoul with base 0, whole string) and
/// <c>qemu_strtosz</c> (decimal or hex bytes with an optional k/M/G/T/P/E suffix and a decimal fraction).
/// </summary>
public static class QemuNumbers
{
    /// <summary>The largest value an unsigned 64-bit C integer holds.</summary>
    private const ulong U64Max = ulong.MaxValue;

    /// <summary>
    /// <c>qemu_strtoul(text, NULL, 0, &amp;res)</c>: leading white space, an optional sign (a minus negates
    /// modulo 2^64, as strtoul does), 0x for hex, a leading 0 for octal, and nothing after the digits.
    /// Returns null where QEMU returns an error (empty, trailing characters, overflow).
    /// </summary>
    public static ulong? StrToUL(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int i = SkipSpace(text, 0);
        bool negative = false;
        if (i < text.Length && text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }
        int radix = 10;
        if (i + 1 < text.Length && text[i] == '0' && text[i + 1] is 'x' or 'X' && i + 2 < text.Length && Digit(text[i + 2], 16) >= 0)
        {
            radix = 16;
            i += 2;
        }
        else if (i < text.Length && text[i] == '0')
        {
            radix = 8;
        }
        var (value, end, overflow) = Digits(text, i, radix);
        if (end == i || end != text.Length || overflow) return null;
        return negative ? unchecked(0UL - value) : value;
    }

    /// <summary>The result of <see cref="StrToSz"/>: a value, or QEMU's kind of error.</summary>
    /// <param name="Value">The byte count (valid when <paramref name="Error"/> is <see cref="SizeError.None"/>).</param>
    /// <param name="Error">Why the text was refused.</param>
    /// <param name="HexSuffixWarning">True when QEMU warns that a suffix on a hex number is deprecated.</param>
    public readonly record struct SizeResult(ulong Value, SizeError Error, bool HexSuffixWarning);

    /// <summary>How <see cref="StrToSz"/> can fail: QEMU's -EINVAL and -ERANGE.</summary>
    public enum SizeError
    {
        /// <summary>Parsed.</summary>
        None,
        /// <summary>Not a size (QEMU's -EINVAL).</summary>
        Invalid,
        /// <summary>Too large for 64 bits (QEMU's -ERANGE).</summary>
        Range,
    }

    /// <summary>
    /// <c>qemu_strtosz(text, NULL, &amp;res)</c> as in QEMU 7.2: decimal digits (no minus anywhere in them),
    /// or 0x and hex digits with no fraction; a decimal fraction needs a suffix other than B; suffixes B, K,
    /// M, G, T, P, E (either case, powers of 1024); the fraction is kept to 64 bits and rounded half up.
    /// </summary>
    public static SizeResult StrToSz(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int start = SkipSpace(text, 0), i = start;
        if (i < text.Length && text[i] is '+' or '-')
        {
            // qemu_strtou64 accepts a sign; the caller then refuses any minus among the parsed characters.
            if (text[i] == '-') return new(0, SizeError.Invalid, false);
            i++;
        }
        var (val, end, overflow) = Digits(text, i, 10);
        if (end == i) return new(0, SizeError.Invalid, false);
        if (overflow) return new(0, SizeError.Range, false);
        bool hex = false;
        ulong fraction = 0;
        if (val == 0 && end < text.Length && text[end] is 'x' or 'X')
        {
            var (hv, hend, hoverflow) = Digits(text, end + 1, 16);
            if (hend == end + 1) return new(0, SizeError.Invalid, false);
            if (hoverflow) return new(0, SizeError.Range, false);
            if (hend < text.Length && text[hend] == '.') return new(0, SizeError.Invalid, false);
            (val, end, hex) = (hv, hend, true);
        }
        else if (end < text.Length && text[end] == '.')
        {
            int f = end + 1;
            while (f < text.Length && char.IsAsciiDigit(text[f])) f++;
            if (f < text.Length && text[f] is 'e' or 'E' && f + 1 < text.Length && (char.IsAsciiDigit(text[f + 1]) || text[f + 1] is '+' or '-'))
                return new(0, SizeError.Invalid, false); // an exponent makes the whole input invalid
            if (f > end + 1)
            {
                double d = double.Parse(text.AsSpan(end, f - end), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
                // (uint64_t)(fraction * 2^64): a fraction that rounds to 1.0 overflows, which x86 turns into 0.
                fraction = d >= 1.0 ? 0 : (ulong)(d * 18446744073709551616.0);
            }
            end = f;
        }
        ulong mul = end < text.Length ? SuffixMultiplier(text[end]) : 0;
        bool warn = false;
        if (mul > 0)
        {
            warn = hex;
            end++;
        }
        else
        {
            mul = 1;
        }
        if (end != text.Length) return new(0, SizeError.Invalid, false);
        if (mul == 1)
        {
            if (fraction != 0) return new(0, SizeError.Invalid, false);
            return new(val, SizeError.None, warn);
        }
        // 64.64 fixed point times the multiplier, rounded half up; anything past 64 bits is a range error.
        UInt128 whole = (UInt128)val * mul;
        UInt128 frac = (UInt128)fraction * mul;
        UInt128 total = whole + (frac >> 64) + ((frac >> 63) & 1);
        return total > U64Max ? new(0, SizeError.Range, false) : new((ulong)total, SizeError.None, warn);
    }

    /// <summary>QEMU's suffix_mul with unit 1024; 0 when the character is no suffix.</summary>
    private static ulong SuffixMultiplier(char c) => char.ToUpperInvariant(c) switch
    {
        'B' => 1,
        'K' => 1UL << 10,
        'M' => 1UL << 20,
        'G' => 1UL << 30,
        'T' => 1UL << 40,
        'P' => 1UL << 50,
        'E' => 1UL << 60,
        _ => 0,
    };

    private static int SkipSpace(string s, int i)
    {
        while (i < s.Length && s[i] is ' ' or '\t' or '\n' or '\r' or '\v' or '\f') i++;
        return i;
    }

    private static int Digit(char c, int radix)
    {
        int d = c is >= '0' and <= '9' ? c - '0' : c is >= 'a' and <= 'f' ? c - 'a' + 10 : c is >= 'A' and <= 'F' ? c - 'A' + 10 : -1;
        return d < radix ? d : -1;
    }

    /// <summary>Reads digits of <paramref name="radix"/> from <paramref name="i"/>: the value, where they end, and whether it overflowed 64 bits.</summary>
    private static (ulong Value, int End, bool Overflow) Digits(string s, int i, int radix)
    {
        ulong v = 0;
        bool overflow = false;
        for (; i < s.Length && Digit(s[i], radix) is var d and >= 0; i++)
        {
            UInt128 next = (UInt128)v * (uint)radix + (uint)d;
            if (next > U64Max) overflow = true;
            else v = (ulong)next;
        }
        return (v, i, overflow);
    }
}
