using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>null-co / null-aio: a size, reads of zeroes (or nothing), writes dropped, optional latency.</summary>
[BlockDriverName("null-co")]
[BlockDriverName("null-aio")]
public sealed class NullDriver : BlockDriver, IAllocationStatus
{
    /// <summary>QEMU's default size: 1 GiB.</summary>
    public const long DefaultSize = 1L << 30;

    private long size = DefaultSize;
    private long latencyNs;
    private bool readZeroes;

    /// <summary>null_co_block_status: with read-zeroes every range reads as zeroes (allocated, as bdrv_is_allocated counts); without, nothing is.</summary>
    public ValueTask<(bool Allocated, long Bytes)> IsAllocatedAsync(long offset, long length) => ValueTask.FromResult((readZeroes, length));
    private IClock clock = SystemClock.Instance;

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        ArgumentNullException.ThrowIfNull(services);
        clock = services.Clock;
        if (Node.Options.TryGetValue("size", out var s)) size = long.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
        if (Node.Options.TryGetValue("latency-ns", out var l)) latencyNs = long.Parse(l, System.Globalization.CultureInfo.InvariantCulture);
        readZeroes = Node.Options.GetOr("read-zeroes", "false") == "true";
        return null;
    }

    /// <inheritdoc/>
    public override long Length => size;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (readZeroes) buffer.Span.Clear();
        return latencyNs == 0 ? ValueTask.CompletedTask : clock.WaitUntilAsync(clock.NowNs + latencyNs);
    }

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags) =>
        latencyNs == 0 ? ValueTask.CompletedTask : clock.WaitUntilAsync(clock.NowNs + latencyNs);

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags) => ValueTask.CompletedTask;
}

/// <summary>
/// A filter that forwards every request to its primary child unchanged: compress's behaviour until
/// compressed writes exist (they need qcow2), and a base for the other filters.
/// </summary>
[BlockDriverName("compress")]
public class ForwardingDriver : BlockDriver
{
    /// <inheritdoc/>
    public override long Length => Primary?.Node.Length ?? 0;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer) => Primary!.Node.ReadAsync(offset, buffer);

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags) => Primary!.Node.WriteAsync(offset, data, flags);

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags) => Primary!.Node.WriteZeroesAsync(offset, length, flags);
}
