using Verified.Impl.IO;

namespace Verified.Impl.Graph;

public sealed partial class BlockNode
{
    /// <summary>The node's size in bytes.</summary>
    public long Length => Driver.Length;

    /// <summary>Reads at a byte offset; the range must lie within the node.</summary>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        return Driver.ReadAsync(offset, buffer);
    }

    /// <summary>Writes at a byte offset; the range must lie within the node.</summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags = WriteFlags.None)
    {
        CheckRange(offset, data.Length);
        return Driver.WriteAsync(offset, data, flags);
    }

    /// <summary>Flushes.</summary>
    public ValueTask FlushAsync() => Driver.FlushAsync();

    /// <summary>Discards a range.</summary>
    public ValueTask DiscardAsync(long offset, long length)
    {
        CheckRange(offset, length);
        return Driver.DiscardAsync(offset, length);
    }

    /// <summary>Writes zeroes over a range.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None)
    {
        CheckRange(offset, length);
        return Driver.WriteZeroesAsync(offset, length, flags);
    }

    /// <summary>What the range holds (hole, zeroes) and for how many bytes; the range must lie within the node.</summary>
    public ValueTask<RangeStatus> StatusAsync(long offset, long length)
    {
        CheckRange(offset, length);
        return length == 0 ? ValueTask.FromResult(new RangeStatus(0, false, false)) : Driver.StatusAsync(offset, length);
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new BlockIOException(Errnos.EINVAL, $"request [{offset}, +{length}) outside node '{Name}' of {Length} bytes");
    }
}
