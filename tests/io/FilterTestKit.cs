// Shared helpers for the filter-driver tests (throttle, copy-on-read, copy-before-write,
// snapshot-access): a FakeClock whose time moves only when a test moves it (so throttling and
// timeouts are measured in exact fake nanoseconds), a pump that advances that clock to the earliest
// pending deadline whenever the work under test is waiting on it, QMP helpers over a BlockEngine
// built with the fake clock, and a way to add the RAM-backed x-memory nodes the content checks need:
// x-memory is not in the QAPI schema, so it is added through BlockEngine.Execute(Command) with a
// hand-made BlockdevOptions instead of QMP JSON.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.IO;

/// <summary>A clock that stands still until told to move.</summary>
public sealed class FakeClock : IClock
{
    private readonly object sync = new();
    private readonly List<Waiter> waiters = [];
    private long now;

    public long NowNs
    {
        get
        {
            lock (sync) return now;
        }
    }

    public ValueTask WaitUntilAsync(long deadlineNs, CancellationToken ct = default)
    {
        lock (sync)
        {
            if (deadlineNs <= now) return ValueTask.CompletedTask;
            var w = new Waiter(deadlineNs);
            waiters.Add(w);
            if (ct.CanBeCanceled)
            {
                ct.Register(() =>
                {
                    lock (sync) waiters.Remove(w);
                    w.Tcs.TrySetCanceled(ct);
                });
            }
            return new ValueTask(w.Tcs.Task);
        }
    }

    /// <summary>Pending waits.</summary>
    public int WaiterCount
    {
        get
        {
            lock (sync) return waiters.Count;
        }
    }

    /// <summary>The earliest pending deadline, if any.</summary>
    public long? NextDeadline
    {
        get
        {
            lock (sync) return waiters.Count == 0 ? null : waiters.Min(w => w.Deadline);
        }
    }

    /// <summary>Moves time to <paramref name="t"/> (never backwards) and releases the waits due.</summary>
    public void AdvanceTo(long t)
    {
        List<Waiter> due;
        lock (sync)
        {
            now = Math.Max(now, t);
            due = waiters.Where(w => w.Deadline <= now).ToList();
            foreach (var w in due) waiters.Remove(w);
        }
        foreach (var w in due) w.Tcs.TrySetResult();
    }

    /// <summary>Moves time forward by <paramref name="ns"/>.</summary>
    public void Advance(long ns) => AdvanceTo(NowNs + ns);

    private sealed class Waiter(long deadline)
    {
        public long Deadline { get; } = deadline;
        public TaskCompletionSource Tcs { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

public static class FilterKit
{
    public const long Second = 1_000_000_000L;
    public const long Ms = 1_000_000L;

    public static BlockEngine NewEngine(FakeClock clock) => new(new EngineServices { Clock = clock });

    public static Reply Qmp(BlockEngine e, string json) => e.Execute(JsonNode.Parse(json)!.AsObject());

    /// <summary>Runs a QMP command that must succeed.</summary>
    public static void Ok(BlockEngine e, string json)
    {
        var r = Qmp(e, json);
        Assert.True(r.IsOk, $"{json} -> {r}");
    }

    /// <summary>Runs a QMP command that must fail, and returns its error text.</summary>
    public static string Fails(BlockEngine e, string json)
    {
        var r = Qmp(e, json);
        Assert.False(r.IsOk, $"{json} should fail");
        return r.Error!.Desc;
    }

    public static void BlockdevAdd(BlockEngine e, string options) => Ok(e, $$$$$"""{"execute":"blockdev-add","arguments":{{{{{options}}}}}}""");

    /// <summary>Adds an x-memory node of <paramref name="size"/> bytes and returns its driver.</summary>
    public static MemoryDriver AddMemory(BlockEngine e, string name, long size)
    {
        var opts = new BlockdevOptions("x-memory", name, ValueMap<string>.Empty.SetItem("size", size.ToString(CultureInfo.InvariantCulture)), ValueList<ChildOption>.Empty);
        var r = e.Execute(new BlockdevAdd(opts));
        Assert.True(r.IsOk, r.ToString());
        return (MemoryDriver)e.FindNode(name)!.Driver;
    }

    public static T Driver<T>(BlockEngine e, string node) where T : BlockDriver => Assert.IsType<T>(e.FindNode(node)!.Driver);

    /// <summary>A byte pattern that differs from cluster to cluster and within one.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        for (int i = 0; i < length; i++) b[i] = (byte)((i * 7 + (i >> 12) * 13 + seed * 31 + 1) % 251);
        return b;
    }

    public static async Task<byte[]> ReadAsync(BlockEngine e, string node, long offset, int length)
    {
        var b = new byte[length];
        await e.FindNode(node)!.ReadAsync(offset, b);
        return b;
    }

    /// <summary>
    /// Runs <paramref name="work"/>, advancing <paramref name="clock"/> to the earliest pending deadline
    /// whenever one has stayed the earliest across three polls (the work is then waiting on the clock),
    /// but never past <paramref name="untilNs"/>: a test whose work ends at a known deadline while something
    /// else waits for a later one (a timed-out copy finishing in the background) must not see the clock
    /// run on before the work has noticed. Fails after <paramref name="realLimitSeconds"/> of real time.
    /// </summary>
    public static async Task PumpAsync(FakeClock clock, Func<Task> work, int realLimitSeconds = 20, long untilNs = long.MaxValue)
    {
        var task = Task.Run(work);
        var sw = Stopwatch.StartNew();
        long? seen = null;
        int stable = 0;
        while (!task.IsCompleted)
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(realLimitSeconds)) throw new TimeoutException("work did not finish");
            var next = clock.NextDeadline;
            stable = next is not null && next == seen ? stable + 1 : 0;
            seen = next;
            if (stable >= 2 && next!.Value <= untilNs)
            {
                clock.AdvanceTo(next!.Value);
                seen = null;
                stable = 0;
                continue;
            }
            await Task.Delay(1);
        }
        await task;
    }

    /// <summary>Whether a request completed synchronously and successfully (consuming it).</summary>
    public static bool Sync(ValueTask t)
    {
        if (!t.IsCompletedSuccessfully) return false;
        t.GetAwaiter().GetResult();
        return true;
    }

    /// <summary>Asserts that <paramref name="action"/> fails with a BlockIOException of <paramref name="errno"/>.</summary>
    public static async Task<BlockIOException> ThrowsErrnoAsync(int errno, Func<Task> action)
    {
        var e = await Assert.ThrowsAsync<BlockIOException>(action);
        Assert.Equal(errno, e.Errno);
        return e;
    }
}
