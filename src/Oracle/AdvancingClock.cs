using Verified.Impl.IO;

namespace Verified.Oracle;

/// <summary>
/// The implementation's clock in a campaign: real time plus what the judge has skipped ahead. A run of
/// the jobs skips a rate-limited job's sleeps (the model runs a job to its end in one run, whatever
/// its speed), so the outcome never depends on how fast the campaign happens to run; everything else
/// (throttle groups, timeouts) still sees time pass as it really does.
/// </summary>
public sealed class AdvancingClock : IClock
{
    private long skippedNs;

    /// <inheritdoc/>
    public long NowNs => SystemClock.Instance.NowNs + Volatile.Read(ref skippedNs);

    /// <summary>Moves the clock <paramref name="ns"/> nanoseconds ahead of real time.</summary>
    public void Advance(long ns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ns);
        Interlocked.Add(ref skippedNs, ns);
    }

    /// <inheritdoc/>
    public async ValueTask WaitUntilAsync(long deadlineNs, CancellationToken ct = default)
    {
        long wait = deadlineNs - NowNs;
        if (wait > 0) await Task.Delay(TimeSpan.FromTicks(Math.Max(1, wait / 100)), ct).ConfigureAwait(false);
    }
}
