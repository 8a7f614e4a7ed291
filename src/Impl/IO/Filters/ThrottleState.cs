using System.Runtime.CompilerServices;

namespace Verified.Impl.IO;

/// <summary>
/// The runtime state of one throttle group, shared by every throttle node naming it: QEMU's leaky
/// buckets (util/throttle.c) and a FIFO queue of waiting requests per direction (throttle-groups.c
/// without its round-robin between members). Kept beside the <see cref="ThrottleGroup"/> object, keyed
/// by the instance, so the group itself stays a plain QOM object.
/// </summary>
/// <remarks>
/// A request first leaks the buckets by the time elapsed on the injected clock, then asks whether any
/// bucket of its direction is over its size; if none is, it is accounted and goes. Otherwise it joins
/// its direction's queue; the head waits on the clock until the buckets have leaked enough, is
/// accounted, and hands the head position to the next waiter. Accounting happens when a request is
/// released, as in <c>throttle_group_co_io_limits_intercept</c>, so a queue drains at the average rate.
/// </remarks>
public sealed class ThrottleState
{
    private const double NsPerSecond = 1e9;

    private static readonly ConditionalWeakTable<ThrottleGroup, ThrottleState> States = new();

    private readonly object sync = new();
    private readonly double[] level = new double[ThrottleLimits.BucketCount];
    private readonly double[] burstLevel = new double[ThrottleLimits.BucketCount];
    private readonly Queue<TaskCompletionSource>[] queues = [new(), new()];
    private readonly IClock clock;
    private long previousLeak;

    private ThrottleState(ThrottleLimits limits, IClock clock)
    {
        Limits = limits;
        this.clock = clock;
        previousLeak = clock.NowNs;
    }

    /// <summary>The group's limits.</summary>
    public ThrottleLimits Limits { get; }

    /// <summary>The state of <paramref name="group"/>, created with <paramref name="limits"/> and <paramref name="clock"/> on first use.</summary>
    internal static ThrottleState For(ThrottleGroup group, ThrottleLimits limits, IClock clock) =>
        States.GetValue(group, _ => new ThrottleState(limits, clock));

    /// <summary>The state of <paramref name="group"/> if a member has opened it.</summary>
    public static ThrottleState? Find(ThrottleGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        return States.TryGetValue(group, out var s) ? s : null;
    }

    /// <summary>Requests waiting in either direction.</summary>
    public int Waiting
    {
        get
        {
            lock (sync) return queues[0].Count + queues[1].Count;
        }
    }

    /// <summary>The fill level of bucket <paramref name="i"/> as of the last leak.</summary>
    public double Level(int i)
    {
        lock (sync) return level[i];
    }

    /// <summary>
    /// The fast path: admits and accounts a request of <paramref name="bytes"/> at once if nothing of its
    /// direction is queued and every bucket has room. Allocates nothing.
    /// </summary>
    public bool TryAdmit(bool write, long bytes)
    {
        int dir = write ? 1 : 0;
        lock (sync)
        {
            if (queues[dir].Count > 0) return false;
            Leak(clock.NowNs);
            if (ComputeWait(write) != 0) return false;
            Account(write, bytes);
            return true;
        }
    }

    /// <summary>The slow path: queues the request and completes when it has been admitted and accounted.</summary>
    public async ValueTask AdmitAsync(bool write, long bytes)
    {
        int dir = write ? 1 : 0;
        var me = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool head;
        lock (sync)
        {
            queues[dir].Enqueue(me);
            head = queues[dir].Count == 1;
        }
        if (!head) await me.Task.ConfigureAwait(false);
        while (true)
        {
            long deadline;
            TaskCompletionSource? next = null;
            lock (sync)
            {
                long now = clock.NowNs;
                Leak(now);
                long wait = ComputeWait(write);
                if (wait == 0)
                {
                    Account(write, bytes);
                    queues[dir].Dequeue();
                    if (queues[dir].Count > 0) next = queues[dir].Peek();
                    deadline = -1;
                }
                else deadline = now + wait;
            }
            if (deadline < 0)
            {
                next?.TrySetResult();
                return;
            }
            await clock.WaitUntilAsync(deadline).ConfigureAwait(false);
        }
    }

    /// <summary><c>throttle_do_leak</c>: every bucket leaks by the time elapsed since the last leak.</summary>
    private void Leak(long now)
    {
        long delta = now - previousLeak;
        previousLeak = now;
        if (delta <= 0) return;
        for (int i = 0; i < ThrottleLimits.BucketCount; i++)
        {
            level[i] = Math.Max(level[i] - Limits.Avg(i) * (double)delta / NsPerSecond, 0);
            if (Limits.BurstLength(i) > 1)
                burstLevel[i] = Math.Max(burstLevel[i] - Limits.Max(i) * (double)delta / NsPerSecond, 0);
        }
    }

    /// <summary><c>throttle_compute_wait_for</c>: the longest wait any bucket of the direction asks for.</summary>
    private long ComputeWait(bool write)
    {
        long w = Math.Max(ComputeWait(ThrottleLimits.BpsTotal), ComputeWait(ThrottleLimits.OpsTotal));
        w = Math.Max(w, ComputeWait(write ? ThrottleLimits.BpsWrite : ThrottleLimits.BpsRead));
        return Math.Max(w, ComputeWait(write ? ThrottleLimits.OpsWrite : ThrottleLimits.OpsRead));
    }

    /// <summary>
    /// <c>throttle_compute_wait</c>: without a burst rate the bucket holds a tenth of a second at the
    /// average; with one it holds <c>max × max-length</c>, and a second bucket of a tenth of a second at
    /// the burst rate keeps bursts at that rate.
    /// </summary>
    private long ComputeWait(int i)
    {
        long avg = Limits.Avg(i), max = Limits.Max(i);
        if (avg == 0) return 0;
        double bucketSize = max == 0 ? avg / 10.0 : (double)max * Limits.BurstLength(i);
        double extra = level[i] - bucketSize;
        if (extra > 0) return (long)(extra * NsPerSecond / avg);
        if (Limits.BurstLength(i) > 1)
        {
            extra = burstLevel[i] - max / 10.0;
            if (extra > 0) return (long)(extra * NsPerSecond / max);
        }
        return 0;
    }

    /// <summary><c>throttle_account</c>: bytes into the byte buckets, operations (scaled by iops-size) into the others.</summary>
    private void Account(bool write, long bytes)
    {
        double units = Limits.OpSize != 0 && bytes > Limits.OpSize ? (double)bytes / Limits.OpSize : 1.0;
        Add(ThrottleLimits.BpsTotal, bytes);
        Add(write ? ThrottleLimits.BpsWrite : ThrottleLimits.BpsRead, bytes);
        Add(ThrottleLimits.OpsTotal, units);
        Add(write ? ThrottleLimits.OpsWrite : ThrottleLimits.OpsRead, units);
    }

    private void Add(int i, double amount)
    {
        level[i] += amount;
        if (Limits.BurstLength(i) > 1) burstLevel[i] += amount;
    }
}
