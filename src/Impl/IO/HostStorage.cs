using System.Collections.Concurrent;

namespace Verified.Impl.IO;

/// <summary>Which host-file operation a <see cref="HostStorage"/> fault fails.</summary>
public enum HostOp
{
    /// <summary>The file driver's open of a new node (not later reopens for perm changes).</summary>
    Open,

    /// <summary>A read request reaching the file driver.</summary>
    Read,

    /// <summary>A write request reaching the file driver.</summary>
    Write,
}

/// <summary>
/// The host storage the <c>file</c> driver uses: where relative file names resolve (QEMU resolves them
/// against its working directory; a campaign gives each run its own folder) and faults armed on demand
/// (a file whose opens, reads or writes fail with a chosen errno until disarmed). This is the seam
/// campaigns and tests inject storage failures through; by default nothing fails.
/// </summary>
public sealed class HostStorage
{
    private readonly ConcurrentDictionary<(string File, HostOp Op), int> faults = new();

    /// <summary>Folder relative file names resolve against; null for the process's working directory.</summary>
    public string? BaseDirectory { get; init; }

    /// <summary>The path the OS is given for <paramref name="filename"/> (messages keep the name as given, as QEMU's do).</summary>
    public string Resolve(string filename)
    {
        ArgumentNullException.ThrowIfNull(filename);
        return BaseDirectory is null || filename.Length == 0 || Path.IsPathRooted(filename) ? filename : Path.Combine(BaseDirectory, filename);
    }

    /// <summary>From now on every <paramref name="op"/> on <paramref name="filename"/> (as nodes name it) fails with <paramref name="errno"/>.</summary>
    public void Arm(string filename, HostOp op, int errno)
    {
        ArgumentNullException.ThrowIfNull(filename);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(errno);
        faults[(filename, op)] = errno;
    }

    /// <summary>Disarms every fault.</summary>
    public void Clear() => faults.Clear();

    /// <summary>
    /// Consulted for every operation no armed fault fails: returns an errno to fail it with, or 0. Tests use it
    /// to fail everything after the n-th write, which leaves a file as a process killed at that point would.
    /// </summary>
    public Func<string, HostOp, int>? Injector { get; init; }

    /// <summary>The errno <paramref name="op"/> on <paramref name="filename"/> fails with, or 0.</summary>
    public int Fault(string filename, HostOp op)
    {
        int armed = faults.IsEmpty ? 0 : faults.GetValueOrDefault((filename, op));
        return armed != 0 || Injector is null ? armed : Injector(filename, op);
    }
}
