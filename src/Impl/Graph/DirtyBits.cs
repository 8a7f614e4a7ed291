using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Verified.Impl.Graph;

/// <summary>
/// The contents of a dirty bitmap: one bit per <see cref="Granularity"/> bytes of the node, set by
/// every write, write-zeroes and discard that completes on the node while the bitmap is enabled
/// (QEMU's bdrv_set_dirty). Marking is lock-free (writes run concurrently); clearing, merging and
/// restoring happen in graph commands, which run with I/O drained.
/// </summary>
/// <remarks>The bit array covers the node's size when the bitmap was added; a range beyond it (after
/// a resize) is reported dirty, which is always a safe answer for a backup.</remarks>
public sealed class DirtyBits
{
    private readonly long[] words;

    /// <summary>Creates an all-clean bitmap of <paramref name="granularity"/> bytes per bit over <paramref name="length"/> bytes.</summary>
    public DirtyBits(long granularity, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(granularity);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Granularity = granularity;
        long bits = (length + granularity - 1) / granularity;
        words = new long[(bits + 63) / 64];
        Bits = bits;
    }

    /// <summary>Bytes per bit.</summary>
    public long Granularity { get; }

    /// <summary>Bits held.</summary>
    public long Bits { get; }

    /// <summary>Marks the bits that <c>[offset, offset + length)</c> touches.</summary>
    public void Mark(long offset, long length)
    {
        if (length <= 0) return;
        long last = Math.Min((offset + length - 1) / Granularity, Bits - 1);
        for (long bit = offset / Granularity; bit <= last; bit++)
            Interlocked.Or(ref words[bit >> 6], 1L << (int)(bit & 63));
    }

    /// <summary>Whether the range starting at <paramref name="offset"/> is dirty, and for how many bytes (at least 1, at most <paramref name="length"/>) that holds.</summary>
    public (bool Dirty, long Bytes) Status(long offset, long length)
    {
        long bit = offset / Granularity;
        if (bit >= Bits) return (true, length);
        bool dirty = IsSet(bit);
        long end = offset + length;
        long next = (bit + 1) * Granularity;
        while (next < end && bit + 1 < Bits && IsSet(bit + 1) == dirty)
        {
            bit++;
            next += Granularity;
        }
        return (dirty, Math.Min(next, end) - offset);
    }

    private bool IsSet(long bit) => (Volatile.Read(ref words[bit >> 6]) & (1L << (int)(bit & 63))) != 0;

    /// <summary>Dirty bytes: set bits times the granularity (QEMU's <c>count</c> in query-named-block-nodes).</summary>
    public long DirtyBytes
    {
        get
        {
            long n = 0;
            for (int i = 0; i < words.Length; i++) n += System.Numerics.BitOperations.PopCount((ulong)Volatile.Read(ref words[i]));
            return n * Granularity;
        }
    }

    /// <summary>Clears every bit.</summary>
    public void Clear() => Array.Clear(words);

    /// <summary>Sets every bit set in <paramref name="other"/> (same granularity, or each of its dirty ranges is marked).</summary>
    public void Merge(DirtyBits other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.Granularity == Granularity && other.words.Length == words.Length)
        {
            for (int i = 0; i < words.Length; i++) words[i] |= other.words[i];
            return;
        }
        for (long bit = 0; bit < other.Bits; bit++)
        {
            if (other.IsSet(bit)) Mark(bit * other.Granularity, other.Granularity);
        }
    }

    /// <summary>
    /// Clears every bit and returns the bits that were set, word by word atomically: a bit a concurrent
    /// <see cref="Mark"/> sets is either in the result or still set afterwards, never lost.
    /// </summary>
    public long[] TakeAll()
    {
        var taken = new long[words.Length];
        for (int i = 0; i < words.Length; i++) taken[i] = Interlocked.Exchange(ref words[i], 0);
        return taken;
    }

    /// <summary>
    /// Copies the bits from bit <paramref name="firstBit"/> (a multiple of 64) into <paramref name="dest"/> in qcow2's
    /// serialized order: bit <c>i</c> is bit <c>i % 8</c> of byte <c>i / 8</c> (QEMU's little-endian word order).
    /// </summary>
    public void Serialize(long firstBit, Span<byte> dest)
    {
        var from = BytesFrom(firstBit);
        int n = Math.Min(dest.Length, from.Length);
        from[..n].CopyTo(dest);
        dest[n..].Clear();
    }

    /// <summary>Sets the bits from bit <paramref name="firstBit"/> (a multiple of 64) from <paramref name="src"/> (the order of <see cref="Serialize"/>); bits past <see cref="Bits"/> are ignored.</summary>
    public void Deserialize(long firstBit, ReadOnlySpan<byte> src)
    {
        var to = BytesFrom(firstBit);
        int n = Math.Min(src.Length, to.Length);
        src[..n].CopyTo(to);
        TrimTail();
    }

    /// <summary>The words as bytes from bit <paramref name="firstBit"/> on: the serialized order on a little-endian host.</summary>
    private Span<byte> BytesFrom(long firstBit)
    {
        Debug.Assert(firstBit % 64 == 0 && firstBit >= 0);
        Debug.Assert(BitConverter.IsLittleEndian, "the byte view of the words is the serialized order only on little-endian hosts");
        var bytes = MemoryMarshal.AsBytes(words.AsSpan());
        return bytes[(int)Math.Min(firstBit / 8, bytes.Length)..];
    }

    /// <summary>Sets every bit from <paramref name="firstBit"/> for <paramref name="count"/> bits (a table entry flagged all-ones).</summary>
    public void SetRange(long firstBit, long count)
    {
        long last = Math.Min(firstBit + count, Bits);
        for (long bit = firstBit; bit < last; bit++) words[bit >> 6] |= 1L << (int)(bit & 63);
    }

    /// <summary>Clears the bits past <see cref="Bits"/> in the last word (a deserialized cluster may carry some).</summary>
    private void TrimTail()
    {
        int tail = (int)(Bits & 63);
        if (tail != 0 && words.Length > 0) words[^1] &= (1L << tail) - 1;
    }

    /// <summary>A copy, to restore on abort.</summary>
    public long[] Save() => (long[])words.Clone();

    /// <summary>Puts back what <see cref="Save"/> returned.</summary>
    public void Restore(long[] saved)
    {
        ArgumentNullException.ThrowIfNull(saved);
        Array.Copy(saved, words, words.Length);
    }
}
