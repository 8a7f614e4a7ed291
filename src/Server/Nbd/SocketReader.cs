using System.Net.Sockets;

namespace Verified.Server.Nbd;

/// <summary>
/// Exact reads from a stream socket through one buffer, so that small request headers that arrive
/// together cost one receive call; large payloads go straight into the caller's memory.
/// </summary>
/// <remarks>Not thread-safe: one reader per connection.</remarks>
internal sealed class SocketReader(Socket socket)
{
    /// <summary>Bytes buffered ahead of the caller (a few dozen request headers, or one small write).</summary>
    public const int BufferBytes = 64 * 1024;

    private readonly byte[] buffer = new byte[BufferBytes];
    private int start;
    private int end;

    /// <summary>Fills <paramref name="into"/>; throws <see cref="EndOfStreamException"/> when the peer closes first.</summary>
    public async ValueTask ReadExactlyAsync(Memory<byte> into, CancellationToken ct)
    {
        int n = Math.Min(end - start, into.Length);
        buffer.AsMemory(start, n).CopyTo(into);
        start += n;
        into = into[n..];
        while (into.Length > 0)
        {
            if (into.Length >= BufferBytes)
            {
                int r = await socket.ReceiveAsync(into, SocketFlags.None, ct).ConfigureAwait(false);
                if (r == 0) throw new EndOfStreamException("the client closed the connection");
                into = into[r..];
                continue;
            }
            start = 0;
            end = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, ct).ConfigureAwait(false);
            if (end == 0) throw new EndOfStreamException("the client closed the connection");
            n = Math.Min(end, into.Length);
            buffer.AsMemory(0, n).CopyTo(into);
            start = n;
            into = into[n..];
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes.</summary>
    public async ValueTask SkipAsync(long count, CancellationToken ct)
    {
        var scratch = new byte[(int)Math.Min(count, BufferBytes)];
        while (count > 0)
        {
            int n = (int)Math.Min(count, scratch.Length);
            await ReadExactlyAsync(scratch.AsMemory(0, n), ct).ConfigureAwait(false);
            count -= n;
        }
    }
}
