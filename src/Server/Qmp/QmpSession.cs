using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Verified.Server.Json;
using Verified.Vocabulary;

namespace Verified.Server.Qmp;

/// <summary>
/// One QMP monitor connection's protocol, as QEMU 7.2 speaks it: the greeting, capabilities
/// negotiation, the envelope checks on every request (in QEMU's member order), <c>id</c> echoed as
/// given, and events once negotiated. Bytes in, lines out; the transport lives elsewhere.
/// </summary>
/// <remarks>
/// Not thread-safe for <see cref="Feed"/> (one reader per connection); events may be sent from any
/// thread, so every line goes through the one <c>send</c> callback, which must be thread-safe.
/// </remarks>
public sealed class QmpSession : IDisposable
{
    /// <summary>QEMU's line ending on a monitor: every message ends with CR LF.</summary>
    public const string LineEnd = "\r\n";

    private readonly QmpDispatcher dispatcher;
    private readonly Action<string> send;
    private readonly JsonMessageStream stream;
    private readonly IDisposable subscription;
    private volatile bool negotiated;
    private bool oob;

    /// <summary>Creates a session; <paramref name="send"/> gets each outgoing message as one line ending in CR LF.</summary>
    public QmpSession(QmpDispatcher dispatcher, Action<string> send)
    {
        ArgumentNullException.ThrowIfNull(dispatcher);
        ArgumentNullException.ThrowIfNull(send);
        this.dispatcher = dispatcher;
        this.send = send;
        stream = new JsonMessageStream(Handle);
        subscription = dispatcher.Subscribe(e =>
        {
            // QEMU sends events only to monitors in command mode.
            if (negotiated) Send(e.ToJson());
        });
    }

    /// <summary>Whether <c>qmp_capabilities</c> has succeeded on this connection.</summary>
    public bool Negotiated => negotiated;

    /// <summary>Whether the client enabled the <c>oob</c> capability.</summary>
    public bool OobEnabled => oob;

    /// <summary>Set when this session ran <c>quit</c> successfully (the reply has been sent).</summary>
    public bool QuitSent { get; private set; }

    /// <summary>Sends the greeting; call once, before <see cref="Feed"/>.</summary>
    public void Start() => Send(new JsonObject
    {
        ["QMP"] = new JsonObject { ["version"] = dispatcher.Version.ToJson(), ["capabilities"] = new JsonArray("oob") },
    });

    /// <summary>Feeds bytes read from the client; every complete message is answered before this returns.</summary>
    public void Feed(ReadOnlySpan<byte> bytes) => stream.Feed(bytes);

    /// <inheritdoc/>
    public void Dispose() => subscription.Dispose();

    private void Send(JsonObject message) => send(QmpJsonWriter.Write(message) + LineEnd);

    private void Handle(JsonMessage m)
    {
        JsonNode? id = null;
        bool hasId = !m.IsError && m.Value is JsonObject d && d.TryGetPropertyValue("id", out id);
        var (reply, command, late) = m.IsError ? (new Reply(null, QmpError.Generic(m.Error!)), null, null) : Dispatch(m.Value);
        if (!negotiated && command != "qmp_capabilities" && reply.Error is { Class: ErrorClass.CommandNotFound })
            reply = new Reply(null, new QmpError(ErrorClass.CommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"));
        var json = reply.ToJson();
        if (hasId) json["id"] = id?.DeepClone();
        Send(json);
        if (late is not null) dispatcher.Deliver(late);
        dispatcher.AfterReply();
        if (command == "quit" && reply.IsOk)
        {
            QuitSent = true;
            dispatcher.ConfirmQuit();
        }
    }

    /// <summary>QEMU's qmp_dispatch: envelope checks, command lookup, then the command.</summary>
    private (Reply Reply, string? Command, List<QmpEvent>? LateEvents) Dispatch(JsonNode? value)
    {
        if (value is not JsonObject request) return (Error("QMP input must be a JSON object"), null, null);
        var err = CheckEnvelope(request, out var execKey);
        if (err is not null) return (Error(err), null, null);
        var name = request[execKey!]!.GetValue<string>();
        bool known = negotiated ? QmpDispatcher.HasCommand(name) : name == "qmp_capabilities";
        if (!known) return (new Reply(null, new QmpError(ErrorClass.CommandNotFound, $"The command {name} has not been found")), null, null);
        // No command of Verified's allows out-of-band execution (none of qemu-storage-daemon's block commands do).
        if (execKey == "exec-oob") return (Error($"The command {name} does not support OOB"), name, null);
        var args = request["arguments"] as JsonObject ?? [];
        if (name == "qmp_capabilities") return (Capabilities(args), name, null);
        Debug.Assert(negotiated, "only qmp_capabilities runs before negotiation");
        var (reply, late) = dispatcher.RunDeferringLateEvents(name, args);
        return (reply, name, late);
    }

    /// <summary>QEMU's qmp_dispatch_check_obj: members visited in QEMU's dictionary order, first problem wins.</summary>
    private string? CheckEnvelope(JsonObject request, out string? execKey)
    {
        execKey = null;
        foreach (var (key, v) in QmpJsonWriter.DictOrder(request))
        {
            if (key == "execute" || (key == "exec-oob" && oob))
            {
                if (v is not JsonValue jv || jv.GetValueKind() != JsonValueKind.String) return $"QMP input member '{key}' must be a string";
                if (execKey is not null) return $"QMP input member '{key}' clashes with '{execKey}'";
                execKey = key;
            }
            else if (key == "arguments")
            {
                if (v is not JsonObject) return "QMP input member 'arguments' must be an object";
            }
            else if (key != "id")
            {
                return $"QMP input member '{key}' is unexpected";
            }
        }
        return execKey is null ? "QMP input lacks member 'execute'" : null;
    }

    private Reply Capabilities(JsonObject args)
    {
        var err = SchemaCheck.CheckFields(args, [new("enable", new FieldType.List(FieldType.Any))], "")
            ?? SchemaCheck.CheckUnexpected(args, ["enable"], "");
        if (err is not null) return new Reply(null, err);
        bool wantOob = false;
        foreach (var cap in args["enable"] as JsonArray ?? [])
        {
            if (cap is not JsonValue cv || cv.GetValueKind() != JsonValueKind.String)
                return Error("Invalid parameter type for 'null', expected: string");
            // QEMU 7.2's visitor names list elements 'null' in this message.
            if (cv.GetValue<string>() != "oob") return Error($"Parameter 'null' does not accept value '{cv.GetValue<string>()}'");
            wantOob = true;
        }
        if (negotiated) return new Reply(null, new QmpError(ErrorClass.CommandNotFound, "Capabilities negotiation is already complete, command ignored"));
        oob = wantOob;
        negotiated = true;
        return Reply.Ok();
    }

    private static Reply Error(string desc) => new(null, QmpError.Generic(desc));
}
