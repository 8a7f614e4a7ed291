using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>The model's whole state: the graph and the generated-name counter (which QEMU never rolls back).</summary>
public sealed record ModelState(Graph Graph, long NameCounter)
{
    /// <summary>What the model predicts about data (host files' bytes, copy-before-write's copies).</summary>
    public DataState Data { get; init; } = DataState.Empty;

    /// <summary>An empty block layer.</summary>
    public static readonly ModelState Initial = new(Graph.Empty, 0);
}

/// <summary>
/// The executable specification: applies one QMP command to a state and returns the next state and
/// the reply. A failed command returns the state unchanged (except the name counter).
/// </summary>
public static class Machine
{
    /// <summary>Applies <paramref name="c"/> to <paramref name="s"/>.</summary>
    public static (ModelState State, Reply Reply) Apply(ModelState s, Command c)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(c);
        var g = s.Graph;
        // Every graph change runs as a transaction that knows what the data tells: node sizes (backup's size
        // check) and which clusters snapshot-access reads from its filter's target (a qcow2 header read).
        Transaction.Outcome Run(IReadOnlyList<Command> actions, bool grouped = false) =>
            Transaction.Run(g, s.NameCounter, actions, grouped: grouped, lengths: n => Data.Size(s, n), copied: s.Data.IsDone);
        switch (c)
        {
            case Vocabulary.Transaction t:
                return Finish(s, Run(t.Actions, grouped: t.CompletionMode == "grouped"));
            case Vocabulary.Jobs.BlockdevBackup:
                return Finish(s, Run([c]));
            case Vocabulary.Jobs.JobCommand j:
                var verb = BlockJobs.Verb(s, j);
                return verb.Ok ? (verb.Get(), Reply.Ok()) : (s, new Reply(null, verb.Error));
            case BlockdevAdd or BlockdevDel or BlockdevReplace or BlockdevSnapshot or BlockdevSnapshotSync or BitmapCommand:
                return Finish(s, Run([c]));
            case AbortAction:
                return (s, new Reply(null, new QmpError(ErrorClass.CommandNotFound, "The command abort has not been found")));
            case BlockdevReopen r:
                return Graphs(s, Reopen.Run(g, r.Options, s.NameCounter));
            case DeviceAdd d:
                return Graphs(s, Devices.Add(g, d));
            case DeviceDel d:
                return Graphs(s, Devices.Del(g, d.Id));
            case QomSet q:
                return Graphs(s, Devices.SetDrive(g, q, s.NameCounter));
            case QomGet q:
                return QomGet(s, q);
            case NbdServerStart:
                return g.NbdServerRunning ? (s, Fail("NBD server already running")) : (s with { Graph = g with { NbdServerRunning = true } }, Reply.Ok());
            case NbdServerStop:
                return Graphs(s, Exports.StopServer(g));
            case BlockExportAdd e:
                return Graphs(s, Exports.Add(g, e));
            case BlockExportDel e:
                return Graphs(s, Exports.Del(g, e.Id));
            case ObjectAdd o:
                return Graphs(s, Objects.Add(g, o));
            case ObjectDel o:
                return Graphs(s, Objects.Del(g, o.Id));
            case BlockdevChange b:
                return (s, new Reply(null, Objects.Change(g, b)));
            case Query q:
                return (s, new Reply(Queries.Answer(g, q.Command), null));
            default:
                return (s, new Reply(null, new QmpError(ErrorClass.CommandNotFound, $"The command {c.Name} has not been found")));
        }
    }

    /// <summary>Parses and applies a QMP request object.</summary>
    public static (ModelState State, Reply Reply) Apply(ModelState s, JsonObject request)
    {
        var (cmd, err) = CommandParser.ParseRequest(request);
        return err is not null ? (s, new Reply(null, err)) : Apply(s, cmd!);
    }

    /// <summary>A node's length where the model predicts the node (generators pick backup pairs by it).</summary>
    public static long? KnownLength(ModelState s, string node) => Data.Predictable(s, node) ? Data.Length(s, node) : null;

    /// <summary>
    /// The transaction's outcome; a host file that became a qcow2 image (a snapshot-sync overlay) no longer
    /// holds bytes the model predicts.
    /// </summary>
    private static (ModelState, Reply) Finish(ModelState s, Transaction.Outcome o)
    {
        var data = s.Data;
        foreach (var (file, format) in ReferenceEquals(o.Graph.ImageFormats, s.Graph.ImageFormats) ? ValueMap<string>.Empty : o.Graph.ImageFormats)
        {
            if (format == Images.Qcow2 && data.Files.ContainsKey(file)) data = data with { Files = data.Files.Remove(file) };
        }
        return (s with { Graph = o.Graph, NameCounter = o.NameCounter, Data = data }, o.Error is null ? Reply.Ok() : new Reply(null, o.Error));
    }

    private static (ModelState, Reply) Graphs(ModelState s, Result<Graph> r) =>
        r.Ok ? (s with { Graph = r.Get() }, Reply.Ok()) : (s, new Reply(null, r.Error));

    private static Reply Fail(string desc) => new(null, QmpError.Generic(desc));

    private static (ModelState, Reply) QomGet(ModelState s, QomGet q)
    {
        if (Devices.Resolve(s.Graph, q.Path) is not { } dev)
            return (s, new Reply(null, new QmpError(ErrorClass.DeviceNotFound, $"Device '{q.Path}' not found")));
        if (q.Property != "drive" || !dev.IsBlock) return (s, Fail($"Property '{Devices.QomModel(dev, q.Path)}.{q.Property}' not found"));
        var edge = s.Graph.RootEdge(new DeviceParent(dev.Id));
        return (s, new Reply(JsonValue.Create(edge?.Child ?? ""), null));
    }
}

