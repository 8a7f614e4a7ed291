using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Verified.Tests.Serve;

/// <summary>
/// A small NBD client for tests that need what real clients hide: the errno of one request, a
/// connection held open while the export is deleted, malformed requests, precise timing of writes.
/// One request at a time (no pipelining); speaks fixed newstyle with NBD_OPT_GO, optionally with
/// structured replies and <c>base:allocation</c>.
/// </summary>
public sealed class NbdTestClient : IDisposable
{
    private readonly Socket socket;
    private readonly NetworkStream stream;
    private bool structured;

    private NbdTestClient(Socket socket)
    {
        this.socket = socket;
        stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>The export's size from NBD_INFO_EXPORT.</summary>
    public long Size { get; private set; }

    /// <summary>The transmission flags from NBD_INFO_EXPORT.</summary>
    public ushort Flags { get; private set; }

    /// <summary>Connects to a unix socket path, or to host:port on TCP when <paramref name="tcp"/> is given.</summary>
    public static NbdTestClient Connect(string unixPath, IPEndPoint? tcp = null)
    {
        var s = tcp is null
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(tcp.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(tcp is null ? new UnixDomainSocketEndPoint(unixPath) : tcp);
        s.ReceiveTimeout = 30_000;
        return new NbdTestClient(s);
    }

    /// <summary>Negotiates and selects <paramref name="export"/>; returns the option reply type of GO (1 = ACK).</summary>
    public uint Go(string export, bool structuredReplies = false, bool blockStatus = false, string[]? contexts = null)
    {
        contexts ??= blockStatus ? ["base:allocation"] : [];
        blockStatus = contexts.Length > 0;
        var hello = ReadBytes(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(hello) != 0x4e42444d41474943) throw new InvalidDataException("no NBDMAGIC");
        WriteBytes(U32(3)); // fixed newstyle, no zeroes
        if (structuredReplies || blockStatus)
        {
            if (Option(8, []).Type != 1) throw new InvalidDataException("structured replies refused");
            structured = true;
        }
        if (blockStatus)
        {
            var name = Encoding.UTF8.GetBytes(export);
            var queries = contexts.Select(c => Encoding.UTF8.GetBytes(c)).SelectMany(q => Concat(U32((uint)q.Length), q)).ToArray();
            var (metaType, body) = Option(10, Concat(U32((uint)name.Length), name, U32((uint)contexts.Length), queries));
            while (metaType == 4)
            {
                ContextIds[Encoding.UTF8.GetString(body, 4, body.Length - 4)] = BinaryPrimitives.ReadUInt32BigEndian(body);
                (metaType, body) = ReadReply();
            }
            if (metaType != 1) throw new InvalidDataException($"meta contexts refused: {metaType:x}");
        }
        var n = Encoding.UTF8.GetBytes(export);
        var (type, _) = Option(7, Concat(U32((uint)n.Length), n, new byte[2]));
        while (type == 3)
        {
            var body = LastBody;
            if (BinaryPrimitives.ReadUInt16BigEndian(body) == 0)
            {
                Size = BinaryPrimitives.ReadInt64BigEndian(body.AsSpan(2));
                Flags = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(10));
            }
            (type, _) = ReadReply();
        }
        return type;
    }

    private byte[] LastBody { get; set; } = [];

    /// <summary>Negotiates with the old NBD_OPT_EXPORT_NAME; returns false when the server closed the connection instead.</summary>
    public bool ExportName(string export)
    {
        ReadBytes(18);
        WriteBytes(U32(3));
        var n = Encoding.UTF8.GetBytes(export);
        WriteBytes(Concat(U64(0x49484156454F5054), U32(1), U32((uint)n.Length), n));
        try
        {
            var reply = ReadBytes(10); // size and flags; no zero padding (NO_ZEROES)
            Size = BinaryPrimitives.ReadInt64BigEndian(reply);
            Flags = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
            return true;
        }
        catch (EndOfStreamException)
        {
            return false;
        }
    }

    /// <summary>Sends NBD_OPT_ABORT after the greeting; returns the reply type (1 = ACK).</summary>
    public uint Abort()
    {
        ReadBytes(18);
        WriteBytes(U32(3));
        return Option(2, []).Type;
    }

    /// <summary>The meta contexts the server selected, by name, with their ids.</summary>
    public Dictionary<string, uint> ContextIds { get; } = [];

    private (uint Type, byte[] Body) Option(uint opt, byte[] data)
    {
        WriteBytes(Concat(U64(0x49484156454F5054), U32(opt), U32((uint)data.Length), data));
        return ReadReply();
    }

    private (uint Type, byte[] Body) ReadReply()
    {
        var h = ReadBytes(20);
        uint type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        LastBody = ReadBytes((int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)));
        return (type, LastBody);
    }

