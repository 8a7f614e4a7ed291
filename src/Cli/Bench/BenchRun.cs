using System.Runtime.InteropServices;
using System.Threading.Channels;
using Verified.Impl.Graph;
using Verified.Impl.IO;

namespace Verified.Cli.Bench;

/// <summary>
/// qemu-img bench's request loop (its <c>bench_cb</c>): keep up to <c>depth</c> requests in flight until
/// <c>count</c> have completed, each at the previous offset plus the step, wrapping at the image's end; with
/// a flush interval, flush whenever the number of requests not yet sent is a multiple of it, first waiting
/// for the requests in flight unless <c>--no-drain</c>.
/// </summary>
/// <remarks>
/// QEMU runs the callback on its main loop, one completion at a time. Here one loop plays that part:
/// completions that happen inside the submitting call (null-co, page-cache hits on synchronous paths) are
/// queued locally, so that a million of them never nest on the stack; completions on other threads arrive
/// through a channel. All state is touched by the loop alone.
/// </remarks>
internal sealed class BenchRun(RootParent device, BenchOptions options, long imageSize, ReadOnlyMemory<byte> buffer)
{
    private enum Kind { Request, DrainedFlush, UndrainedFlush }

    private readonly record struct Completion(Kind Kind, int Errno);

    private readonly Queue<Completion> local = new();
    private readonly Channel<Completion> remote = Channel.CreateUnbounded<Completion>(new UnboundedChannelOptions { SingleReader = true });
    private int remaining = options.Count;   // qemu's b->n: requests not yet completed
    private int inFlight;
    private bool inFlush;
    private int outstanding;                  // requests and flushes issued and not yet handled
    private ulong offset = (ulong)options.Offset;
    private readonly ulong step = (ulong)options.EffectiveStep;
    private readonly WriteFlags writeFlags = options.WriteThrough ? WriteFlags.Fua : WriteFlags.None;

    /// <summary>Runs until every request has completed (the timed part).</summary>
    public async Task RunAsync()
    {
        Submit();
        while (remaining > 0) Handle(await Next().ConfigureAwait(false));
    }

    /// <summary>Waits for what is still outstanding (the final flush), checking its result.</summary>
    public async Task FinishAsync()
    {
        while (outstanding > 0) Handle(await Next().ConfigureAwait(false));
    }

    private ValueTask<Completion> Next() =>
        local.TryDequeue(out var c) ? ValueTask.FromResult(c) : remote.Reader.ReadAsync();

    /// <summary>bench_cb for one completion.</summary>
    private void Handle(Completion c)
    {
        outstanding--;
        if (c.Errno != 0)
        {
            string text = Marshal.GetPInvokeErrorMessage(c.Errno);
            throw new BenchError(c.Kind == Kind.UndrainedFlush ? $"Failed flush request: {text}" : $"Failed request: {text}");
        }
        if (c.Kind == Kind.UndrainedFlush) return;
        if (c.Kind == Kind.DrainedFlush)
        {
            // The flush after a drained queue finished: start the next requests.
            inFlush = false;
        }
        else
        {
            int unsent = remaining - inFlight;
            remaining--;
            inFlight--;
            if (options.FlushInterval != 0 && unsent % options.FlushInterval == 0)
            {
                if (inFlight == 0 || !options.DrainOnFlush)
                {
                    inFlush = options.DrainOnFlush;
                    Issue(device.FlushAsync(), options.DrainOnFlush ? Kind.DrainedFlush : Kind.UndrainedFlush);
                }
                if (options.DrainOnFlush) return;
            }
        }
        Submit();
    }

    /// <summary>The submission half of bench_cb: fill the queue up to the depth.</summary>
    private void Submit()
    {
        if (inFlush) return;
        while (remaining > inFlight && inFlight < options.Depth)
        {
            long at = (long)offset;
            inFlight++;
            offset += step;
            // QEMU 7.2 wraps at the image size (a zero-sized image would divide by zero there; 0 is what later QEMU uses).
            offset = imageSize == 0 ? 0 : offset % (ulong)imageSize;
            if (at < 0 || at > imageSize || imageSize - at < buffer.Length)
            {
                // The BlockBackend's range check: a request past the end fails with EIO.
                outstanding++;
                local.Enqueue(new Completion(Kind.Request, Errnos.EIO));
                continue;
            }
            Issue(options.Write ? device.WriteAsync(at, buffer, writeFlags) : device.ReadAsync(at, MemoryMarshal.AsMemory(buffer)), Kind.Request);
        }
    }

    private void Issue(ValueTask request, Kind kind)
    {
        outstanding++;
        if (request.IsCompleted)
        {
            local.Enqueue(new Completion(kind, ErrnoOf(request)));
            return;
        }
        _ = Watch(request, kind);
    }

    private static int ErrnoOf(ValueTask done)
    {
        try
        {
            done.GetAwaiter().GetResult();
            return 0;
        }
        catch (BlockIOException e)
        {
            return e.Errno;
        }
    }

    private async Task Watch(ValueTask request, Kind kind)
    {
        int errno = 0;
        try
        {
            await request.ConfigureAwait(false);
        }
        catch (BlockIOException e)
        {
            errno = e.Errno;
        }
        remote.Writer.TryWrite(new Completion(kind, errno));
    }
}
