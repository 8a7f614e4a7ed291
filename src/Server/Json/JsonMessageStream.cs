using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Verified.Server.Json;

/// <summary>One complete value read from a QMP byte stream, or the one error that replaced it.</summary>
/// <param name="Value">The parsed value when <paramref name="Error"/> is null; a null reference then stands for JSON <c>null</c>, as in <see cref="JsonObject"/>.</param>
/// <param name="Error">QEMU's text for the bad value (<c>JSON parse error, …</c>), or null.</param>
public sealed record JsonMessage(JsonNode? Value, string? Error)
{
    /// <summary>True when this message is an error reply rather than a value.</summary>
    public bool IsError => Error is not null;
}

/// <summary>
/// QEMU 7.2's streaming JSON reader for QMP: a byte-at-a-time lexer, a streamer that counts braces and
/// brackets to find where a message ends, and a parser run on each complete token list. Messages may
/// span reads and lines or share one; every complete bad value yields exactly one error message, and
/// a lexical error puts the lexer into recovery (skipping to the next structural or control byte), so
/// bad input never stalls the stream.
/// </summary>
/// <remarks>
/// The lexer accepts QEMU's extensions (single-quoted strings, <c>\'</c>) and leaves UTF-8 and escape
/// validation to the parser, as QEMU does, so the error texts match byte for byte. Not thread-safe:
/// one instance per connection.
/// </remarks>
public sealed class JsonMessageStream
{
    /// <summary>QEMU's bound on the bytes of all tokens of one message (and of one token): 64 MiB.</summary>
    public const long TokenSizeMax = 64L << 20;

    /// <summary>QEMU's bound on the tokens of one message.</summary>
    public const int TokenCountMax = 2 << 20;

    /// <summary>QEMU's bound on open braces plus brackets; depth 1024 is accepted, 1025 refused.</summary>
    public const int NestingDepthMax = 1024;

    private readonly List<byte> token = new(16);
    private readonly List<JsonToken> tokens = [];
    private readonly Action<JsonMessage> emit;
    private LexState state = LexState.Start;
    private int braceCount;
    private int bracketCount;
    private long tokenSize;

    /// <summary>Creates a stream that calls <paramref name="emit"/> once per complete value or error, in input order.</summary>
    public JsonMessageStream(Action<JsonMessage> emit)
    {
        ArgumentNullException.ThrowIfNull(emit);
        this.emit = emit;
    }

    /// <summary>True when no partial message is buffered (the lexer is between tokens and no value is open).</summary>
    public bool Idle => tokens.Count == 0 && token.Count == 0 && state is LexState.Start or LexState.Recovery;

    /// <summary>Feeds bytes from the stream; complete values are emitted before this returns.</summary>
    public void Feed(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes) FeedByte(b);
    }

    private void FeedByte(byte b)
    {
        bool consumed = false;
        while (!consumed)
        {
            var (next, lookahead) = Lexer.Next(state, b);
            consumed = !lookahead;
            if (consumed) token.Add(b);
            if (next >= LexState.FirstToken)
            {
                ProcessToken((TokenType)(next - LexState.FirstToken));
                token.Clear();
                next = LexState.Start;
            }
            else if (next == LexState.Error)
            {
                ProcessToken(TokenType.Error);
                token.Clear();
                next = LexState.Recovery;
            }
            else if (next is LexState.Start or LexState.Recovery)
            {
                token.Clear();
            }
            state = next;
        }
        Debug.Assert(state is not LexState.Error and < LexState.FirstToken, "between bytes the lexer rests in a state, never on a token or an error");
        if (token.Count > TokenSizeMax)
        {
            // One token alone outgrew the bound: hand it on as it is; the size check below refuses it.
            ProcessToken(TokenType.Oversized);
            token.Clear();
            state = LexState.Start;
        }
    }

    private void ProcessToken(TokenType type)
    {
        switch (type)
        {
            case TokenType.LCurly: braceCount++; break;
            case TokenType.RCurly: braceCount--; break;
            case TokenType.LSquare: bracketCount++; break;
            case TokenType.RSquare: bracketCount--; break;
            case TokenType.Error:
                Emit(new JsonMessage(null, $"JSON parse error, stray '{QemuText.FromCBytes([.. token])}'"));
                return;
        }
        string? limit = tokenSize + token.Count + 1 > TokenSizeMax ? "JSON token size limit exceeded"
            : tokens.Count + 1 > TokenCountMax ? "JSON token count limit exceeded"
            : braceCount + bracketCount > NestingDepthMax ? "JSON nesting depth limit exceeded"
            : null;
        if (limit is not null)
        {
            Emit(new JsonMessage(null, limit));
            return;
        }
        tokens.Add(new JsonToken(type, [.. token]));
        tokenSize += token.Count;
        Debug.Assert(tokens.Count <= TokenCountMax && tokenSize <= TokenSizeMax && braceCount + bracketCount <= NestingDepthMax, "a pending message stays within QEMU's bounds");
        if ((braceCount > 0 || bracketCount > 0) && braceCount >= 0 && bracketCount >= 0) return;
        Emit(JsonTokenParser.Parse(tokens));
    }

    private void Emit(JsonMessage message)
    {
        Debug.Assert(message.Error is null || message.Error.StartsWith("JSON ", StringComparison.Ordinal), "every stream error is one of QEMU's JSON texts");
        braceCount = 0;
        bracketCount = 0;
        tokens.Clear();
        tokenSize = 0;
        Debug.Assert(message.Value is null || message.Error is null, "a message is a value or an error, never both");
        emit(message);
    }
}
