using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Impl.Graph;

namespace Verified.Server.Nbd;

/// <summary>
/// The NBD server of <c>verified serve</c>: one listening socket (unix, or TCP on the address given)
/// while <c>nbd-server-start</c> is in effect, serving the engine's exports by name to any number
/// of clients (bounded by <c>max-connections</c>, or <see cref="ClientsMax"/>). The export set is the
/// engine's; this class only knows which clients use which export, so that deleting an export can
/// refuse (safe mode) or disconnect them (hard mode) and wait until they are gone.
/// </summary>
/// <remarks>Thread-safe: clients come and go on the thread pool; commands call in under the dispatcher's lock.</remarks>
public sealed class NbdServer : IDisposable
{
    /// <summary>Clients served at once when <c>max-connections</c> is 0 (QEMU's "unlimited").</summary>
    public const int ClientsMax = 256;

    /// <summary>Pending connections the listening socket queues.</summary>
    public const int ListenBacklog = 64;

    /// <summary>How long closing clients may take to finish the requests they have in flight.</summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);

    private readonly BlockEngine engine;
    private readonly TextWriter log;
    private readonly object sync = new();
    private readonly Dictionary<NbdConnection, Task> clients = [];
    private readonly HashSet<string> closingExports = new(StringComparer.Ordinal);
    private Socket? listener;
    private string? unixPath;
    private int clientsMax;
    private Task? acceptLoop;
    private TaskCompletionSource slotFreed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Creates a server over <paramref name="engine"/>'s exports; nothing listens until <see cref="Listen"/>.</summary>
    public NbdServer(BlockEngine engine, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(log);
        this.engine = engine;
        this.log = log;
    }

    /// <summary>Where the server listens, or null.</summary>
    public EndPoint? LocalEndPoint => listener?.LocalEndPoint;

