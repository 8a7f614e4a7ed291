using System.Runtime.InteropServices;
using Verified.Server.Daemon;

namespace Verified.Cli;

/// <summary><c>verified serve</c>: the QMP daemon.</summary>
internal static class ServeCommand
{
    /// <summary>Runs the daemon until quit, SIGTERM or SIGINT; exit code 0, or 1 when startup fails.</summary>
    public static int Run(string[] args)
    {
        var options = ServeOptions.Parse(args);
        if (options.Daemonize && !Daemonizer.IsChild) return Daemonizer.RunParent(["serve", .. args], Console.Error);
        using var stop = new CancellationTokenSource();
        // SIGTERM and SIGINT end the daemon the clean way (flush and close), not by killing the process.
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        void OnSignal(PosixSignalContext ctx)
        {
            ctx.Cancel = true;
            stop.Cancel();
        }
        return RunAsync(options, stop.Token).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(ServeOptions options, CancellationToken stop)
    {
        var daemon = new QmpDaemon(options, Console.Error);
        await using (daemon.ConfigureAwait(false))
        {
            var err = daemon.Start();
            if (err is not null)
            {
                await Console.Error.WriteLineAsync($"verified serve: {err}").ConfigureAwait(false);
                return 1;
            }
            if (options.Daemonize) Daemonizer.Detach();
            await daemon.RunAsync(stop).ConfigureAwait(false);
        }
        return 0;
    }
}
