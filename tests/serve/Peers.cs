using System.Diagnostics;
using Verified.Server.Daemon;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>Finds QEMU's programs on PATH.</summary>
public static class QemuTools
{
    /// <summary>The full path of <paramref name="program"/> on PATH, or null.</summary>
    public static string? Find(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    /// <summary>qemu-storage-daemon, when installed.</summary>
    public static string? StorageDaemon { get; } = Find("qemu-storage-daemon");

    /// <summary>qemu-system-x86_64, when installed.</summary>
    public static string? SystemX86 { get; } = Find("qemu-system-x86_64");
}

/// <summary>A fact that runs only where qemu-storage-daemon is installed (CI installs it through scripts/deps.sh).</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    /// <summary>Skips when QEMU is missing.</summary>
    public QemuFactAttribute()
    {
        if (QemuTools.StorageDaemon is null || QemuTools.SystemX86 is null)
            Skip = "qemu-storage-daemon or qemu-system-x86_64 is not installed (scripts/deps.sh installs them)";
    }
}

/// <summary>
/// One QMP server under test, with its own temporary directory: real QEMU (qemu-storage-daemon, or
/// qemu-system-x86_64 with no guest when devices are needed), Verified's daemon in this process, or
/// the <c>verified</c> command as a process.
/// </summary>
public sealed class Peer : IDisposable
{
    private readonly Process? process;
    private readonly QmpDaemon? daemon;
    private readonly CancellationTokenSource stop = new();
    private Task? run;

    private Peer(string name, string tmp, Process? process, QmpDaemon? daemon, Task? run)
    {
        Name = name;
        TmpDir = tmp;
        this.process = process;
        this.daemon = daemon;
        this.run = run;
    }

    /// <summary>What this peer is, for messages.</summary>
    public string Name { get; }

    /// <summary>True for real QEMU.</summary>
    public bool IsQemu => Name.StartsWith("qemu", StringComparison.Ordinal);

    /// <summary>The peer's temporary directory (its images and its socket).</summary>
    public string TmpDir { get; }

    /// <summary>The QMP socket.</summary>
    public string SocketPath => Path.Combine(TmpDir, "qmp.sock");

    /// <summary>The in-process daemon, when this peer is one.</summary>
    public QmpDaemon? Daemon => daemon;

    /// <summary>The process, when this peer is one.</summary>
    public Process? Process => process;

    /// <summary>A fresh temporary directory.</summary>
    public static string NewTmp(string prefix) => Directory.CreateTempSubdirectory(prefix).FullName;

    /// <summary>qemu-storage-daemon with one QMP monitor on a unix socket (as qemu-storage-daemon's docs show it).</summary>
    public static Peer StartStorageDaemon()
    {
        var tmp = NewTmp("serve-qsd.");
        var sock = Path.Combine(tmp, "qmp.sock");
        return StartProcess("qemu-storage-daemon", tmp, QemuTools.StorageDaemon!,
            ["--chardev", $"socket,path={sock},server=on,wait=off,id=mon0", "--monitor", "chardev=mon0"]);
    }

    /// <summary>qemu-system-x86_64 without a guest (<c>-machine none</c> unless <paramref name="extra"/> names a machine).</summary>
    public static Peer StartQemuSystem(IReadOnlyList<string> extra)
    {
        var tmp = NewTmp("serve-qemu.");
        var sock = Path.Combine(tmp, "qmp.sock");
        var args = new List<string>();
        if (!extra.Contains("-machine") && !extra.Contains("-M")) args.AddRange(["-machine", "none"]);
        args.AddRange(["-nodefaults", "-display", "none", "-qmp", $"unix:{sock},server=on,wait=off"]);
        args.AddRange(extra);
        return StartProcess("qemu-system-x86_64", tmp, QemuTools.SystemX86!, args);
    }

    /// <summary>Verified's daemon in this process, listening on a unix socket.</summary>
    public static Peer StartVerified(params string[] extraOptions) => StartVerifiedOn(null, extraOptions);

    /// <summary>Verified's daemon in this process over <paramref name="engine"/> (one built with a deliberate bug, for tests of the tests).</summary>
    public static Peer StartVerifiedOn(Verified.Impl.Engine.BlockEngine? engine, params string[] extraOptions)
    {
        var tmp = NewTmp("serve-verified.");
        var options = ServeOptions.Parse(["--qmp", $"unix:{Path.Combine(tmp, "qmp.sock")}", .. extraOptions]);
        var daemon = new QmpDaemon(options, TextWriter.Null, engine);
        var err = daemon.Start();
        if (err is not null) throw new InvalidOperationException(err);
        var peer = new Peer("verified", tmp, null, daemon, null);
        peer.run = Task.Run(() => daemon.RunAsync(peer.stop.Token));
        return peer;
    }

    /// <summary>The <c>verified serve</c> command as a process (built next to the tests).</summary>
    public static Peer StartVerifiedProcess(string tmp, IReadOnlyList<string> serveArgs)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "verified.dll");
        return StartProcess("verified serve", tmp, "dotnet", [dll, "serve", .. serveArgs]);
    }

    private static Peer StartProcess(string name, string tmp, string program, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(program)
        {
            WorkingDirectory = tmp,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        return new Peer(name, tmp, p, null, null);
    }

    /// <summary>
    /// How the peer's process ended, with the end of what it wrote to stderr (an assertion's text), once it
    /// has exited; empty while it runs or for the in-process daemon.
    /// </summary>
    public string ExitReport()
    {
        if (process is null || !process.WaitForExit(ExitWaitMs)) return "";
        var err = process.StandardError.ReadToEnd();
        return $" (exit code {process.ExitCode}; stderr: {(err.Length > StderrTailChars ? err[^StderrTailChars..] : err).Trim()})";
    }

    /// <summary>How long a failed peer is given to finish exiting before its report is read.</summary>
    private const int ExitWaitMs = 2000;

    /// <summary>Most stderr characters a report quotes.</summary>
    private const int StderrTailChars = 2000;

    /// <summary>Connects a new client to the peer's socket.</summary>
    public QmpClient Connect() => QmpClient.Connect(SocketPath, () => process is null || !process.HasExited);

    /// <summary>Stops the peer (a process by its pid; the in-process daemon by its token) and removes its directory.</summary>
    public void Dispose()
    {
        if (process is not null)
        {
            // Cleanup only: tests that care how a process ends wait for it themselves. A hung or
            // crashed QEMU must not outlive the test, so whatever still runs is killed, by its pid.
            try
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
                // It exited meanwhile.
            }
            process.Dispose();
        }
        if (daemon is not null)
        {
            stop.Cancel();
            run?.Wait(TimeSpan.FromSeconds(10));
            daemon.DisposeAsync().AsTask().Wait();
        }
        stop.Dispose();
        try
        {
            Directory.Delete(TmpDir, recursive: true);
        }
        catch (IOException)
        {
            // a straggling file; the temp directory is the system's to clean
        }
    }
}
