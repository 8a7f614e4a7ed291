using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// Implemented by format drivers that know which ranges their own layer holds (qcow2):
/// QEMU's <c>bdrv_is_allocated</c> for one layer.
/// </summary>
public interface IAllocationStatus
{
    /// <summary>
    /// Whether this node's own layer holds data at <paramref name="offset"/>, and for how many bytes
    /// (at least 1, at most <paramref name="length"/>) that answer stays the same.
    /// </summary>
    ValueTask<(bool Allocated, long Bytes)> IsAllocatedAsync(long offset, long length);
}

/// <summary>
/// The copy-on-read filter (block/copy-on-read.c): reads are served by <c>file</c>, and data that the
/// top layer (the <c>file</c> node) does not hold itself but reads from its backing chain is written
/// back into it, so later reads find it there. Writes, write-zeroes, discards and flushes forward.
/// </summary>
/// <remarks>
/// <para>
/// The rule Verified applies, per request:
/// if the <c>file</c> node has no <c>backing</c> child, reads pass straight through (nothing can come
/// from below). Otherwise the read is split by the top layer's allocation: ranges the top holds are
/// read; ranges it does not hold are read and written back into the top when the data comes from
/// above <c>bottom</c> (inclusive: QEMU copies data held by the bottom node itself, never data below it)
/// or when there is no <c>bottom</c>.
/// </para>
/// <para>
/// Allocation comes from <see cref="IAllocationStatus"/> (qcow2 implements it): only ranges the top does
/// not hold are copied, and <c>bottom</c> stops the copy at the right layer. A top layer without the
/// interface counts as holding nothing (every read is copied up: the same bytes written back, harmless),
/// and a layer below without it as holding everything (so, as QEMU does when the query fails, the data is
/// copied).
/// </para>
/// <para>
/// A copy-on-read is a serialising request, as in QEMU: it waits for overlapping writes through this
/// node in flight and they wait for it, so a write-back never overwrites newer data. Requests reaching
/// the file node by another parent are not serialised with it (QEMU tracks them on the file node itself).
/// </para>
/// </remarks>
[BlockDriverName("copy-on-read")]
public sealed class CopyOnReadDriver : BlockDriver
{
    private readonly object sync = new();
    private readonly List<Tracked> tracked = [];
    private long copiedBytes;

    /// <summary>Bytes written back into the top layer so far.</summary>
    public long CopiedBytes => Interlocked.Read(ref copiedBytes);

    private BlockNode File => Primary?.Node ?? throw new BlockIOException(Errnos.EIO, $"copy-on-read node '{Node.Name}' has no file child");

