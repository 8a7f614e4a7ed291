using System.Net.Sockets;
using Verified.Impl.Engine;
using Verified.Server.Json;
using Verified.Server.Qmp;

namespace Verified.Server.Daemon;

/// <summary>
/// <c>verified serve</c>: one engine, driven over QMP by any number of monitors (stdio and unix
/// sockets, each accepting any number of clients, each client negotiating on its own), commands
/// serialised onto the engine. Shuts down on <c>quit</c> or when the caller's token fires (SIGTERM,
/// SIGINT): listeners close, clients get what was already queued, images are flushed and closed.
/// </summary>
public sealed class QmpDaemon : IAsyncDisposable
{
    /// <summary>Pending connections a listening socket queues.</summary>
    public const int ListenBacklog = 64;

    /// <summary>Clients served at once across all sockets; further connections are closed at once.</summary>
    public const int ClientsMax = 256;

    /// <summary>How long shutdown waits for clients to receive what was queued for them.</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(3);

    private readonly ServeOptions options;
    private readonly TextWriter log;
    private readonly List<Socket> listeners = [];
    private readonly List<string> socketPaths = [];
    private readonly List<Task> clients = [];
    private readonly CancellationTokenSource stopping = new();
    private int clientCount;
    private bool started;
    private bool disposed;

    /// <summary>Creates a daemon; nothing runs until <see cref="Start"/>.</summary>
    public QmpDaemon(ServeOptions options, TextWriter log, BlockEngine? engine = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        this.options = options;
        this.log = log;
        Engine = engine ?? new BlockEngine();
        Dispatcher = new QmpDispatcher(Engine);
        Nbd = new Nbd.NbdServer(Engine, log);
        Dispatcher.Nbd = Nbd;
    }

    /// <summary>The NBD server (listening while nbd-server-start is in effect).</summary>
    public Nbd.NbdServer Nbd { get; }

    /// <summary>The engine served.</summary>
    public BlockEngine Engine { get; }

    /// <summary>The daemon's commands.</summary>
    public QmpDispatcher Dispatcher { get; }

    /// <summary>
    /// Runs the startup options' commands in order, then opens the unix sockets. Returns the first
    /// error as qemu-storage-daemon words it (the daemon must then not serve), or null.
    /// </summary>
    /// <exception cref="InvalidOperationException">Start was called before.</exception>
    public string? Start()
    {
        if (started) throw new InvalidOperationException("the daemon has already started");
        started = true;
        foreach (var s in options.Startup)
        {
            var reply = Dispatcher.Run(s.Command, s.Arguments);
            if (!reply.IsOk) return $"{s.Option}: {reply.Error!.Desc}";
        }
        foreach (var m in options.Monitors.Where(m => !m.IsStdio))
        {
            var err = Listen(m.UnixPath!);
            if (err is not null) return err;
        }
        if (options.PidFile is { } pidFile)
        {
            try
            {
                File.WriteAllText(pidFile, $"{Environment.ProcessId}\n");
                writtenPidFile = pidFile;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"Cannot open pid file: {e.Message}";
            }
        }
        return null;
    }

    private string? writtenPidFile;

    private string? Listen(string path)
    {
        // A stale socket from an earlier run is replaced, as QEMU does; anything else is left alone.
        if (File.Exists(path) && IsSocket(path)) File.Delete(path);
        var sock = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            sock.Bind(new UnixDomainSocketEndPoint(path));
            // Before listen() nobody can connect, so the socket is never reachable with wider permissions.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            sock.Listen(ListenBacklog);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            sock.Dispose();
            return $"Failed to bind socket to {path}: {e.Message}";
        }
        listeners.Add(sock);
        socketPaths.Add(path);
        return null;
    }

    private static bool IsSocket(string path)
    {
        // open() of a unix socket fails (ENXIO); a regular file opens, and is never deleted.
        try
        {
            using var f = File.OpenRead(path);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Serves until <c>quit</c> or <paramref name="stop"/>; then stops every client (see <see cref="DisposeAsync"/> for the engine).</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        using var both = CancellationTokenSource.CreateLinkedTokenSource(stop, Dispatcher.QuitRequested, stopping.Token);
        var loops = listeners.Select(l => AcceptLoop(l, both.Token)).ToList();
        if (options.Monitors.Any(m => m.IsStdio))
        {
            var stdio = QmpConnection.ServeAsync(Dispatcher, Console.OpenStandardInput(), Console.OpenStandardOutput(), log, both.Token);
            // stdin closing ends the daemon: a script piped in has nothing more to say.
            loops.Add(stdio.ContinueWith(_ => StopSafely(stopping), TaskScheduler.Default));
        }
        try
        {
            await Task.Delay(Timeout.Infinite, both.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // quit, a signal, or stdin closed
        }
        foreach (var l in listeners) l.Dispose();
        Task[] pending;
        lock (clients) pending = [.. clients];
        await Task.WhenAny(Task.WhenAll(pending), Task.Delay(DrainTimeout, CancellationToken.None)).ConfigureAwait(false);
        await Task.WhenAny(Task.WhenAll(loops), Task.Delay(DrainTimeout, CancellationToken.None)).ConfigureAwait(false);
    }

    private static void StopSafely(CancellationTokenSource cts)
    {
        try
        {
            cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already shut down.
        }
    }

    private async Task AcceptLoop(Socket listener, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            if (Interlocked.Increment(ref clientCount) > ClientsMax)
            {
                Interlocked.Decrement(ref clientCount);
                log.WriteLine($"verified serve: more than {ClientsMax} clients; refusing one");
                client.Dispose();
                continue;
            }
            var task = ServeClient(client, stop);
            lock (clients)
            {
                clients.RemoveAll(t => t.IsCompleted);
                clients.Add(task);
            }
        }
    }

    private async Task ServeClient(Socket client, CancellationToken stop)
    {
        try
        {
            await using var stream = new NetworkStream(client, ownsSocket: true);
            await QmpConnection.ServeAsync(Dispatcher, stream, stream, log, stop).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A bug serving one client must not take the others down; say what it was.
            await log.WriteLineAsync($"verified serve: client failed: {e}").ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref clientCount);
        }
    }

    /// <summary>Stops serving, flushes every node that has a parent from the top down, closes the engine and removes the sockets.</summary>
    public async ValueTask DisposeAsync()
    {
        if (disposed) return;
        disposed = true;
        await stopping.CancelAsync().ConfigureAwait(false);
        foreach (var l in listeners) l.Dispose();
        // NBD clients' requests in flight complete (and are flushed below) before the images close.
        Nbd.Stop();
        foreach (var n in Engine.Nodes.Reverse())
        {
            try
            {
                await n.FlushAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or Impl.IO.BlockIOException or ObjectDisposedException)
            {
                await log.WriteLineAsync($"verified serve: flushing '{n.Name}' failed: {e.Message}").ConfigureAwait(false);
            }
        }
        Engine.Dispose();
        Dispatcher.Dispose();
        foreach (var p in socketPaths.Append(writtenPidFile).OfType<string>())
        {
            try
            {
                File.Delete(p);
            }
            catch (IOException)
            {
                // Someone else's file now, or already gone.
            }
        }
        stopping.Dispose();
    }

    /// <summary>The most bytes of tokens one message may hold (QEMU's bound); a longer one is refused with QEMU's text.</summary>
    public static long MessageBytesMax => JsonMessageStream.TokenSizeMax;
}
