using System.Text;
using System.Threading.Channels;
using Verified.Server.Qmp;

namespace Verified.Server.Daemon;

/// <summary>
/// Runs one QMP session over a pair of streams: a reader that feeds the session, and a writer that
/// drains a bounded queue of outgoing lines. Replies wait for room in the queue (a client that stops
/// reading stops being read); an event that finds the queue full closes that client, so one stuck
/// client can never stall a command run for another.
/// </summary>
public static class QmpConnection
{
    /// <summary>Outgoing lines queued per client before it counts as not reading.</summary>
    public const int OutputQueueMax = 4096;

    /// <summary>Bytes read from a client per call.</summary>
    public const int ReadChunkBytes = 4096;

    /// <summary>
    /// Serves one client until it disconnects, <paramref name="stop"/> fires, or it stops reading while
    /// events pile up. Never throws for what the client does.
    /// </summary>
    /// <param name="dispatcher">The daemon's commands.</param>
    /// <param name="input">Bytes from the client.</param>
    /// <param name="output">Bytes to the client.</param>
    /// <param name="log">Where connection problems are reported.</param>
    /// <param name="stop">Daemon shutdown.</param>
    public static async Task ServeAsync(QmpDispatcher dispatcher, Stream input, Stream output, TextWriter log, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(dispatcher);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(log);
        // 'failed' ends the client at once (it vanished or stopped reading); 'reading' also ends with
        // the daemon, after which the writer still drains what was queued (quit's reply, say).
        using var failed = new CancellationTokenSource();
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(stop, failed.Token);
        var queue = Channel.CreateBounded<string>(new BoundedChannelOptions(OutputQueueMax) { SingleReader = true });
        var writer = Task.Run(() => WriteLoop(queue.Reader, output, failed), CancellationToken.None);
        int readerThread = -1;
        bool finished = false;

        void Send(string line)
        {
            // An event may still arrive from another client's command after this client ended: drop it.
            if (Volatile.Read(ref finished) || failed.IsCancellationRequested) return;
            if (queue.Writer.TryWrite(line)) return;
            if (Environment.CurrentManagedThreadId == readerThread)
            {
                // A reply: wait for room (backpressure on this client only).
                try
                {
                    queue.Writer.WriteAsync(line, failed.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                    // The client is gone; nothing more to say to it.
                }
                catch (ChannelClosedException)
                {
                    // Likewise.
                }
                return;
            }
            log.WriteLine("verified serve: a client stopped reading; closing it");
            try
            {
                failed.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The client ended meanwhile.
            }
        }

        using (var session = new QmpSession(dispatcher, Send))
        {
            await Task.Factory.StartNew(() =>
            {
                readerThread = Environment.CurrentManagedThreadId;
                session.Start();
                ReadLoop(session, input, log, reading.Token);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        }
        Volatile.Write(ref finished, true);
        queue.Writer.TryComplete();
        await writer.ConfigureAwait(false);
    }

    private static void ReadLoop(QmpSession session, Stream input, TextWriter log, CancellationToken gone)
    {
        var buffer = new byte[ReadChunkBytes];
        while (!gone.IsCancellationRequested && !session.QuitSent)
        {
            int n;
            try
            {
                n = input.ReadAsync(buffer, gone).AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            if (n == 0) return; // the client went away, perhaps mid-message: its partial input goes with it
            try
            {
                session.Feed(buffer.AsSpan(0, n));
            }
            catch (ObjectDisposedException)
            {
                return; // the engine is shutting down
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException)
            {
                log.WriteLine($"verified serve: internal error while serving a client: {e}");
                return;
            }
        }
    }

    private static async Task WriteLoop(ChannelReader<string> lines, Stream output, CancellationTokenSource gone)
    {
        try
        {
            while (await lines.WaitToReadAsync(gone.Token).ConfigureAwait(false))
            {
                while (lines.TryRead(out var line))
                {
                    var bytes = Encoding.UTF8.GetBytes(line);
                    await output.WriteAsync(bytes, gone.Token).ConfigureAwait(false);
                }
                await output.FlushAsync(gone.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client closed its end, or the daemon stops: the reader notices on its own.
            await gone.CancelAsync().ConfigureAwait(false);
        }
    }
}
