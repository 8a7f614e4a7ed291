using System.Globalization;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>The kind of a request a <see cref="MemoryDriver"/> hook sees.</summary>
public enum MemoryOp
{
    /// <summary>A read.</summary>
    Read,
    /// <summary>A write.</summary>
    Write,
    /// <summary>A write of zeroes.</summary>
    WriteZeroes,
    /// <summary>A discard.</summary>
    Discard,
    /// <summary>A flush.</summary>
    Flush,
}

/// <summary>
/// <c>x-memory</c>: a RAM-backed protocol node of option <c>size</c> (bytes, default 64 MiB) that keeps
/// what is written (sparse 64 KiB pages; unwritten ranges read as zeroes). Verified's own, for tests of
/// the filters that need content: the QAPI schema does not list it, so it is created through
/// <c>BlockEngine.Execute(Command)</c> with a hand-made <see cref="BlockdevOptions"/>, never through QMP JSON.
/// </summary>
/// <remarks>
/// Every request is atomic (one lock), so a reader never sees half of a concurrent write: whatever
/// tearing a test observes comes from the layers above. <see cref="Hook"/> runs before each request
/// and may delay it or throw a <see cref="BlockIOException"/> (fault injection).
/// </remarks>
[BlockDriverName("x-memory")]
public sealed class MemoryDriver : BlockDriver
{
    /// <summary>The size when the <c>size</c> option is absent.</summary>
    public const long DefaultSize = 64L << 20;

    private const int PageShift = 16;
    private const int PageSize = 1 << PageShift;

    private readonly Dictionary<long, byte[]> pages = [];
    private readonly object sync = new();
    private long size = DefaultSize;
    private long reads, writes;

    /// <summary>Runs before every request (offset, length); may await or throw. Null: nothing.</summary>
    public Func<MemoryOp, long, long, ValueTask>? Hook { get; set; }

    /// <summary>Reads served so far.</summary>
    public long Reads => Interlocked.Read(ref reads);

    /// <summary>Writes, write-zeroes and discards served so far.</summary>
    public long Writes => Interlocked.Read(ref writes);

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        if (Node.Options.TryGetValue("size", out var s)) size = long.Parse(s, CultureInfo.InvariantCulture);
        return size < 0 ? QmpError.Generic("size must be non-negative") : null;
    }

    /// <inheritdoc/>
    public override long Length => size;

    /// <inheritdoc/>
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (Hook is { } h) await h(MemoryOp.Read, offset, buffer.Length).ConfigureAwait(false);
        Interlocked.Increment(ref reads);
        lock (sync) Copy(offset, buffer.Length, (page, at, done, n) =>
        {
            var dst = buffer.Span.Slice(done, n);
            if (page is null) dst.Clear();
            else page.AsSpan(at, n).CopyTo(dst);
            return page;
        }, allocate: false);
    }

    /// <inheritdoc/>
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        if (Hook is { } h) await h(MemoryOp.Write, offset, data.Length).ConfigureAwait(false);
        Interlocked.Increment(ref writes);
        lock (sync) Copy(offset, data.Length, (page, at, done, n) =>
        {
            data.Span.Slice(done, n).CopyTo(page.AsSpan(at, n));
            return page;
        }, allocate: true);
    }

    /// <inheritdoc/>
    public override async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        if (Hook is { } h) await h(MemoryOp.WriteZeroes, offset, length).ConfigureAwait(false);
        Interlocked.Increment(ref writes);
        lock (sync) Zero(offset, length);
    }

    /// <inheritdoc/>
    public override async ValueTask DiscardAsync(long offset, long length)
    {
        if (Hook is { } h) await h(MemoryOp.Discard, offset, length).ConfigureAwait(false);
        Interlocked.Increment(ref writes);
        lock (sync) Zero(offset, length);
    }

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => Hook is { } h ? h(MemoryOp.Flush, 0, 0) : ValueTask.CompletedTask;

    /// <summary>A copy of the whole content (for assertions).</summary>
    public byte[] Snapshot()
    {
        if (size > Array.MaxLength) throw new InvalidOperationException("too large to copy into one array");
        var all = new byte[size];
        lock (sync)
        {
            foreach (var (index, page) in pages)
            {
                long start = index << PageShift;
                int n = (int)Math.Min(PageSize, size - start);
                page.AsSpan(0, n).CopyTo(all.AsSpan((int)start, n));
            }
        }
        return all;
    }

    private void Zero(long offset, long length) => Copy(offset, length, (page, at, _, n) =>
    {
        if (page is null) return null;
        if (n == PageSize) return null;
        page.AsSpan(at, n).Clear();
        return page;
    }, allocate: false);

    private delegate byte[]? PageAction(byte[]? page, int at, int done, int n);

    private void Copy(long offset, long length, PageAction action, bool allocate)
    {
        long done = 0;
        while (done < length)
        {
            long pos = offset + done;
            long index = pos >> PageShift;
            int at = (int)(pos & (PageSize - 1));
            int n = (int)Math.Min(PageSize - at, length - done);
            pages.TryGetValue(index, out var page);
            if (page is null && allocate) page = new byte[PageSize];
            var after = action(page, at, (int)done, n);
            if (after is null) pages.Remove(index);
            else pages[index] = after;
            done += n;
        }
    }
}