/// <summary>QOM objects the block layer uses.</summary>
public static class Objects
{
    /// <summary>object-add.</summary>
    public static Result<Graph> Add(Graph g, ObjectAdd o)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(o);
        if (!Names.IsWellFormed(o.Id)) return Results.Fail($"Parameter 'id' expects an identifier");
        // QEMU 7.2 checks the limits (setting the properties) before the id's uniqueness (adding the object).
        if (o.QomType == "throttle-group" && Throttle.Check(o.Props.TryGetValue("limits", out var l) ? l : null) is { } bad) return bad;
        if (g.Objects.ContainsKey(o.Id)) return Results.Fail($"attempt to add duplicate property '{o.Id}' to object (type 'container')");
        return g with { Objects = g.Objects.SetItem(o.Id, new QomObject(o.Id, o.QomType, o.Props)) };
    }

    /// <summary>x-blockdev-change: only quorum supports it, and Verified has no quorum driver, so it always refuses.</summary>
    public static QmpError Change(Graph g, BlockdevChange c)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(c);
        if (g.Find(c.Parent) is null) return Results.Fail($"Cannot find device='{c.Parent}' nor node-name='{c.Parent}'");
        if ((c.Child is null) == (c.Node is null))
            return Results.Fail(c.Child is null ? "Either child or node must be specified" : "The parameters child and node are in conflict");
        if (c.Child is not null)
        {
            return g.ChildEdge(c.Parent, c.Child) is null ? Results.Fail($"Node '{c.Parent}' does not have child '{c.Child}'")
                : Results.Fail($"The node {c.Parent} does not support removing a child");
        }
        if (g.Find(c.Node!) is null) return Results.Fail($"Node '{c.Node}' not found");
        return Results.Fail($"The node {c.Parent} does not support adding a child");
    }

    /// <summary>object-del: refused while a throttle node uses the group.</summary>
    public static Result<Graph> Del(Graph g, string id)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (!g.Objects.ContainsKey(id)) return Results.Fail($"object '{id}' not found");
        if (g.Nodes.Values.Any(n => n.Driver == "throttle" && n.Str("throttle-group") == id))
            return Results.Fail($"object '{id}' is in use, can not be deleted");
        return g with { Objects = g.Objects.Remove(id) };
    }
}
