using System.Buffers.Binary;
using System.Diagnostics;

namespace Verified.Tests.Serve;

/// <summary>
/// A writer that keeps an NBD export busy from its own thread: 4 KiB blocks chosen by a seeded
/// random sequence, each filled with the write's sequence number, so that any block read back says
/// which write it came from. It keeps the reference image of every acknowledged write, a log of when
/// each write was sent and acknowledged, and every error the server returned.
/// </summary>
public sealed class StampedWriter : IDisposable
{
    /// <summary>Bytes per write.</summary>
    public const int BlockBytes = 4096;

    private readonly NbdTestClient client;
    private readonly int first;
    private readonly int blocks;
    private readonly Random random;
    private readonly long[] lastAcked;
    private readonly List<(int Block, long Seq, long Sent, long Acked)> log = [];
    private readonly List<string> errors = [];
    private readonly Thread thread;
    private volatile bool stop;
    private (int Block, long Seq) inFlight = (-1, 0);
    private long count;

    /// <summary>Connects to <paramref name="export"/> and starts writing blocks [<paramref name="firstBlock"/>, +<paramref name="blockCount"/>) (all of <paramref name="size"/> by default).</summary>
    public StampedWriter(string socket, string export, long size, int seed, int firstBlock = 0, int blockCount = 0)
    {
        client = NbdTestClient.Connect(socket);
        if (client.Go(export) != 1) throw new InvalidOperationException($"export {export} refused");
        first = firstBlock;
        blocks = blockCount > 0 ? blockCount : (int)(size / BlockBytes) - firstBlock;
        lastAcked = new long[blocks];
        random = new Random(seed);
        thread = new Thread(Loop) { IsBackground = true, Name = $"writer {export}" };
        thread.Start();
    }

    /// <summary>The writer's first block; <see cref="Expected"/> starts there.</summary>
    public int FirstBlock => first;

    /// <summary>Writes acknowledged so far.</summary>
    public long Count => Interlocked.Read(ref count);

    /// <summary>Errors the server returned (errno and what was written).</summary>
    public IReadOnlyList<string> Errors
    {
        get
        {
            lock (log) return [.. errors];
        }
    }

    private void Loop()
    {
        var data = new byte[BlockBytes];
        for (long seq = 1; !stop; seq++)
        {
            int block = random.Next(blocks);
            Fill(data, seq);
            long sent = Stopwatch.GetTimestamp();
            lock (log) inFlight = (block, seq);
            uint errno;
            try
            {
                errno = client.Write((long)(first + block) * BlockBytes, data);
            }
            catch (IOException e)
            {
                lock (log) errors.Add($"write {seq} to block {block}: {e.Message}");
                return;
            }
            long acked = Stopwatch.GetTimestamp();
            lock (log)
            {
                if (errno != 0) errors.Add($"write {seq} to block {block}: errno {errno}");
                else
                {
                    lastAcked[block] = seq;
                    log.Add((block, seq, sent, acked));
                }
                inFlight = (-1, 0);
            }
            Interlocked.Increment(ref count);
        }
    }

    /// <summary>Waits until <paramref name="more"/> further writes have been acknowledged (bounded by <paramref name="timeout"/>).</summary>
    public void WaitFor(long more, TimeSpan timeout)
    {
        long target = Count + more;
        var sw = Stopwatch.StartNew();
        while (Count < target && sw.Elapsed < timeout && thread.IsAlive) Thread.Sleep(5);
        if (Count < target) throw new TimeoutException($"the writer managed {Count} writes, not {target}; errors: {string.Join("; ", Errors)}");
    }

    /// <summary>Stops writing and waits for the last write.</summary>
    public void Stop()
    {
        stop = true;
        thread.Join();
    }

    /// <summary>Whether this writer owns block <paramref name="block"/> of the export.</summary>
    public bool Owns(int block) => block >= first && block < first + blocks;

    /// <summary>The sequence number of the last acknowledged write to export block <paramref name="block"/> (0 if none).</summary>
    public long LastAcked(int block)
    {
        lock (log) return lastAcked[block - first];
    }

    /// <summary>The writer's blocks as every acknowledged write makes them (blocks never written stay zero).</summary>
    public byte[] Expected()
    {
        var image = new byte[(long)blocks * BlockBytes];
        lock (log)
        {
            for (int b = 0; b < blocks; b++)
            {
                if (lastAcked[b] != 0) Fill(image.AsSpan(b * BlockBytes, BlockBytes), lastAcked[b]);
            }
        }
        return image;
    }

    /// <summary>
    /// Whether <paramref name="image"/> is the export as it was at one instant between
    /// <paramref name="from"/> and <paramref name="to"/> (timestamps): every block holds the last write
    /// acknowledged before <paramref name="from"/>, or a write in flight across the window. Returns the
    /// first block that is not, with what it holds, or null.
    /// </summary>
    public string? CheckPointInTime(byte[] image, long from, long to)
    {
        lock (log)
        {
            for (int b = 0; b < blocks; b++)
            {
                var block = image.AsSpan((first + b) * BlockBytes, BlockBytes);
                long stamp = BinaryPrimitives.ReadInt64LittleEndian(block);
                var expect = new byte[BlockBytes];
                Fill(expect, stamp);
                if (!block.SequenceEqual(expect)) return $"block {b} is torn or not a stamp";
                var writes = log.Where(w => w.Block == b).ToList();
                long before = writes.Where(w => w.Acked < from).Select(w => w.Seq).DefaultIfEmpty(0).Max();
                bool acrossWindow = writes.Any(w => w.Seq == stamp && w.Sent < to && w.Acked > from);
                if (stamp != before && !acrossWindow) return $"block {b} holds write {stamp}, expected {before} (or a write in flight)";
            }
        }
        return null;
    }

    /// <summary>
    /// Whether the export's whole <paramref name="image"/> holds every acknowledged write of this
    /// writer; the one write that may have been in flight when the writer stopped may be there or not.
    /// Returns the first block that is wrong, or null.
    /// </summary>
    public string? CheckHoldsAcknowledged(byte[] image)
    {
        var expected = Expected();
        var written = new byte[BlockBytes];
        lock (log)
        {
            for (int b = 0; b < blocks; b++)
            {
                var have = image.AsSpan((first + b) * BlockBytes, BlockBytes);
                if (have.SequenceEqual(expected.AsSpan(b * BlockBytes, BlockBytes))) continue;
                if (inFlight.Block == b)
                {
                    Fill(written, inFlight.Seq);
                    if (have.SequenceEqual(written)) continue;
                }
                return $"block {first + b} lacks write {lastAcked[b]}";
            }
        }
        return null;
    }

    /// <summary>Acknowledged writes sent after <paramref name="after"/> (a timestamp).</summary>
    public int WritesAfter(long after)
    {
        lock (log) return log.Count(w => w.Sent > after);
    }

    /// <summary>Fills a block with a stamp.</summary>
    public static void Fill(Span<byte> block, long seq)
    {
        for (int i = 0; i < block.Length; i += 8) BinaryPrimitives.WriteInt64LittleEndian(block[i..], seq);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!stop) Stop();
        client.Dispose();
    }
}
