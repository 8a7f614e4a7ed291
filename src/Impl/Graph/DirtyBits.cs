namespace Verified.Impl.Graph;

/// <summary>
/// The dirty bits of one named bitmap: one bit per <see cref="Granularity"/> bytes, set when a write,
/// write-zeroes or discard reaches the node while the bitmap records (QEMU's <c>bdrv_set_dirty</c>).
/// Sparse (a word per 64 granules touched), so large nodes cost nothing until written. Thread-safe.
/// </summary>
public sealed class DirtyBits
{
    private const int WordBits = 64;
    private readonly object sync = new();
    private readonly Dictionary<long, ulong> words = [];

    /// <summary>Creates an empty bitmap of <paramref name="granularity"/> bytes per bit (a power of two).</summary>
    public DirtyBits(long granularity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(granularity);
        Granularity = granularity;
    }

    /// <summary>Bytes per bit.</summary>
    public long Granularity { get; }

    /// <summary>Dirty bytes: set bits times the granularity, as QEMU's <c>count</c>.</summary>
    public long Count
    {
        get
        {
            lock (sync)
            {
                long n = 0;
                foreach (var w in words.Values) n += System.Numerics.BitOperations.PopCount(w);
                return n * Granularity;
            }
        }
    }

    /// <summary>Sets the bits covering [<paramref name="offset"/>, +<paramref name="length"/>).</summary>
    public void Mark(long offset, long length)
    {
        if (length <= 0) return;
        long first = offset / Granularity, end = (offset + length + Granularity - 1) / Granularity;
        lock (sync)
        {
            for (long i = first; i < end; i++)
            {
                words.TryGetValue(i / WordBits, out var w);
                words[i / WordBits] = w | (1UL << (int)(i % WordBits));
            }
        }
    }

    /// <summary>Whether any bit covering [<paramref name="offset"/>, +<paramref name="length"/>) is set.</summary>
    public bool IsDirty(long offset, long length)
    {
        long first = offset / Granularity, end = (offset + Math.Max(1, length) + Granularity - 1) / Granularity;
        lock (sync)
        {
            for (long i = first; i < end; i++)
            {
                if (words.TryGetValue(i / WordBits, out var w) && (w & (1UL << (int)(i % WordBits))) != 0) return true;
            }
        }
        return false;
    }

    /// <summary>The dirty byte ranges, in order (each a run of set bits).</summary>
    public IReadOnlyList<(long Offset, long Length)> Ranges()
    {
        List<long> bits;
        lock (sync) bits = [.. words.SelectMany(kv => Enumerable.Range(0, WordBits).Where(b => (kv.Value & (1UL << b)) != 0).Select(b => kv.Key * WordBits + b))];
        bits.Sort();
        var runs = new List<(long, long)>();
        for (int i = 0; i < bits.Count;)
        {
            int j = i;
            while (j + 1 < bits.Count && bits[j + 1] == bits[j] + 1) j++;
            runs.Add((bits[i] * Granularity, (bits[j] - bits[i] + 1) * Granularity));
            i = j + 1;
        }
        return runs;
    }

    /// <summary>A copy of the bits (to restore on abort).</summary>
    public Dictionary<long, ulong> Save()
    {
        lock (sync) return new(words);
    }

    /// <summary>Puts back bits taken by <see cref="Save"/>.</summary>
    public void Restore(Dictionary<long, ulong> saved)
    {
        ArgumentNullException.ThrowIfNull(saved);
        lock (sync)
        {
            words.Clear();
            foreach (var kv in saved) words[kv.Key] = kv.Value;
        }
    }

    /// <summary>Clears every bit.</summary>
    public void Clear()
    {
        lock (sync) words.Clear();
    }

    /// <summary>Sets every bit set in <paramref name="other"/> (granularities may differ: its ranges are marked).</summary>
    public void Merge(DirtyBits other)
    {
        ArgumentNullException.ThrowIfNull(other);
        foreach (var (o, l) in other.Ranges()) Mark(o, l);
    }
}
