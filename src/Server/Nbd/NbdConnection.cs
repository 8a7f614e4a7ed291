using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using static Verified.Server.Nbd.NbdProtocol;

namespace Verified.Server.Nbd;

/// <summary>
/// One NBD client: negotiation, then requests read one after another and served concurrently (up to
/// <see cref="InflightMax"/>), each reply sent whole under one lock. A request the protocol cannot
/// frame (bad magic, a write longer than <see cref="RequestBytesMax"/>) closes this connection only;
/// a request that is well framed but wrong gets its NBD error.
/// </summary>
/// <remarks>
/// Requests enter the graph through the export's <see cref="RootParent"/> methods, so graph changes
/// drain them and the export's permissions decide what may be written.
/// </remarks>
internal sealed partial class NbdConnection : IDisposable
{
    /// <summary>Largest read or write payload (QEMU's NBD_MAX_BUFFER_SIZE, 32 MiB).</summary>
    public const int RequestBytesMax = 32 * 1024 * 1024;

    /// <summary>Requests served at once per connection (QEMU's NBD_MAX_REQUESTS).</summary>
    public const int InflightMax = 16;

    /// <summary>Block size advertised as preferred.</summary>
    public const uint PreferredBlockBytes = 4096;

    /// <summary>Extents one block-status reply describes at most (the rest is asked again by the client).</summary>
    public const int StatusExtentsMax = 4096;

    private readonly Socket socket;
    private readonly NbdServer server;
    private readonly SocketReader reader;
    private readonly SemaphoreSlim sendLock = new(1, 1);
    private readonly SemaphoreSlim slots = new(InflightMax, InflightMax);
    private readonly CancellationTokenSource closing = new();
    private bool structured;
    private uint[] selected = [];
    private string? metaExport;
    private int inflight;
    private readonly TaskCompletionSource idle = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public NbdConnection(Socket socket, NbdServer server)
    {
        this.socket = socket;
        this.server = server;
        reader = new SocketReader(socket);
    }

    /// <summary>The export this client chose, once it has chosen.</summary>
    public ExportParent? Export { get; internal set; }

    /// <summary>
    /// Ends the connection from the server's side (QEMU's client_close): no further request is read,
    /// requests in flight complete in the graph, and their replies may be lost, as a client that has
    /// stopped reading must not hold the server up.
    /// </summary>
    public void Close()
    {
        try
        {
            closing.Cancel();
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // already closed
        }
    }

