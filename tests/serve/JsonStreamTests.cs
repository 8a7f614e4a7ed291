using Verified.Vocabulary;
using System.Text;
using System.Text.Json.Nodes;
using Verified.Server.Json;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>
/// The streaming JSON reader against the texts QEMU 7.2 was observed to give
/// (qemu-7.2-observed.md, "QMP framing and envelope errors"): each input is fed whole, then again one
/// byte at a time, and must give the same messages both ways; the writer must reproduce QEMU's bytes.
/// </summary>
public class JsonStreamTests
{
    private static List<string> Messages(byte[] input, bool byteAtATime = false)
    {
        var got = new List<string>();
        var s = new JsonMessageStream(m => got.Add(m.IsError ? "error: " + m.Error : QmpJsonWriter.Write(m.Value)));
        if (byteAtATime)
        {
            foreach (var b in input) s.Feed([b]);
        }
        else
        {
            s.Feed(input);
        }
        return got;
    }

    private static List<string> Both(byte[] input)
    {
        var whole = Messages(input);
        Assert.Equal(whole, Messages(input, byteAtATime: true));
        return whole;
    }

    private static List<string> Both(string input) => Both(Encoding.UTF8.GetBytes(input));

    [Theory]
    [InlineData("{\"execute\u001b", "error: JSON parse error, stray '\"execute\u001b'")]
    [InlineData("{\"a\": 1}\u001b", "{\"a\": 1}|error: JSON parse error, stray '\u001b'")]
    [InlineData("}", "error: JSON parse error, expecting value")]
    [InlineData("]", "error: JSON parse error, expecting value")]
    [InlineData("\u0001", "error: JSON parse error, stray '\u0001'")]
    [InlineData("\0", "error: JSON parse error, stray ''")]
    [InlineData("012", "error: JSON parse error, stray '01'")]
    [InlineData("+1", "error: JSON parse error, stray '+'")]
    [InlineData("{\"a\": 1, \"a\": 2}", "error: JSON parse error, duplicate key")]
    [InlineData("{\"a\" 1}", "error: JSON parse error, missing : in object pair")]
    [InlineData("{1: 2}", "error: JSON parse error, key is not a string in object")]
    [InlineData("{\"a\": 1]", "error: JSON parse error, expected separator in dict")]
    [InlineData("[1 2]", "error: JSON parse error, expected separator in list")]
    [InlineData("nul ", "error: JSON parse error, invalid keyword 'nul'")]
    [InlineData("\"\\q\"", "error: JSON parse error, invalid escape sequence in string")]
    [InlineData("\"\\uD800\"", "error: JSON parse error, \\uD800 is not a valid Unicode character")]
    [InlineData("\"\\uFFFF\"", "error: JSON parse error, \\uFFFF is not a valid Unicode character")]
    public void Bad_input_gets_QEMUs_text(string input, string expected) =>
        Assert.Equal(expected.Split('|'), Both(input));

    /// <summary>Invalid UTF-8 inside a string is the parser's error; outside, the lexer's (shown as U+FFFD).</summary>
    [Fact]
    public void Invalid_utf8_gets_QEMUs_text()
    {
        Assert.Equal(["error: JSON parse error, invalid UTF-8 sequence in string"], Both([(byte)'"', 0xC3, 0x28, (byte)'"']));
        Assert.Equal(["error: JSON parse error, stray '\uFFFD'"], Both([0xFE]));
        // A byte-order mark: one error for its first byte, the rest skipped in recovery.
        Assert.Equal(["error: JSON parse error, stray '\uFFFD'"], Both([0xEF, 0xBB, 0xBF]));
    }

    [Fact]
    public void Messages_may_share_a_line_or_span_several()
    {
        Assert.Equal(["{\"a\": 1}", "{\"b\": [1, 2]}"], Both("{\"a\":1}{\"b\"\n:\n[1,\n2]}"));
        Assert.Equal(["1", "\"x\"", "true", "null"], Both("1 \"x\" true null "));
    }

    [Fact]
    public void Half_a_message_waits_for_the_rest()
    {
        var got = new List<JsonMessage>();
        var s = new JsonMessageStream(got.Add);
        s.Feed(Encoding.UTF8.GetBytes("{\"execute\": \"qu"));
        Assert.Empty(got);
        Assert.False(s.Idle);
        s.Feed(Encoding.UTF8.GetBytes("it\"}"));
        Assert.Equal("quit", Assert.Single(got).Value!["execute"]!.GetValue<string>());
        Assert.True(s.Idle);
    }

    /// <summary>Depth 1024 is accepted; 1025 is refused once, and the stream goes on.</summary>
    [Fact]
    public void Nesting_is_bounded_at_1024()
    {
        int max = JsonMessageStream.NestingDepthMax;
        var ok = Both(new string('[', max) + new string(']', max));
        Assert.Single(ok);
        Assert.DoesNotContain("error", ok[0], StringComparison.Ordinal);
        var bad = Both(new string('[', max + 1) + "\u0001{}");
        Assert.Equal("error: JSON nesting depth limit exceeded", bad[0]);
        Assert.Equal("{}", bad[^1]);
    }

    [Fact]
    public void Single_quotes_and_escapes_decode_as_QEMU_does()
    {
        Assert.Equal(["{\"a\": \"it's \\\"x\\\"\"}"], Both("{'a': 'it\\'s \"x\"'}"));
        Assert.Equal(["\"\\u00E9\\uD83D\\uDE00\""], Both("\"\u00e9\\ud83d\\ude00\""));
    }

    /// <summary>QEMU writes members in its hash-table order; these orders are as measured on 7.2.</summary>
    [Fact]
    public void Writer_orders_members_as_QEMU_does()
    {
        var version = new JsonObject { ["qemu"] = new JsonObject { ["major"] = 7, ["minor"] = 2, ["micro"] = 22 }, ["package"] = "p" };
        Assert.Equal("{\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"p\"}", QmpJsonWriter.Write(version));
        Assert.Equal("{\"return\": {}, \"id\": 1}", QmpJsonWriter.Write(new JsonObject { ["id"] = 1, ["return"] = new JsonObject() }));
        Assert.Equal("{\"id\": 1, \"error\": {\"class\": \"C\", \"desc\": \"d\"}}",
            QmpJsonWriter.Write(new JsonObject { ["error"] = new JsonObject { ["desc"] = "d", ["class"] = "C" }, ["id"] = 1 }));
        Assert.Equal("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"E\", \"data\": {}}",
            QmpJsonWriter.Write(new JsonObject { ["event"] = "E", ["data"] = new JsonObject(), ["timestamp"] = new JsonObject { ["microseconds"] = 2, ["seconds"] = 1 } }));
    }

    [Fact]
    public void Writer_escapes_as_QEMU_does()
    {
        Assert.Equal("\"a\\u0001\\u001B\\u007F\\u00E9\\uD83D\\uDE00\\n\\\"\\\\/\"", QmpJsonWriter.Write(JsonValue.Create("a\u0001\u001b\u007f\u00e9\U0001F600\n\"\\/")));
        Assert.Equal("0.10000000000000001", QmpJsonWriter.Write(JsonValue.Create(0.1)));
        Assert.Equal("1.0000000000000001e+300", QmpJsonWriter.Write(JsonValue.Create(1e300)));
        Assert.Equal("1.0000000000000001e-05", QmpJsonWriter.Write(JsonValue.Create(1e-5)));
        Assert.Equal("1.5", QmpJsonWriter.Write(JsonValue.Create(1.5)));
        Assert.Equal("18446744073709551615", QmpJsonWriter.Write(JsonValue.Create(ulong.MaxValue)));
    }
}
