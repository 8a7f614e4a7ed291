namespace Verified.Impl.Jobs;

/// <summary>
/// QEMU's RateLimit (include/qemu/ratelimit.h) as block-copy uses it: time is cut into slices of
/// <see cref="SliceNs"/>; a slice's quota is speed × slice (at least one byte); work is dispatched while the
/// slice's total is under quota, and once over it the caller waits until the slice, stretched by the excess,
/// ends. Pure arithmetic on the times it is given, so a fake clock drives it exactly.
/// </summary>
/// <remarks>Not thread-safe: the engine calls it under its graph lock.</remarks>
public sealed class RateLimit
{
    /// <summary>QEMU's BLOCK_COPY_SLICE_TIME: 100 ms.</summary>
    public const long SliceNs = 100_000_000;

    private const long NsPerSecond = 1_000_000_000;

    private long sliceStartNs, sliceEndNs, dispatched;

    /// <summary>Bytes a slice may carry (0: no limit).</summary>
    public long SliceQuota { get; private set; }

    /// <summary><c>ratelimit_set_speed</c>: <paramref name="bytesPerSecond"/> 0 lifts the limit; the slice in progress keeps its account.</summary>
    public void SetSpeed(long bytesPerSecond)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytesPerSecond);
        SliceQuota = bytesPerSecond == 0 ? 0 : Math.Max((long)((double)bytesPerSecond * SliceNs / NsPerSecond), 1);
    }

    /// <summary>
    /// <c>ratelimit_calculate_delay</c>: accounts <paramref name="bytes"/> at <paramref name="nowNs"/> and returns how
    /// long to wait before dispatching more (0: go on now).
    /// </summary>
    public long Delay(long nowNs, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (SliceQuota == 0) return 0;
        if (sliceEndNs < nowNs)
        {
            // The previous (possibly stretched) slice is over: a new one starts now with nothing dispatched.
            sliceStartNs = nowNs;
            sliceEndNs = nowNs + SliceNs;
            dispatched = 0;
        }
        dispatched += bytes;
        if (dispatched < SliceQuota) return 0;
        // Over quota: the slice stretches by the excess; wait until it ends.
        double slices = (double)dispatched / SliceQuota;
        sliceEndNs = sliceStartNs + (long)(slices * SliceNs);
        return sliceEndNs - nowNs;
    }
}
