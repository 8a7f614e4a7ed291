namespace Verified.Impl.IO;

/// <summary>
/// Serialises requests over overlapping byte ranges (QEMU's serialising requests): a read-modify-write
/// must not interleave with another write to the same aligned block, or one of the two is lost.
/// </summary>
/// <remarks>
/// Every O_DIRECT write passes here, 64 at a time under <c>qemu-img bench -d 64</c>-like loads, so the
/// lock is held only for the scan and the list update: the holder is allocated before it is taken, the
/// scan allocates no closure, and a holder's completion source exists only once somebody waits for it.
/// </remarks>
internal sealed class RangeLock
{
    private readonly List<Holder> held = [];

    /// <summary>Waits until no holder overlaps [<paramref name="start"/>, <paramref name="end"/>), then holds it.</summary>
    public async ValueTask<Holder> AcquireAsync(long start, long end)
    {
        var mine = new Holder(this, start, end);
        while (true)
        {
            Task wait;
            lock (held)
            {
                var blocker = Overlapping(start, end);
                if (blocker is null)
                {
                    held.Add(mine);
                    return mine;
                }
                wait = blocker.ReleasedLocked();
            }
            await wait.ConfigureAwait(false);
        }
    }

    private Holder? Overlapping(long start, long end)
    {
        foreach (var h in held)
        {
            if (h.Start < end && start < h.End) return h;
        }
        return null;
    }

    /// <summary>Removes the holder; returns its completion source if anybody waits for it.</summary>
    private TaskCompletionSource? Release(Holder h)
    {
        lock (held)
        {
            held.Remove(h);
            return h.Waiters;
        }
    }

    /// <summary>A held range; disposing releases it and wakes the waiters.</summary>
    internal sealed class Holder(RangeLock owner, long start, long end) : IDisposable
    {
        /// <summary>First byte.</summary>
        public long Start { get; } = start;

        /// <summary>One past the last byte.</summary>
        public long End { get; } = end;

        /// <summary>Created by the first waiter, under the owner's lock; completed on release.</summary>
        internal TaskCompletionSource? Waiters { get; private set; }

        /// <summary>Completes on release. Call with the owner's lock held.</summary>
        internal Task ReleasedLocked() =>
            (Waiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        /// <inheritdoc/>
        public void Dispose() => owner.Release(this)?.TrySetResult();
    }
}
