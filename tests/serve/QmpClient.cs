using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Verified.Tests.Serve;

/// <summary>
/// A plain QMP client over a unix socket, for tests: raw bytes out, CRLF-terminated lines in. It
/// knows nothing of Verified, so it drives QEMU and <c>verified serve</c> alike.
/// </summary>
public sealed class QmpClient : IDisposable
{
    /// <summary>How long a test waits for any one line.</summary>
    public static readonly TimeSpan LineTimeout = TimeSpan.FromSeconds(20);

    private readonly Socket socket;
    private readonly List<byte> pending = [];
    private int nextId;

    private QmpClient(Socket socket, string greeting)
    {
        this.socket = socket;
        Greeting = greeting;
    }

    /// <summary>The greeting line, as received.</summary>
    public string Greeting { get; }

    /// <summary>Events received while waiting for replies, in order (raw lines).</summary>
    public List<string> Events { get; } = [];

    /// <summary>Connects (retrying while the server starts) and reads the greeting.</summary>
    public static QmpClient Connect(string path, Func<bool>? alive = null)
    {
        var deadline = DateTime.UtcNow + LineTimeout;
        while (true)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                s.Connect(new UnixDomainSocketEndPoint(path));
                s.ReceiveTimeout = (int)LineTimeout.TotalMilliseconds;
                var c = new QmpClient(s, "");
                var greeting = c.ReadLine() ?? throw new IOException("no greeting");
                var client = new QmpClient(s, greeting);
                client.pending.AddRange(c.pending);
                return client;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && (alive?.Invoke() ?? true))
            {
                s.Dispose();
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Sends bytes as they are.</summary>
    public void SendRaw(ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0) bytes = bytes[socket.Send(bytes)..];
    }

    /// <summary>Sends text as UTF-8.</summary>
    public void SendRaw(string text) => SendRaw(Encoding.UTF8.GetBytes(text));

    /// <summary>The next line without its CR LF, or null when the server closed the connection.</summary>
    public string? ReadLine()
    {
        var buf = new byte[4096];
        while (true)
        {
            int nl = pending.IndexOf((byte)'\n');
            if (nl >= 0)
            {
                var line = Encoding.UTF8.GetString([.. pending.Take(nl)]).TrimEnd('\r');
                pending.RemoveRange(0, nl + 1);
                return line;
            }
            int n = socket.Receive(buf);
            if (n == 0) return null;
            pending.AddRange(buf.AsSpan(0, n));
        }
    }

    /// <summary>Negotiates capabilities; returns the reply (without its id) as compact JSON.</summary>
    public string Negotiate() => Execute("qmp_capabilities").ToJsonString();

    /// <summary>
    /// Sends raw bytes, then a resynchronising control byte (a lexical error that always ends
    /// whatever was pending) and a query tagged with a unique id; returns every line before the
    /// tagged reply, then the tagged reply. Events are included, in order.
    /// </summary>
    public List<string> Exchange(ReadOnlySpan<byte> raw)
    {
        var tag = $"sync-{++nextId}";
        SendRaw(raw);
        SendRaw($"\u0001{{\"execute\": \"query-version\", \"id\": \"{tag}\"}}");
        var lines = new List<string>();
        while (true)
        {
            var line = ReadLine() ?? throw new IOException($"connection closed; got so far: {string.Join("\n", lines)}");
            if (line.Contains($"\"id\": \"{tag}\"", StringComparison.Ordinal))
            {
                lines.Add(line);
                return lines;
            }
            lines.Add(line);
        }
    }

    /// <summary><see cref="Exchange(ReadOnlySpan{byte})"/> of UTF-8 text.</summary>
    public List<string> Exchange(string text) => Exchange(Encoding.UTF8.GetBytes(text));

    /// <summary>Runs one command; returns its reply (without <c>id</c>); events seen meanwhile go to <see cref="Events"/>.</summary>
    public JsonObject Execute(string command, JsonNode? arguments = null) => JsonNode.Parse(ExecuteRaw(command, arguments))!.AsObject();

    /// <summary>Runs one command (with no id); returns its reply line as received; events seen meanwhile go to <see cref="Events"/>.</summary>
    public string ExecuteRaw(string command, JsonNode? arguments = null)
    {
        // No id, so the reply line is exactly what a client without ids sees; replies come in order.
        var req = new JsonObject { ["execute"] = command };
        if (arguments is not null) req["arguments"] = arguments.DeepClone();
        SendRaw(req.ToJsonString() + "\n");
        while (true)
        {
            var line = ReadLine() ?? throw new IOException($"connection closed while waiting for '{command}'");
            if (JsonNode.Parse(line)!.AsObject().ContainsKey("event"))
            {
                Events.Add(line);
                continue;
            }
            return line;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => socket.Dispose();
}
