using Verified.Impl.Jobs;

namespace Verified.Server.Qmp;

/// <summary>
/// Jobs in the daemon: their events go to every monitor like a command's, and jobs with work run in
/// the background (one runner at a time, under the command lock, as QEMU's main loop runs job
/// completions between commands). With <see cref="RunJobsInBackground"/> off, jobs advance only when
/// <see cref="RunJobs"/> is called, so a test decides exactly when.
/// </summary>
public sealed partial class QmpDispatcher
{
    /// <summary>Bound on background passes per kick: each pass moves at least one job to a later status.</summary>
    public const int JobRunPassesMax = 1000;

    private const long NsPerTick = 100;

    private readonly object runnerLock = new();
    private Task? runner;

    /// <summary>Whether jobs run by themselves after each command (the daemon's way; default on).</summary>
    public bool RunJobsInBackground { get; init; } = true;

    /// <summary>Runs every runnable job to its next status now and delivers the events; returns how many moved.</summary>
    public int RunJobs()
    {
        List<QmpEvent> events;
        int moved;
        lock (commandLock)
        {
            moved = Engine.RunJobs();
            events = JobEvents();
        }
        Deliver(events);
        return moved;
    }

    private List<QmpEvent> JobEvents()
    {
        var now = clock();
        return [.. Engine.TakeJobEvents().Select(e => new QmpEvent(e.Name, e.Data, now))];
    }

    /// <summary>
    /// Called once a command's reply is out: jobs with work run now, in the background, so what they do
    /// reaches clients after the reply, as QEMU's job completions (bottom halves) do.
    /// </summary>
    internal void AfterReply() => KickJobs();

    private void KickJobs()
    {
        if (!RunJobsInBackground || !Engine.HasRunnableJobs) return;
        lock (runnerLock)
        {
            if (runner is { IsCompleted: false }) return;
            runner = Task.Run(RunInBackground);
        }
    }

    private void RunInBackground()
    {
        try
        {
            for (int pass = 0; pass < JobRunPassesMax && RunJobs() > 0; pass++)
            {
            }
            // A job sleeping for its rate limit runs again when its slice ends (QEMU's timer wakes its coroutine).
            if (Engine.JobWakeDelayNs is { } ns)
                _ = Task.Delay(TimeSpan.FromTicks(Math.Max(1, ns / NsPerTick))).ContinueWith(_ => KickJobs(), TaskScheduler.Default);
        }
        catch (ObjectDisposedException)
        {
            // The engine closed under a running job: the daemon is shutting down.
        }
    }

    /// <summary>The jobs, for inspection (newest first).</summary>
    public IReadOnlyList<BlockJob> Jobs => Engine.Jobs;
}