    /// <summary>
    /// Starts listening on an <c>nbd-server-start</c> address (<c>{"type": "unix"|"inet", "data": {…}}</c>,
    /// already checked against the schema). Returns QEMU's error text, or null.
    /// </summary>
    public string? Listen(JsonObject addr, long maxConnections)
    {
        ArgumentNullException.ThrowIfNull(addr);
        lock (sync)
        {
            if (listener is not null) throw new InvalidOperationException("the NBD server is already listening");
            var data = (JsonObject)addr["data"]!;
            var type = (string?)addr["type"];
            if (type is not ("unix" or "inet")) return $"NBD over '{type}' sockets is not supported";
            string? path = type == "unix" ? (string)data["path"]! : null;
            var where = path ?? $"{(string)data["host"]!}:{(string)data["port"]!}";
            var sock = path is not null
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
            try
            {
                // QEMU unlinks whatever is at a unix socket's path before binding.
                if (path is not null && File.Exists(path)) File.Delete(path);
                sock.Bind(path is not null ? new UnixDomainSocketEndPoint(path) : InetEndPoint(data));
                sock.Listen(ListenBacklog);
            }
            catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException or FormatException or OverflowException or ArgumentException)
            {
                sock.Dispose();
                return $"Failed to bind socket to {where}: {e.Message}";
            }
            listener = sock;
            unixPath = path;
            clientsMax = maxConnections > 0 ? (int)Math.Min(maxConnections, ClientsMax) : ClientsMax;
            acceptLoop = AcceptLoop(sock);
            return null;
        }
    }

    private static IPEndPoint InetEndPoint(JsonObject data)
    {
        var host = (string)data["host"]!;
        int port = int.Parse((string)data["port"]!, System.Globalization.CultureInfo.InvariantCulture);
        var ip = host.Length == 0 ? IPAddress.IPv6Any
            : IPAddress.TryParse(host.Trim('[', ']'), out var a) ? a
            : Dns.GetHostAddresses(host)[0];
        return new IPEndPoint(ip.AddressFamily == AddressFamily.InterNetwork ? ip.MapToIPv6() : ip, port);
    }

    /// <summary>
    /// Accepts while fewer than the bound are connected; at the bound it stops accepting (further
    /// clients wait in the kernel's backlog) until one leaves, as QEMU's nbd_update_server_watch does.
    /// </summary>
    private async Task AcceptLoop(Socket sock)
    {
        while (true)
        {
            Task? full = null;
            lock (sync)
            {
                if (listener != sock) return;
                if (clients.Count >= clientsMax) full = slotFreed.Task;
            }
            if (full is not null)
            {
                await full.ConfigureAwait(false);
                continue;
            }
            Socket client;
            try
            {
                client = await sock.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            lock (sync)
            {
                if (listener != sock)
                {
                    client.Dispose();
                    continue;
                }
                var conn = new NbdConnection(client, this);
                clients.Add(conn, Task.Run(conn.RunAsync));
            }
        }
    }

    /// <summary>Stops listening, disconnects every client and waits for their requests in flight.</summary>
    public void Stop()
    {
        Task? loop;
        lock (sync)
        {
            listener?.Dispose();
            listener = null;
            WakeAcceptor();
            loop = acceptLoop;
            acceptLoop = null;
            if (unixPath is not null)
            {
                try
                {
                    File.Delete(unixPath);
                }
                catch (IOException)
                {
                    // someone else's now
                }
            }
            unixPath = null;
        }
        loop?.Wait(CloseTimeout);
        CloseWhere(_ => true);
    }

    /// <summary>How many clients use the export with id <paramref name="exportId"/>.</summary>
    public int ClientsOf(string exportId)
    {
        lock (sync) return clients.Keys.Count(c => c.Export?.Id == exportId);
    }

    /// <summary>Disconnects the clients of export <paramref name="exportId"/> and waits until their requests in flight are done.</summary>
    /// <remarks>New clients are refused the export until <see cref="Release"/>: call it once the export is deleted.</remarks>
    public void Disconnect(string exportId)
    {
        lock (sync) closingExports.Add(exportId);
        CloseWhere(c => c.Export?.Id == exportId);
    }

    /// <summary>Ends what <see cref="Disconnect"/> began: the id may name a new export again.</summary>
    public void Release(string exportId)
    {
        lock (sync) closingExports.Remove(exportId);
    }

    private void CloseWhere(Func<NbdConnection, bool> which)
    {
        List<Task> tasks;
        lock (sync)
        {
            var chosen = clients.Where(kv => which(kv.Key)).ToList();
            foreach (var (c, _) in chosen) c.Close();
            tasks = [.. chosen.Select(kv => kv.Value)];
        }
        if (!Task.WaitAll([.. tasks], CloseTimeout)) Log("clients did not finish closing in time");
    }

    /// <summary>The export an NBD client may use under <paramref name="name"/>, or null.</summary>
    internal ExportParent? FindExport(string name) =>
        engine.NbdServerRunning ? engine.Exports.FirstOrDefault(e => e.ExportName == name && e.Root is not null) : null;

    /// <summary>Exports as NBD_OPT_LIST shows them.</summary>
    internal IReadOnlyList<ExportParent> ListExports() => engine.NbdServerRunning ? engine.Exports : [];

    /// <summary>Makes <paramref name="conn"/> a client of the export named <paramref name="name"/>; null when there is none.</summary>
    internal ExportParent? Attach(NbdConnection conn, string name)
    {
        lock (sync)
        {
            // Under the lock, so a deletion that has just counted the export's clients sees this one.
            var exp = clients.ContainsKey(conn) ? FindExport(name) : null;
            if (exp is null || closingExports.Contains(exp.Id)) return null;
            conn.Export = exp;
            return exp;
        }
    }

    /// <summary>Forgets a client that has finished.</summary>
    internal void Detach(NbdConnection conn)
    {
        lock (sync)
        {
            clients.Remove(conn);
            WakeAcceptor();
        }
    }

    /// <summary>Wakes an accept loop waiting for a free slot (or for the listener to go); call under the lock.</summary>
    private void WakeAcceptor()
    {
        var t = slotFreed;
        slotFreed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        t.TrySetResult();
    }

    internal void Log(string message)
    {
        lock (log) log.WriteLine($"verified serve: nbd: {message}");
    }

    /// <inheritdoc/>
    public void Dispose() => Stop();
}
