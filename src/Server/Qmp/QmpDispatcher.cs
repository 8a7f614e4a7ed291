using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Vocabulary;

namespace Verified.Server.Qmp;

/// <summary>The version a daemon reports in its greeting and to <c>query-version</c>.</summary>
/// <param name="Major">QEMU major version spoken (7).</param>
/// <param name="Minor">QEMU minor version spoken (2).</param>
/// <param name="Micro">Micro version.</param>
/// <param name="Package">Free-form package string.</param>
public sealed record QmpVersion(int Major, int Minor, int Micro, string Package)
{
    /// <summary>What Verified reports: the QMP dialect of QEMU 7.2.</summary>
    public static QmpVersion Verified { get; } = new(7, 2, 0, "verified");

    /// <summary><c>VersionInfo</c> as QEMU builds it (members in schema order).</summary>
    public JsonObject ToJson() => new()
    {
        ["qemu"] = new JsonObject { ["major"] = Major, ["minor"] = Minor, ["micro"] = Micro },
        ["package"] = Package,
    };
}

/// <summary>
/// The commands of a daemon, shared by all its monitors: runs one command at a time on the one
/// engine (QEMU's big lock), and turns what a command did into events for every negotiated monitor.
/// </summary>
/// <remarks>Thread-safe: <see cref="Run"/> serialises; event delivery happens before the reply returns, as in QEMU.</remarks>
public sealed partial class QmpDispatcher : IDisposable
{
    private readonly object commandLock = new();
    private readonly List<Action<QmpEvent>> listeners = [];
    private readonly Func<DateTimeOffset> clock;

    /// <summary>Creates a dispatcher over <paramref name="engine"/>.</summary>
    /// <param name="engine">The engine commands run on; the caller owns it.</param>
    /// <param name="version">The version reported.</param>
    /// <param name="clock">Event timestamps (default: the wall clock).</param>
    public QmpDispatcher(BlockEngine engine, QmpVersion? version = null, Func<DateTimeOffset>? clock = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        Engine = engine;
        Version = version ?? QmpVersion.Verified;
        this.clock = clock ?? (() => DateTimeOffset.UtcNow);
    }

    /// <summary>The engine commands run on.</summary>
    public BlockEngine Engine { get; }

    /// <summary>The version reported.</summary>
    public QmpVersion Version { get; }

    /// <summary>Set once <c>quit</c> has run; the daemon then shuts down.</summary>
    public CancellationToken QuitRequested => quit.Token;

    private readonly CancellationTokenSource quit = new();

    /// <summary>Every command a negotiated monitor may run (QEMU's <c>query-commands</c>).</summary>
    public static IReadOnlyList<string> CommandNames => Commands;

    /// <summary>Adds an event listener (one per monitor); returns a handle that removes it.</summary>
    public IDisposable Subscribe(Action<QmpEvent> listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        lock (listeners) listeners.Add(listener);
        return new Unsubscriber(() =>
        {
            lock (listeners) listeners.Remove(listener);
        });
    }

    /// <summary>Whether <paramref name="name"/> is a command of a negotiated monitor.</summary>
    public static bool HasCommand(string name) => CommandSet.Contains(name);

    /// <summary>
    /// Runs one command (already known by <see cref="HasCommand"/>) with its arguments. Events the
    /// command causes are delivered to every listener before this returns.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not a command of <see cref="HasCommand"/>, or is qmp_capabilities.</exception>
    public Reply Run(string name, JsonObject arguments)
    {
        var (reply, late) = RunDeferringLateEvents(name, arguments);
        Deliver(late);
        AfterReply();
        return reply;
    }

    /// <summary>
    /// Runs one command; events QEMU sends before the reply are delivered before this returns, and
    /// those it sends after the reply (a device's unplug completes after device_del answers) are
    /// returned for the caller to deliver once the reply is out.
    /// </summary>
    internal (Reply Reply, List<QmpEvent> LateEvents) RunDeferringLateEvents(string name, JsonObject arguments)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(arguments);
        // Negotiation belongs to a monitor session; anything unknown is the session's CommandNotFound.
        if (!HasCommand(name) || name == "qmp_capabilities")
            throw new ArgumentException($"'{name}' is not a command the dispatcher runs (see HasCommand; qmp_capabilities belongs to a session)", nameof(name));
        List<QmpEvent> events;
        Reply reply;
        lock (commandLock)
        {
            var before = Snapshot();
            try
            {
                reply = RunLocked(name, arguments);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or System.Text.Json.JsonException or NotSupportedException)
            {
                // A value of a shape the command parser did not foresee: answer, never crash the daemon.
                reply = new Reply(null, QmpError.Generic($"Invalid parameter: {e.Message}"));
            }
            events = [.. JobEvents(), .. reply.IsOk ? EventsBetween(before, Snapshot()) : []];
        }
        HashSet<string> late;
        lock (commandLock) late = [.. lateExports];
        bool IsLate(QmpEvent e) => e.Name == "DEVICE_DELETED"
            || (e.Name == "BLOCK_EXPORT_DELETED" && e.Data?["id"]?.GetValue<string>() is { } id && late.Contains(id));
        Deliver([.. events.Where(e => !IsLate(e))]);
        return (reply, [.. events.Where(IsLate)]);
    }

    /// <summary>Exports the last command deleted after waiting for their clients: their event follows the reply.</summary>
    private readonly HashSet<string> lateExports = new(StringComparer.Ordinal);

    /// <summary>
    /// The NBD server that serves the engine's exports, when this dispatcher belongs to a daemon; null
    /// in library use, where nbd-server-start only records that a server runs.
    /// </summary>
    public Nbd.NbdServer? Nbd { get; set; }

    /// <summary>Sends <paramref name="events"/> to every listener, in order.</summary>
    internal void Deliver(List<QmpEvent> events)
    {
        if (events.Count == 0) return;
        Action<QmpEvent>[] copy;
        lock (listeners) copy = [.. listeners];
        foreach (var e in events)
        {
            foreach (var l in copy) l(e);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Task? r;
        lock (runnerLock) r = runner;
        r?.Wait();
        quit.Dispose();
    }

    private sealed class Unsubscriber(Action dispose) : IDisposable
    {
        private Action? action = dispose;

        public void Dispose() => Interlocked.Exchange(ref action, null)?.Invoke();
    }
}
