namespace Verified.Impl.IO;

/// <summary>
/// Admission of I/O requests from root parents (devices, exports, jobs), and QEMU's drain: a graph
/// change first stops admitting new requests, waits until every admitted request has completed, and
/// re-opens the gate when it has committed or aborted. Requests a driver sends to its children were
/// admitted at the root, so they never wait here (no deadlock with a drain in progress).
/// </summary>
/// <remarks>
/// One gate for the whole engine: a change drains every root, not only those above the changed
/// nodes. That is coarser than QEMU's per-subtree drain but never lets a request see a half-made
/// change, and costs one interlocked increment and decrement per request.
/// </remarks>
public sealed class IoGate
{
    private int inflight;
    private int closed;
    private readonly object sync = new();

    /// <summary>Admits one request, waiting while a graph change is in progress.</summary>
    public ValueTask EnterAsync()
    {
        Interlocked.Increment(ref inflight);
        if (Volatile.Read(ref closed) == 0) return ValueTask.CompletedTask;
        Exit();
        return new ValueTask(WaitAndEnterAsync());
    }

    private async Task WaitAndEnterAsync()
    {
        while (true)
        {
            Task wait;
            lock (sync) wait = reopened.Task;
            await wait.ConfigureAwait(false);
            Interlocked.Increment(ref inflight);
            if (Volatile.Read(ref closed) == 0) return;
            Exit();
        }
    }

    /// <summary>Marks one admitted request as complete.</summary>
    public void Exit()
    {
        if (Interlocked.Decrement(ref inflight) == 0 && Volatile.Read(ref closed) != 0)
        {
            lock (sync) drained.TrySetResult();
        }
    }

    private TaskCompletionSource reopened = NewTcs();
    private TaskCompletionSource drained = NewTcs();

    private static TaskCompletionSource NewTcs() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Requests admitted and not yet complete.</summary>
    public int InFlight => Volatile.Read(ref inflight);

    /// <summary>Closes the gate and waits for every admitted request; dispose the result to reopen.</summary>
    public IDisposable Drain()
    {
        lock (sync)
        {
            closed++;
            if (closed == 1)
            {
                reopened = NewTcs();
                drained = NewTcs();
            }
        }
        if (Volatile.Read(ref inflight) != 0)
        {
            Task wait;
            lock (sync) wait = drained.Task;
            if (Volatile.Read(ref inflight) != 0) wait.Wait();
        }
        return new Reopener(this);
    }

    private void Reopen()
    {
        lock (sync)
        {
            closed--;
            if (closed == 0) reopened.TrySetResult();
        }
    }

    private sealed class Reopener(IoGate gate) : IDisposable
    {
        private int done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref done, 1) == 0) gate.Reopen();
        }
    }
}
