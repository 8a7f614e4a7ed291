using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Verified.Server.Qmp;

/// <summary>
/// A minimal QMP client over a unix socket (for <c>verified graph</c>): reads the greeting,
/// negotiates, and runs commands one at a time, skipping events. Works with QEMU and with
/// <c>verified serve</c>. Not thread-safe.
/// </summary>
public sealed class QmpSocketClient : IDisposable
{
    /// <summary>Longest reply line accepted (a bound against a runaway peer).</summary>
    public const int LineBytesMax = 64 << 20;

    private readonly Socket socket;
    private readonly List<byte> pending = [];

    private QmpSocketClient(Socket socket) => this.socket = socket;

    /// <summary>Connects to <paramref name="path"/>, reads the greeting and negotiates capabilities.</summary>
    public static QmpSocketClient Connect(string path, TimeSpan timeout)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = (int)timeout.TotalMilliseconds };
        var c = new QmpSocketClient(s);
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(path));
            var greeting = c.ReadMessage();
            if (greeting["QMP"] is null) throw new IOException($"not a QMP greeting: {greeting.ToJsonString()}");
            c.Run("qmp_capabilities");
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    /// <summary>Runs a command; returns its <c>return</c> value, or throws <see cref="IOException"/> with the error's text.</summary>
    public JsonNode Run(string command, JsonObject? arguments = null)
    {
        var req = new JsonObject { ["execute"] = command };
        if (arguments is not null) req["arguments"] = arguments;
        socket.Send(Encoding.UTF8.GetBytes(req.ToJsonString() + "\n"));
        while (true)
        {
            var msg = ReadMessage();
            if (msg.ContainsKey("event")) continue;
            if (msg["error"] is JsonObject e) throw new IOException($"{command}: {e["desc"]}");
            return msg["return"] ?? new JsonObject();
        }
    }

    private JsonObject ReadMessage()
    {
        var buf = new byte[4096];
        while (true)
        {
            int nl = pending.IndexOf((byte)'\n');
            if (nl >= 0)
            {
                var line = Encoding.UTF8.GetString([.. pending.Take(nl)]);
                pending.RemoveRange(0, nl + 1);
                if (line.Trim().Length == 0) continue;
                return JsonNode.Parse(line)!.AsObject();
            }
            if (pending.Count > LineBytesMax) throw new IOException($"a reply longer than {LineBytesMax} bytes");
            int n = socket.Receive(buf);
            if (n == 0) throw new IOException("the QMP server closed the connection");
            pending.AddRange(buf.AsSpan(0, n));
        }
    }

    /// <inheritdoc/>
    public void Dispose() => socket.Dispose();
}