    /// <summary>Serves the client until it disconnects, misbehaves or is closed; never throws for the client's doing.</summary>
    public async Task RunAsync()
    {
        var ct = closing.Token;
        try
        {
            var exp = await HandshakeAsync(ct).ConfigureAwait(false);
            if (exp is not null) await TransmitAsync(exp, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is EndOfStreamException or SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The client went away or the server closed the connection.
        }
        finally
        {
            // Requests already admitted complete before the connection (and the export's last client) is gone.
            if (Interlocked.Decrement(ref inflight) >= 0) await idle.Task.ConfigureAwait(false);
            server.Detach(this);
            Dispose();
        }
    }

    /// <summary>Releases the socket and the locks; <see cref="RunAsync"/> does it when the client has gone.</summary>
    public void Dispose()
    {
        socket.Dispose();
        closing.Dispose();
        sendLock.Dispose();
        slots.Dispose();
    }

    private async Task TransmitAsync(ExportParent exp, CancellationToken ct)
    {
        var head = new byte[RequestHeaderBytes];
        while (true)
        {
            await reader.ReadExactlyAsync(head, ct).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt32BigEndian(head) != RequestMagic) return; // not a request: nothing after it can be framed
            var r = new Request(
                BinaryPrimitives.ReadUInt16BigEndian(head.AsSpan(4)),
                BinaryPrimitives.ReadUInt16BigEndian(head.AsSpan(6)),
                BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(8)),
                BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(16)),
                BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(24)));
            if (r.Type == CmdDisc) return;
            byte[]? payload = null;
            if (r.Type == CmdWrite)
            {
                if (r.Length > RequestBytesMax)
                {
                    // The payload cannot be skipped safely: say why, then end this connection (QEMU does the same).
                    await SimpleReplyAsync(r.Cookie, EINVAL, ct).ConfigureAwait(false);
                    return;
                }
                payload = ArrayPool<byte>.Shared.Rent((int)r.Length);
                try
                {
                    await reader.ReadExactlyAsync(payload.AsMemory(0, (int)r.Length), ct).ConfigureAwait(false);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(payload);
                    throw;
                }
            }
            await slots.WaitAsync(ct).ConfigureAwait(false);
            Interlocked.Increment(ref inflight);
            _ = ServeAsync(exp, r, payload);
        }
    }

    private readonly record struct Request(ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length);

    private async Task ServeAsync(ExportParent exp, Request r, byte[]? payload)
    {
        try
        {
            await HandleAsync(exp, r, payload).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            // The reply could not be sent: the connection is going away.
            Close();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A bug serving one request must not take the daemon down; this client is dropped.
            server.Log($"request failed: {e}");
            Close();
        }
        finally
        {
            if (payload is not null) ArrayPool<byte>.Shared.Return(payload);
            slots.Release();
            if (Interlocked.Decrement(ref inflight) < 0) idle.TrySetResult();
        }
    }

    /// <summary>QEMU's nbd_co_receive_request checks (flags, then read-only, then range), then the request itself.</summary>
    private async Task HandleAsync(ExportParent exp, Request r, byte[]? payload)
    {
        uint err = Validate(exp, r);
        if (err != 0)
        {
            await ErrorReplyAsync(r, err).ConfigureAwait(false);
            return;
        }
        try
        {
            switch (r.Type)
            {
                case CmdRead:
                    await ReadAsync(exp, r).ConfigureAwait(false);
                    return;
                case CmdWrite:
                    await exp.WriteAsync((long)r.Offset, payload.AsMemory(0, (int)r.Length), Fua(r)).ConfigureAwait(false);
                    break;
                case CmdFlush:
                    await exp.FlushAsync().ConfigureAwait(false);
                    break;
                case CmdTrim:
                    await exp.DiscardAsync((long)r.Offset, r.Length).ConfigureAwait(false);
                    if ((r.Flags & CmdFlagFua) != 0) await exp.FlushAsync().ConfigureAwait(false);
                    break;
                case CmdWriteZeroes:
                    var flags = Fua(r) | ((r.Flags & CmdFlagNoHole) == 0 ? WriteFlags.MayUnmap : WriteFlags.None);
                    await exp.WriteZeroesAsync((long)r.Offset, r.Length, flags).ConfigureAwait(false);
                    break;
                case CmdCache:
                    break; // advisory: nothing to prefetch into
                case CmdBlockStatus:
                    await BlockStatusAsync(exp, r).ConfigureAwait(false);
                    return;
            }
        }
        catch (BlockIOException e)
        {
            await ErrorReplyAsync(r, WireErrno(e.Errno)).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or ArgumentException or NotSupportedException)
        {
            // A graph that is being torn down under the request: EIO for this request, the rest go on.
            server.Log($"request {r.Type} failed: {e.Message}");
            await ErrorReplyAsync(r, EIO).ConfigureAwait(false);
            return;
        }
        await SimpleReplyAsync(r.Cookie, 0, CancellationToken.None).ConfigureAwait(false);
    }

    private static WriteFlags Fua(Request r) => (r.Flags & CmdFlagFua) != 0 ? WriteFlags.Fua : WriteFlags.None;

    private uint Validate(ExportParent exp, Request r)
    {
        int valid = CmdFlagFua;
        if (r.Type == CmdRead && structured) valid |= CmdFlagDf;
        if (r.Type == CmdWriteZeroes) valid |= CmdFlagNoHole;
        if (r.Type == CmdBlockStatus) valid |= CmdFlagReqOne;
        if (r.Type is not (CmdRead or CmdWrite or CmdFlush or CmdTrim or CmdCache or CmdWriteZeroes or CmdBlockStatus)) return EINVAL;
        if ((r.Flags & ~valid) != 0) return EINVAL;
        if (r.Type is CmdRead or CmdCache && r.Length > RequestBytesMax) return EINVAL;
        if (r.Type == CmdBlockStatus && (!structured || selected.Length == 0 || r.Length == 0)) return EINVAL;
        if (r.Type is CmdWrite or CmdTrim or CmdWriteZeroes && !exp.Writable) return EPERM;
        long size = exp.Size;
        if (r.Offset > (ulong)size || r.Length > (ulong)size - r.Offset)
            return r.Type is CmdWrite or CmdWriteZeroes ? ENOSPC : EINVAL; // QEMU's choice past the end
        return 0;
    }

    private async Task ReadAsync(ExportParent exp, Request r)
    {
        int header = structured ? StructuredHeaderBytes + 8 : SimpleReplyHeaderBytes;
        var buf = ArrayPool<byte>.Shared.Rent(header + (int)r.Length);
        try
        {
            try
            {
                await exp.ReadAsync((long)r.Offset, buf.AsMemory(header, (int)r.Length)).ConfigureAwait(false);
            }
            catch (BlockIOException e)
            {
                await ErrorReplyAsync(r, WireErrno(e.Errno)).ConfigureAwait(false);
                return;
            }
            if (structured)
            {
                WriteChunkHeader(buf, ReplyFlagDone, ReplyTypeOffsetData, r.Cookie, 8 + r.Length);
                BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(StructuredHeaderBytes), r.Offset);
            }
            else
            {
                WriteSimpleHeader(buf, 0, r.Cookie);
            }
            await SendAsync(buf.AsMemory(0, header + (int)r.Length), CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>One chunk per selected context, in id order (the last one ends the reply), each from the graph.</summary>
    private async Task BlockStatusAsync(ExportParent exp, Request r)
    {
        var chunks = new List<byte[]>();
        try
        {
            foreach (var id in selected)
            {
                Func<long, long, ValueTask<(uint Flags, long Bytes)>> query = id switch
                {
                    BaseAllocationId => async (pos, n) =>
                    {
                        var s = await exp.StatusAsync(pos, n).ConfigureAwait(false);
                        return ((s.Hole ? StateHole : 0) | (s.Zero ? StateZero : 0), s.Bytes);
                    },
                    AllocationDepthId => async (pos, n) =>
                    {
                        var (depth, bytes) = await exp.AllocationDepthAsync(pos, n).ConfigureAwait(false);
                        return ((uint)depth, bytes);
                    },
                    _ => async (pos, n) =>
                    {
                        var (dirty, bytes) = await exp.DirtyStatusAsync(exp.Bitmaps[(int)(id - FirstBitmapId)], pos, n).ConfigureAwait(false);
                        return (dirty ? StateDirty : 0, bytes);
                    },
                };
                chunks.Add(await ExtentsAsync(r, id, query).ConfigureAwait(false));
            }
        }
        catch (BlockIOException e)
        {
            await ErrorReplyAsync(r, WireErrno(e.Errno)).ConfigureAwait(false);
            return;
        }
        for (int i = 0; i < chunks.Count; i++)
        {
            ushort flags = i == chunks.Count - 1 ? ReplyFlagDone : (ushort)0;
            WriteChunkHeader(chunks[i], flags, ReplyTypeBlockStatus, r.Cookie, (uint)(chunks[i].Length - StructuredHeaderBytes));
        }
        await SendAsync(chunks.SelectMany(c => c).ToArray(), CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>A block-status chunk (header left blank) for one context: extents with equal flags merged, at most <see cref="StatusExtentsMax"/> (1 with REQ_ONE).</summary>
    private static async Task<byte[]> ExtentsAsync(Request r, uint contextId, Func<long, long, ValueTask<(uint Flags, long Bytes)>> query)
    {
        var extents = new List<(uint Length, uint Flags)>();
        long pos = (long)r.Offset, end = pos + r.Length;
        int max = (r.Flags & CmdFlagReqOne) != 0 ? 1 : StatusExtentsMax;
        while (pos < end)
        {
            var (flags, bytes) = await query(pos, end - pos).ConfigureAwait(false);
            long n = Math.Max(1, Math.Min(bytes, end - pos));
            if (extents.Count > 0 && extents[^1].Flags == flags) extents[^1] = (extents[^1].Length + (uint)n, flags);
            else if (extents.Count == max) break;
            else extents.Add(((uint)n, flags));
            pos += n;
        }
        var msg = new byte[StructuredHeaderBytes + 4 + (8 * extents.Count)];
        BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(StructuredHeaderBytes), contextId);
        for (int i = 0; i < extents.Count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(StructuredHeaderBytes + 4 + (8 * i)), extents[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(StructuredHeaderBytes + 8 + (8 * i)), extents[i].Flags);
        }
        return msg;
    }

    /// <summary>An error as the negotiated reply style says it: a structured error chunk for reads and block status, else a simple reply.</summary>
    private Task ErrorReplyAsync(Request r, uint errno)
    {
        if (!structured || r.Type is not (CmdRead or CmdBlockStatus)) return SimpleReplyAsync(r.Cookie, errno, CancellationToken.None);
        var msg = new byte[StructuredHeaderBytes + 6];
        WriteChunkHeader(msg, ReplyFlagDone, ReplyTypeError, r.Cookie, 6);
        BinaryPrimitives.WriteUInt32BigEndian(msg.AsSpan(StructuredHeaderBytes), errno);
        return SendAsync(msg, CancellationToken.None);
    }

    private Task SimpleReplyAsync(ulong cookie, uint errno, CancellationToken ct)
    {
        var msg = new byte[SimpleReplyHeaderBytes];
        WriteSimpleHeader(msg, errno, cookie);
        return SendAsync(msg, ct);
    }

    private static void WriteSimpleHeader(Span<byte> b, uint errno, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(b, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], errno);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], cookie);
    }

    private static void WriteChunkHeader(Span<byte> b, ushort flags, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(b, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(b[16..], length);
    }

    /// <summary>Sends one whole message; messages never interleave.</summary>
    private async Task SendAsync(ReadOnlyMemory<byte> msg, CancellationToken ct)
    {
        await sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            while (msg.Length > 0)
            {
                int n = await socket.SendAsync(msg, SocketFlags.None, ct).ConfigureAwait(false);
                msg = msg[n..];
            }
        }
        finally
        {
            sendLock.Release();
        }
    }
}