    /// <summary>Reads; returns the NBD errno (0 on success) and the data.</summary>
    public (uint Errno, byte[] Data) Read(long offset, int length)
    {
        Request(0, 0, offset, (uint)length, []);
        if (!structured)
        {
            uint e = SimpleReply();
            return e != 0 ? (e, []) : (0, ReadBytes(length));
        }
        var data = new byte[length];
        while (true)
        {
            var (flags, type, body) = Chunk();
            if (type == 1) body.AsSpan(8).CopyTo(data.AsSpan((int)(BinaryPrimitives.ReadInt64BigEndian(body) - offset)));
            if (type >= 0x8000) return (BinaryPrimitives.ReadUInt32BigEndian(body), []);
            if ((flags & 1) != 0) return (0, data);
        }
    }

    /// <summary>Writes; returns the NBD errno.</summary>
    public uint Write(long offset, byte[] data, bool fua = false)
    {
        Request(1, fua ? (ushort)1 : (ushort)0, offset, (uint)data.Length, data);
        return SimpleReply();
    }

    /// <summary>Sends a request of any type, flags and length with no payload; returns the errno.</summary>
    public uint Raw(ushort type, ushort flags, long offset, uint length)
    {
        Request(type, flags, offset, length, []);
        if (structured && type is 0 or 7)
        {
            var (_, t, body) = Chunk();
            return t >= 0x8000 ? BinaryPrimitives.ReadUInt32BigEndian(body) : 0;
        }
        return SimpleReply();
    }

    /// <summary>Flushes; returns the errno.</summary>
    public uint Flush() => Raw(3, 0, 0, 0);

    /// <summary>base:allocation extents (length, flags) for a range; needs <see cref="Go"/> with blockStatus.</summary>
    public (uint Errno, List<(uint Length, uint Flags)> Extents) BlockStatus(long offset, uint length, ushort flags = 0)
    {
        var (errno, all) = BlockStatusAll(offset, length, flags);
        return (errno, errno != 0 ? [] : all[ContextIds["base:allocation"]]);
    }

    /// <summary>Extents (length, flags) of every selected context for a range, by context id.</summary>
    public (uint Errno, Dictionary<uint, List<(uint Length, uint Flags)>> Extents) BlockStatusAll(long offset, uint length, ushort flags = 0)
    {
        Request(7, flags, offset, length, []);
        var result = new Dictionary<uint, List<(uint, uint)>>();
        while (true)
        {
            var (chunkFlags, type, body) = Chunk();
            if (type >= 0x8000) return (BinaryPrimitives.ReadUInt32BigEndian(body), []);
            var list = new List<(uint, uint)>();
            for (int i = 4; i + 8 <= body.Length; i += 8)
                list.Add((BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(i + 4))));
            result[BinaryPrimitives.ReadUInt32BigEndian(body)] = list;
            if ((chunkFlags & 1) != 0) return (0, result);
        }
    }

    /// <summary>Sends raw bytes (for malformed requests).</summary>
    public void SendRaw(byte[] bytes) => WriteBytes(bytes);

    /// <summary>True when the server has closed the connection (a read returns end of stream).</summary>
    public bool IsClosedByServer()
    {
        try
        {
            return stream.Read(new byte[1]) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>Sends NBD_CMD_DISC and closes.</summary>
    public void Disconnect()
    {
        Request(2, 0, 0, 0, []);
        socket.Shutdown(SocketShutdown.Both);
    }

    private void Request(ushort type, ushort flags, long offset, uint length, byte[] payload)
    {
        var h = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(h, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), 0x1234);
        BinaryPrimitives.WriteInt64BigEndian(h.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), length);
        WriteBytes(Concat(h, payload));
    }

    private uint SimpleReply()
    {
        var r = ReadBytes(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(r) != 0x67446698) throw new InvalidDataException("not a simple reply");
        return BinaryPrimitives.ReadUInt32BigEndian(r.AsSpan(4));
    }

    private (ushort Flags, ushort Type, byte[] Body) Chunk()
    {
        var h = ReadBytes(20);
        if (BinaryPrimitives.ReadUInt32BigEndian(h) != 0x668e33ef) throw new InvalidDataException("not a structured reply");
        return (BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6)),
            ReadBytes((int)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16))));
    }

    private byte[] ReadBytes(int n)
    {
        var b = new byte[n];
        stream.ReadExactly(b);
        return b;
    }

    private void WriteBytes(byte[] b) => stream.Write(b);

    private static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }

    private static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, v);
        return b;
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    /// <inheritdoc/>
    public void Dispose() => stream.Dispose();
}
