namespace Verified.Impl.IO;

/// <summary>Implemented by drivers whose data is allocated in clusters (qcow2): copy-before-write copies in units of at least this size.</summary>
public interface IClusterSized
{
    /// <summary>The cluster size in bytes (a power of two).</summary>
    long ClusterSize { get; }
}

/// <summary>A fixed-size bitmap, one bit per cluster. Not thread-safe: its owner locks.</summary>
internal sealed class ClusterBitmap
{
    private readonly ulong[] words;

    public ClusterBitmap(long count, bool set)
    {
        Count = count;
        words = new ulong[(count + 63) / 64];
        if (!set) return;
        Array.Fill(words, ulong.MaxValue);
        if (count % 64 != 0) words[^1] = (1UL << (int)(count % 64)) - 1;
    }

    /// <summary>The number of bits.</summary>
    public long Count { get; }

    public bool this[long i]
    {
        get => (words[i >> 6] & (1UL << (int)(i & 63))) != 0;
        set
        {
            if (value) words[i >> 6] |= 1UL << (int)(i & 63);
            else words[i >> 6] &= ~(1UL << (int)(i & 63));
        }
    }

    /// <summary>Sets or clears bits [<paramref name="from"/>, <paramref name="to"/>).</summary>
    public void Fill(long from, long to, bool value)
    {
        for (long i = from; i < to; i++) this[i] = value;
    }

    /// <summary>The number of set bits.</summary>
    public long PopCount()
    {
        long n = 0;
        foreach (var w in words) n += System.Numerics.BitOperations.PopCount(w);
        return n;
    }
}
