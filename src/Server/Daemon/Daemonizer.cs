using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Verified.Server.Daemon;

/// <summary>
/// qemu-storage-daemon's <c>--daemonize</c> for a runtime that cannot fork: the parent starts the same
/// command again as the daemon and relays its standard error until it either serves (it writes
/// <see cref="ReadyLine"/>, then detaches: new session, standard streams on <c>/dev/null</c>) or fails at
/// startup (the parent relays its error and exit code). So, as with QEMU, a zero exit means the sockets
/// are listening. A marker line rather than end-of-file: the runtime keeps its own duplicate of stderr.
/// </summary>
public static partial class Daemonizer
{
    /// <summary>Set in the daemon's environment: this process is the daemon half.</summary>
    public const string ChildVariable = "VERIFIED_DAEMONIZED";

    /// <summary>What the daemon writes on standard error once it serves.</summary>
    public const string ReadyLine = "\u0001verified: daemon serving";

    /// <summary>How long the parent waits for the daemon's exit code after its error stream ended.</summary>
    private static readonly TimeSpan ExitWait = TimeSpan.FromSeconds(30);

    /// <summary>True in the daemon half of a <c>--daemonize</c> start.</summary>
    public static bool IsChild => Environment.GetEnvironmentVariable(ChildVariable) == "1";

    /// <summary>
    /// The parent half: starts <c>verified</c> with <paramref name="args"/> (the whole command line) as the
    /// daemon, relays what it writes on standard error until it detaches, and returns the exit code to use.
    /// </summary>
    public static int RunParent(IReadOnlyList<string> args, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(error);
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which program is running");
        var psi = new ProcessStartInfo(self) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardInput = true };
        // Under `dotnet verified.dll` the program is the host: the assembly comes first.
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment[ChildVariable] = "1";
        using var child = Process.Start(psi) ?? throw new InvalidOperationException("could not start the daemon");
        child.StandardInput.Close();
        while (child.StandardError.ReadLine() is { } line)
        {
            if (line == ReadyLine) return 0;
            error.WriteLine(line);
        }
        // The stream ended without the marker: the daemon failed to start.
        return child.WaitForExit(ExitWait) && child.ExitCode != 0 ? child.ExitCode : 1;
    }

    /// <summary>The daemon half, once it serves: a session of its own, standard streams on /dev/null.</summary>
    public static void Detach()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        Console.Out.Flush();
        Console.Error.WriteLine(ReadyLine);
        Console.Error.Flush();
        _ = SetSid();
        int fd = Open("/dev/null", ReadWrite);
        if (fd < 0) return;
        for (int std = 0; std <= 2; std++) _ = Dup2(fd, std);
        if (fd > 2) _ = Close(fd);
    }

    private const int ReadWrite = 2;

    [LibraryImport("libc", EntryPoint = "setsid")]
    private static partial int SetSid();

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "dup2")]
    private static partial int Dup2(int from, int to);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
