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
        return Dirtying(Driver.WriteAsync(offset, data, flags), offset, data.Length);
    }

    /// <summary>Flushes.</summary>
    public ValueTask FlushAsync() => Driver.FlushAsync();

    /// <summary>Discards a range.</summary>
    public ValueTask DiscardAsync(long offset, long length)
    {
        CheckRange(offset, length);
        return Dirtying(Driver.DiscardAsync(offset, length), offset, length);
    }

    /// <summary>Writes zeroes over a range.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags = WriteFlags.None)
    {
        CheckRange(offset, length);
        return Dirtying(Driver.WriteZeroesAsync(offset, length, flags), offset, length);
    }

    /// <summary>Marks the recording bitmaps once the request has run, whatever its outcome (QEMU's bdrv_co_write_req_finish).</summary>
    private ValueTask Dirtying(ValueTask request, long offset, long length)
    {
        var bitmaps = recording;
        if (bitmaps.Length == 0) return request;
        if (request.IsCompletedSuccessfully)
        {
            foreach (var b in bitmaps) b.Mark(offset, length);
            return request;
        }
        return Slow(request, bitmaps, offset, length);

        static async ValueTask Slow(ValueTask request, DirtyBits[] bitmaps, long offset, long length)
        {
            try
            {
                await request.ConfigureAwait(false);
            }
            finally
            {
                foreach (var b in bitmaps) b.Mark(offset, length);
            }
        }
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new BlockIOException(Errnos.EINVAL, $"request [{offset}, +{length}) outside node '{Name}' of {Length} bytes");
    }
}
