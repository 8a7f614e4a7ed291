namespace Verified.Server.Json;

/// <summary>Token kinds the lexer hands to the streamer.</summary>
internal enum TokenType
{
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
    /// <summary>A byte that no token can start or continue; the partial token is its text.</summary>
    Error,
    /// <summary>A single token longer than <see cref="JsonMessageStream.TokenSizeMax"/>.</summary>
    Oversized,
}

/// <summary>One lexed token: its kind and its raw bytes (strings keep their quotes and escapes).</summary>
internal readonly record struct JsonToken(TokenType Type, byte[] Text);

/// <summary>Lexer states; values from <see cref="FirstToken"/> on stand for "emit this token type".</summary>
internal enum LexState
{
    Error,
    Recovery,
    DqStringEscape,
    DqString,
    SqStringEscape,
    SqString,
    Zero,
    ExpDigits,
    ExpSign,
    ExpE,
    Mantissa,
    MantissaDigits,
    Digits,
    Sign,
    Keyword,
    Start,
    FirstToken = 32,
}

/// <summary>
/// The transition function of QEMU's JSON lexer (RFC 8259 tokens plus single-quoted strings). A
/// "lookahead" transition ends a token without consuming the byte, which is then fed again from the
/// start state.
/// </summary>
internal static class Lexer
{
    private static (LexState, bool) Emit(TokenType t, bool lookahead = false) => (LexState.FirstToken + (int)t, lookahead);

    private static (LexState, bool) Go(LexState s) => (s, false);

    private static readonly (LexState, bool) Fail = (LexState.Error, false);

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    /// <summary>The next state for byte <paramref name="b"/> in <paramref name="s"/>, and whether the byte is only looked at.</summary>
    public static (LexState Next, bool Lookahead) Next(LexState s, byte b) => s switch
    {
        // After an error, skip to a byte where a new message may plausibly start.
        LexState.Recovery => b switch
        {
            (byte)'\t' => Go(LexState.Recovery),
            < 0x20 or >= 0xFE or (byte)'[' or (byte)']' or (byte)'{' or (byte)'}' or (byte)':' or (byte)',' => (LexState.Start, true),
            _ => Go(LexState.Recovery),
        },
        LexState.DqStringEscape => b is >= 0x20 and <= 0xFD ? Go(LexState.DqString) : Fail,
        LexState.DqString => b switch
        {
            (byte)'\\' => Go(LexState.DqStringEscape),
            (byte)'"' => Emit(TokenType.String),
            >= 0x20 and <= 0xFD => Go(LexState.DqString),
            _ => Fail,
        },
        LexState.SqStringEscape => b is >= 0x20 and <= 0xFD ? Go(LexState.SqString) : Fail,
        LexState.SqString => b switch
        {
            (byte)'\\' => Go(LexState.SqStringEscape),
            (byte)'\'' => Emit(TokenType.String),
            >= 0x20 and <= 0xFD => Go(LexState.SqString),
            _ => Fail,
        },
        LexState.Zero => IsDigit(b) ? Fail : b == '.' ? Go(LexState.Mantissa) : Emit(TokenType.Integer, true),
        LexState.ExpDigits => IsDigit(b) ? Go(LexState.ExpDigits) : Emit(TokenType.Float, true),
        LexState.ExpSign => IsDigit(b) ? Go(LexState.ExpDigits) : Fail,
        LexState.ExpE => b is (byte)'-' or (byte)'+' ? Go(LexState.ExpSign) : IsDigit(b) ? Go(LexState.ExpDigits) : Fail,
        LexState.MantissaDigits => IsDigit(b) ? Go(LexState.MantissaDigits)
            : b is (byte)'e' or (byte)'E' ? Go(LexState.ExpE) : Emit(TokenType.Float, true),
        LexState.Mantissa => IsDigit(b) ? Go(LexState.MantissaDigits) : Fail,
        LexState.Digits => IsDigit(b) ? Go(LexState.Digits)
            : b is (byte)'e' or (byte)'E' ? Go(LexState.ExpE)
            : b == '.' ? Go(LexState.Mantissa) : Emit(TokenType.Integer, true),
        LexState.Sign => b == '0' ? Go(LexState.Zero) : b is >= (byte)'1' and <= (byte)'9' ? Go(LexState.Digits) : Fail,
        LexState.Keyword => b is >= (byte)'a' and <= (byte)'z' ? Go(LexState.Keyword) : Emit(TokenType.Keyword, true),
        LexState.Start => b switch
        {
            (byte)'"' => Go(LexState.DqString),
            (byte)'\'' => Go(LexState.SqString),
            (byte)'0' => Go(LexState.Zero),
            >= (byte)'1' and <= (byte)'9' => Go(LexState.Digits),
            (byte)'-' => Go(LexState.Sign),
            (byte)'{' => Emit(TokenType.LCurly),
            (byte)'}' => Emit(TokenType.RCurly),
            (byte)'[' => Emit(TokenType.LSquare),
            (byte)']' => Emit(TokenType.RSquare),
            (byte)',' => Emit(TokenType.Comma),
            (byte)':' => Emit(TokenType.Colon),
            >= (byte)'a' and <= (byte)'z' => Go(LexState.Keyword),
            (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' => Go(LexState.Start),
            _ => Fail,
        },
        _ => throw new ArgumentOutOfRangeException(nameof(s), s, "not a lexer state"),
    };
}
