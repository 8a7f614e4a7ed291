using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Vocabulary;
using Verified.Vocabulary.Jobs;

namespace Verified.Impl.Engine;

/// <summary>A QOM object the block layer knows (throttle-group, iothread).</summary>
public sealed record QomObjectEntry(string Id, string Type, ValueMap<string> Props, ThrottleGroup? Group);

/// <summary>
/// The implementation: a mutable block graph doing real I/O, driven by QMP commands. Graph changes are
/// serialised (QEMU's big lock), run with I/O drained, and are transactional: every change registers
/// its undo as it is made, and a failure rolls all of them back.
/// </summary>
/// <remarks>Thread-safe: commands serialise on one lock; I/O runs concurrently through devices and exports.</remarks>
public sealed partial class BlockEngine : IDisposable
{
    private readonly Dictionary<string, BlockNode> nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DeviceParent> devices = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ExportParent> exports = new(StringComparer.Ordinal);
    private readonly Dictionary<string, QomObjectEntry> objects = new(StringComparer.Ordinal);
    private readonly object graphLock = new();
    private long seq = 1;
    private long nameCounter;
    private bool nbdServerRunning;
    private bool disposed;

    /// <summary>Creates an empty engine.</summary>
    public BlockEngine(EngineServices? services = null)
    {
        var s = services ?? new EngineServices();
        Services = new EngineServices
        {
            Clock = s.Clock,
            Storage = s.Storage,
            Mutation = s.Mutation,
            ThrottleGroups = id => objects.TryGetValue(id, out var o) ? o.Group : null,
        };
    }

    /// <summary>What drivers get from the engine.</summary>
    public EngineServices Services { get; }

    /// <summary>The I/O admission gate that graph changes drain.</summary>
    public IoGate Io { get; } = new();

    /// <summary>The generated-name counter (never rolled back).</summary>
    public long NameCounter => nameCounter;

    /// <summary>Whether an NBD server is running.</summary>
    public bool NbdServerRunning => nbdServerRunning;

    /// <summary>Every node, oldest first.</summary>
    public IReadOnlyList<BlockNode> Nodes
    {
        get
        {
            lock (graphLock) return [.. nodes.Values.OrderBy(n => n.Seq)];
        }
    }

    /// <summary>Every device, oldest first.</summary>
    public IReadOnlyList<DeviceParent> Devices
    {
        get
        {
            lock (graphLock) return [.. devices.Values.OrderBy(d => d.Seq)];
        }
    }

    /// <summary>Every export, oldest first.</summary>
    public IReadOnlyList<ExportParent> Exports
    {
        get
        {
            lock (graphLock) return [.. exports.Values.OrderBy(e => e.Seq)];
        }
    }

    /// <summary>Every QOM object, by id.</summary>
    public IReadOnlyList<QomObjectEntry> Objects
    {
        get
        {
            lock (graphLock) return [.. objects.Values.OrderBy(o => o.Id, StringComparer.Ordinal)];
        }
    }

    /// <summary>The node named <paramref name="name"/>, or null.</summary>
    public BlockNode? FindNode(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (graphLock) return nodes.GetValueOrDefault(name);
    }

    /// <summary>The device with id (or QOM path) <paramref name="idOrPath"/>, or null.</summary>
    public DeviceParent? FindDevice(string idOrPath)
    {
        ArgumentNullException.ThrowIfNull(idOrPath);
        lock (graphLock) return ResolveDevice(idOrPath);
    }

    /// <summary>Runs one QMP request (<c>{"execute": …, "arguments": …}</c>) and returns the reply.</summary>
    public Reply Execute(JsonObject request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (cmd, err) = CommandParser.ParseRequest(request);
        return err is not null ? new Reply(null, err) : Execute(cmd!);
    }

    /// <summary>Runs one command and returns the reply. A failed command changes nothing.</summary>
    public Reply Execute(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        lock (graphLock)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (command is Query q) return new Reply(Query(q), null);
            using var drained = Io.Drain();
            var err = Dispatch(command);
            return err is null ? ReplyOk(command) : new Reply(null, err);
        }
    }

    private Reply ReplyOk(Command c) => c is QomGet g ? new Reply(JsonValue.Create(QomGetValue(g)), null) : Reply.Ok();

    private QmpError? Dispatch(Command c) => c switch
    {
        Vocabulary.Transaction t => DrainAll() ?? RunTransaction(t.Actions, refreshEveryAction: false, grouped: t.CompletionMode == "grouped"),
        BlockdevAdd or BlockdevDel or BlockdevReplace or BlockdevSnapshot or BlockdevSnapshotSync or BitmapCommand => RunTransaction([c], false),
        AbortAction => new QmpError(ErrorClass.CommandNotFound, "The command abort has not been found"),
        BlockdevReopen r => Reopen(r.Options),
        DeviceAdd d => DeviceAdd(d),
        DeviceDel d => DeviceDel(d.Id),
        QomSet q => QomSet(q),
        QomGet q => QomGetCheck(q),
        NbdServerStart => nbdServerRunning ? QmpError.Generic("NBD server already running") : StartNbd(),
        NbdServerStop => StopNbd(),
        BlockExportAdd e => ExportAdd(e),
        BlockExportDel e => ExportDel(e.Id),
        ObjectAdd o => ObjectAdd(o),
        ObjectDel o => ObjectDel(o.Id),
        BlockdevChange b => Change(b),
        BlockdevBackup => DrainAll() ?? RunTransaction([c], false),
        JobCommand j => JobVerbCommand(j),
        BlockdevMirror m => Mirror(m),
        BlockdevCreate b => Create(b),
        _ => new QmpError(ErrorClass.CommandNotFound, $"The command {c.Name} has not been found"),
    };

    private QmpError? StartNbd()
    {
        nbdServerRunning = true;
        return null;
    }

    private long NextSeq() => seq++;

    /// <summary>Closes every node (flushing nothing: callers flush through their devices first).</summary>
    public void Dispose()
    {
        lock (graphLock)
        {
            if (disposed) return;
            disposed = true;
            foreach (var n in nodes.Values.OrderByDescending(n => n.Seq).ToList())
            {
                if (!n.Deleted) n.Driver.Close();
                n.Deleted = true;
            }
            nodes.Clear();
        }
    }
}
