using System.Buffers.Binary;
using System.Text;
using Verified.Impl.Graph;
using static Verified.Server.Nbd.NbdProtocol;

namespace Verified.Server.Nbd;

/// <summary>Option haggling: fixed newstyle negotiation up to NBD_OPT_GO or NBD_OPT_EXPORT_NAME.</summary>
internal sealed partial class NbdConnection
{
    /// <summary>Longest option payload accepted (a name, a few info requests or meta-context queries); longer ones close the connection.</summary>
    public const int OptionBytesMax = 64 * 1024;

    /// <summary>Options one client may send before choosing an export (a bound against clients that haggle forever).</summary>
    public const int OptionsMax = 1024;

    /// <summary>Longest export name or meta-context query (NBD's and QEMU's NBD_MAX_STRING_SIZE).</summary>
    public const int StringBytesMax = 4096;

    private sealed class BadOption(uint reply, string message) : Exception(message)
    {
        public uint Reply { get; } = reply;
    }

    /// <summary>Negotiates; returns the export chosen, or null when the client aborted or failed negotiation.</summary>
    private async Task<ExportParent?> HandshakeAsync(CancellationToken ct)
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), OptMagic);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        await SendAsync(hello, ct).ConfigureAwait(false);
        var head = new byte[16];
        await reader.ReadExactlyAsync(head.AsMemory(0, 4), ct).ConfigureAwait(false);
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(head);
        // Unknown client flags, or a client that is not fixed newstyle, end the session (as QEMU does).
        if ((clientFlags & ~(ClientFlagFixedNewstyle | ClientFlagNoZeroes)) != 0 || (clientFlags & ClientFlagFixedNewstyle) == 0) return null;
        bool noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
        for (int i = 0; i < OptionsMax; i++)
        {
            await reader.ReadExactlyAsync(head, ct).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt64BigEndian(head) != OptMagic) return null;
            uint opt = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(8));
            uint len = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(12));
            if (len > OptionBytesMax) return null;
            var data = new byte[len];
            await reader.ReadExactlyAsync(data, ct).ConfigureAwait(false);
            try
            {
                switch (opt)
                {
                    case OptAbort:
                        await OptionReplyAsync(opt, RepAck, [], ct).ConfigureAwait(false);
                        return null;
                    case OptExportName:
                        return await ExportNameAsync(data, noZeroes, ct).ConfigureAwait(false);
                    case OptList:
                        await ListAsync(data, ct).ConfigureAwait(false);
                        break;
                    case OptInfo or OptGo:
                        var chosen = await InfoAsync(opt, data, ct).ConfigureAwait(false);
                        if (opt == OptGo) return chosen;
                        break;
                    case OptStructuredReply:
                        if (len != 0) throw new BadOption(RepErrInvalid, "structured reply takes no data");
                        structured = true;
                        await OptionReplyAsync(opt, RepAck, [], ct).ConfigureAwait(false);
                        break;
                    case OptListMetaContext or OptSetMetaContext:
                        await MetaContextAsync(opt, data, ct).ConfigureAwait(false);
                        break;
                    case OptStartTls:
                        throw new BadOption(RepErrPolicy, "TLS is not configured");
                    default:
                        throw new BadOption(RepErrUnsup, $"option {opt} is not supported");
                }
            }
            catch (BadOption e)
            {
                await OptionReplyAsync(opt, e.Reply, Encoding.UTF8.GetBytes(e.Message), ct).ConfigureAwait(false);
            }
        }
        return null;
    }

    private async Task<ExportParent?> ExportNameAsync(byte[] data, bool noZeroes, CancellationToken ct)
    {
        // Old-style selection has no way to say "no such export": the connection just closes.
        var exp = server.Attach(this, Encoding.UTF8.GetString(data));
        if (exp is null) return null;
        var reply = new byte[noZeroes ? 10 : 134];
        BinaryPrimitives.WriteInt64BigEndian(reply, exp.Size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags(exp));
        await SendAsync(reply, ct).ConfigureAwait(false);
        return exp;
    }

    private async Task ListAsync(byte[] data, CancellationToken ct)
    {
        if (data.Length != 0) throw new BadOption(RepErrInvalid, "list takes no data");
        foreach (var e in server.ListExports())
        {
            var name = Encoding.UTF8.GetBytes(e.ExportName);
            var desc = Encoding.UTF8.GetBytes(e.ExportDescription ?? "");
            var body = new byte[4 + name.Length + desc.Length];
            BinaryPrimitives.WriteUInt32BigEndian(body, (uint)name.Length);
            name.CopyTo(body, 4);
            desc.CopyTo(body, 4 + name.Length);
            await OptionReplyAsync(OptList, RepServer, body, ct).ConfigureAwait(false);
        }
        await OptionReplyAsync(OptList, RepAck, [], ct).ConfigureAwait(false);
    }

    /// <summary>NBD_OPT_INFO and NBD_OPT_GO: the export's name, description, block sizes and size; GO then enters transmission.</summary>
    private async Task<ExportParent?> InfoAsync(uint opt, byte[] data, CancellationToken ct)
    {
        var (name, at) = ReadString(data, 0);
        if (data.Length < at + 2) throw new BadOption(RepErrInvalid, "request too short");
        int count = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at));
        if (data.Length != at + 2 + (2 * count)) throw new BadOption(RepErrInvalid, "request length does not match its information requests");
        var wanted = Enumerable.Range(0, count).Select(i => BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at + 2 + (2 * i)))).ToHashSet();
        var exp = opt == OptGo ? server.Attach(this, name) : server.FindExport(name);
        if (exp is null) throw new BadOption(RepErrUnknown, $"export '{name}' not present");
        if (opt == OptGo && metaExport != name) selected = []; // contexts chosen for another export do not carry over
        if (wanted.Contains(InfoName)) await InfoReplyAsync(opt, InfoName, Encoding.UTF8.GetBytes(name), ct).ConfigureAwait(false);
        if (wanted.Contains(InfoDescription) && exp.ExportDescription is { } d)
            await InfoReplyAsync(opt, InfoDescription, Encoding.UTF8.GetBytes(d), ct).ConfigureAwait(false);
        var sizes = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(sizes, 1);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(4), PreferredBlockBytes);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(8), RequestBytesMax);
        await InfoReplyAsync(opt, InfoBlockSize, sizes, ct).ConfigureAwait(false);
        var export = new byte[10];
        BinaryPrimitives.WriteInt64BigEndian(export, exp.Size);
        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(8), TransmissionFlags(exp));
        await InfoReplyAsync(opt, InfoExport, export, ct).ConfigureAwait(false);
        await OptionReplyAsync(opt, RepAck, [], ct).ConfigureAwait(false);
        return exp;
    }

    /// <summary>
    /// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT over the contexts an export has:
    /// <c>base:allocation</c> always, <c>qemu:allocation-depth</c> when the export was added with
    /// allocation-depth, <c>qemu:dirty-bitmap:NAME</c> for each bitmap exported. An empty query list
    /// asks for every context (LIST) or selects none (SET); a prefix ending in ':' (<c>base:</c>,
    /// <c>qemu:</c>, <c>qemu:dirty-bitmap:</c>) lists all it starts.
    /// </summary>
    private async Task MetaContextAsync(uint opt, byte[] data, CancellationToken ct)
    {
        if (opt == OptSetMetaContext && !structured) throw new BadOption(RepErrInvalid, "meta contexts need structured replies");
        var (name, at) = ReadString(data, 0);
        if (data.Length < at + 4) throw new BadOption(RepErrInvalid, "request too short");
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
        at += 4;
        var queries = new List<string>();
        for (uint i = 0; i < count; i++)
        {
            (var q, at) = ReadString(data, at);
            queries.Add(q);
        }
        if (at != data.Length) throw new BadOption(RepErrInvalid, "request length does not match its queries");
        var exp = server.FindExport(name) ?? throw new BadOption(RepErrUnknown, $"export '{name}' not present");
        var offered = new List<(string Name, uint Id)> { (BaseAllocation, BaseAllocationId) };
        if (exp.AllocationDepth) offered.Add((AllocationDepth, AllocationDepthId));
        for (int i = 0; i < exp.Bitmaps.Count; i++) offered.Add((DirtyBitmapPrefix + exp.Bitmaps[i], FirstBitmapId + (uint)i));
        bool Matches(string ctx) => opt == OptListMetaContext
            ? queries.Count == 0 || queries.Any(q => q == ctx || (q.EndsWith(':') && ctx.StartsWith(q, StringComparison.Ordinal)))
            : queries.Contains(ctx);
        var chosen = offered.Where(c => Matches(c.Name)).ToList();
        if (opt == OptSetMetaContext)
        {
            metaExport = name;
            selected = [.. chosen.Select(c => c.Id)];
        }
        foreach (var (ctx, id) in chosen)
        {
            var bytes = Encoding.UTF8.GetBytes(ctx);
            var body = new byte[4 + bytes.Length];
            BinaryPrimitives.WriteUInt32BigEndian(body, id);
            bytes.CopyTo(body, 4);
            await OptionReplyAsync(opt, RepMetaContext, body, ct).ConfigureAwait(false);
        }
        await OptionReplyAsync(opt, RepAck, [], ct).ConfigureAwait(false);
    }

    private static (string Value, int Next) ReadString(byte[] data, int at)
    {
        if (data.Length < at + 4) throw new BadOption(RepErrInvalid, "request too short");
        uint len = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
        if (len > StringBytesMax) throw new BadOption(RepErrTooBig, "name too long");
        if (data.Length - at - 4 < len) throw new BadOption(RepErrInvalid, "name longer than the request");
        return (Encoding.UTF8.GetString(data, at + 4, (int)len), at + 4 + (int)len);
    }

    private Task InfoReplyAsync(uint opt, ushort type, byte[] payload, CancellationToken ct)
    {
        var body = new byte[2 + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(body, type);
        payload.CopyTo(body, 2);
        return OptionReplyAsync(opt, RepInfo, body, ct);
    }

    private async Task OptionReplyAsync(uint opt, uint type, byte[] body, CancellationToken ct)
    {
        var msg = new byte[20 + body.Length];
        BinaryPrimitives.WriteUInt64BigEndian(msg, OptReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(8), opt);
        BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(16), (uint)body.Length);
        body.CopyTo(msg, 20);
        await SendAsync(msg, ct).ConfigureAwait(false);
    }

    /// <summary>QEMU's flags: flush, FUA and cache always; trim and write-zeroes when writable; read-only exports allow multi-conn.</summary>
    private ushort TransmissionFlags(ExportParent exp)
    {
        int f = TxHasFlags | TxSendFlush | TxSendFua | TxSendCache;
        f |= exp.Writable ? TxSendTrim | TxSendWriteZeroes : TxReadOnly | TxCanMultiConn;
        if (structured) f |= TxSendDf;
        return (ushort)f;
    }
}