    /// <inheritdoc/>
    public override long Length => Primary?.Node.Length ?? 0;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        var file = File;
        return file.Child("backing") is null || buffer.Length == 0 ? file.ReadAsync(offset, buffer) : CopyOnReadAsync(file, offset, buffer);
    }

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        var file = File;
        return file.Child("backing") is null ? file.WriteAsync(offset, data, flags) : SerialisedAsync(offset, data.Length, () => file.WriteAsync(offset, data, flags));
    }

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        var file = File;
        return file.Child("backing") is null ? file.WriteZeroesAsync(offset, length, flags) : SerialisedAsync(offset, length, () => file.WriteZeroesAsync(offset, length, flags));
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length)
    {
        var file = File;
        return file.Child("backing") is null ? file.DiscardAsync(offset, length) : SerialisedAsync(offset, length, () => file.DiscardAsync(offset, length));
    }

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => File.FlushAsync();

    private async ValueTask SerialisedAsync(long offset, long length, Func<ValueTask> request)
    {
        var me = await EnterAsync(offset, offset + length, serialising: false).ConfigureAwait(false);
        try
        {
            await request().ConfigureAwait(false);
        }
        finally
        {
            Leave(me);
        }
    }

    private async ValueTask CopyOnReadAsync(BlockNode file, long offset, Memory<byte> buffer)
    {
        long end = offset + buffer.Length;
        var me = await EnterAsync(offset, end, serialising: true).ConfigureAwait(false);
        try
        {
            var bottom = FindBottom(file);
            if (bottom == file)
            {
                // Nothing below the bottom is copied, and the bottom is the top itself.
                await file.ReadAsync(offset, buffer).ConfigureAwait(false);
                return;
            }
            for (long pos = offset; pos < end;)
            {
                var (inTop, n) = file.Driver is IAllocationStatus a ? await a.IsAllocatedAsync(pos, end - pos).ConfigureAwait(false) : (false, end - pos);
                n = Math.Clamp(n, 1, end - pos);
                bool copy = false;
                if (!inTop)
                {
                    (copy, n) = await AllocatedAboveAsync(file.Child("backing")?.Node, bottom, pos, n).ConfigureAwait(false);
                }
                var slice = buffer.Slice((int)(pos - offset), (int)n);
                await file.ReadAsync(pos, slice).ConfigureAwait(false);
                if (copy)
                {
                    await file.WriteAsync(pos, slice).ConfigureAwait(false);
                    Interlocked.Add(ref copiedBytes, n);
                }
                pos += n;
            }
        }
        finally
        {
            Leave(me);
        }
    }

    /// <summary>The <c>bottom</c> node, found by name in the chain below the file node (null: no bottom).</summary>
    private BlockNode? FindBottom(BlockNode file)
    {
        if (Node.Str("bottom") is not { } name) return null;
        for (var n = file; n is not null; n = FilteredOrCow(n)) if (n.Name == name) return n;
        return null;
    }

    private static BlockNode? FilteredOrCow(BlockNode n)
    {
        foreach (var c in n.Children)
        {
            if ((c.Role & (Role.Filtered | Role.Cow)) != 0) return c.Node;
        }
        return null;
    }

    /// <summary>
    /// <c>bdrv_is_allocated_above(backing, bottom, include_base=true)</c>: whether a layer from
    /// <paramref name="top"/> down to <paramref name="bottom"/> (inclusive) holds the range; a layer that
    /// cannot say counts as holding it. Without a bottom, everything is copied.
    /// </summary>
    private static async ValueTask<(bool, long)> AllocatedAboveAsync(BlockNode? top, BlockNode? bottom, long offset, long length)
    {
        if (bottom is null) return (true, length);
        for (var n = top; n is not null; n = FilteredOrCow(n))
        {
            if (n.Driver is not IAllocationStatus a) return (true, length);
            var (allocated, bytes) = await a.IsAllocatedAsync(offset, length).ConfigureAwait(false);
            length = Math.Clamp(bytes, 1, length);
            if (allocated) return (true, length);
            if (n == bottom) return (false, length);
        }
        return (false, length);
    }

    /// <summary>
    /// Registers a request once no earlier overlapping request conflicts with it (one of the two
    /// serialising). Only registered requests are waited for, so waits never form a cycle.
    /// </summary>
    private async ValueTask<Tracked> EnterAsync(long start, long end, bool serialising)
    {
        var me = new Tracked(start, end, serialising);
        while (true)
        {
            Task? wait = null;
            lock (sync)
            {
                foreach (var t in tracked)
                {
                    if (t.Start < end && start < t.End && (t.Serialising || serialising))
                    {
                        wait = t.Done.Task;
                        break;
                    }
                }
                if (wait is null)
                {
                    tracked.Add(me);
                    return me;
                }
            }
            await wait.ConfigureAwait(false);
        }
    }

    private void Leave(Tracked me)
    {
        lock (sync) tracked.Remove(me);
        me.Done.TrySetResult();
    }

    private sealed class Tracked(long start, long end, bool serialising)
    {
        public long Start { get; } = start;
        public long End { get; } = end;
        public bool Serialising { get; } = serialising;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
