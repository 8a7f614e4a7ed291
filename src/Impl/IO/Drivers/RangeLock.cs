namespace Verified.Impl.IO;

/// <summary>
/// Serialises requests over overlapping byte ranges (QEMU's serialising requests): a read-modify-write
/// must not interleave with another write to the same aligned block, or one of the two is lost.
/// </summary>
internal sealed class RangeLock
{
    private readonly List<Holder> held = [];

    /// <summary>Waits until no holder overlaps [<paramref name="start"/>, <paramref name="end"/>), then holds it.</summary>
    public async ValueTask<Holder> AcquireAsync(long start, long end)
    {
        while (true)
        {
            Task wait;
            lock (held)
            {
                var blocker = held.Find(h => h.Start < end && start < h.End);
                if (blocker is null)
                {
                    var mine = new Holder(this, start, end);
                    held.Add(mine);
                    return mine;
                }
                wait = blocker.Released;
            }
            await wait.ConfigureAwait(false);
        }
    }

    private void Release(Holder h)
    {
        lock (held) held.Remove(h);
    }

    /// <summary>A held range; disposing releases it and wakes the waiters.</summary>
    internal sealed class Holder(RangeLock owner, long start, long end) : IDisposable
    {
        private readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>First byte.</summary>
        public long Start { get; } = start;

        /// <summary>One past the last byte.</summary>
        public long End { get; } = end;

        /// <summary>Completes on release.</summary>
        public Task Released => done.Task;

        /// <inheritdoc/>
        public void Dispose()
        {
            owner.Release(this);
            done.TrySetResult();
        }
    }
}
