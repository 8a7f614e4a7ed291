using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// A fault armed on a host file: until disarmed, every <paramref name="Op"/> ("open" of a new file node,
/// "read" or "write" reaching a file node) on <paramref name="File"/> fails with <paramref name="Errno"/>.
/// It stands for a disk or network filesystem that fails on demand; campaigns arm and clear them.
/// </summary>
public sealed record HostFault(string File, string Op, int Errno);

/// <summary>The host faults in force, and what they make fail.</summary>
public static class HostFaults
{
    /// <summary>The operations a fault can fail.</summary>
    public static readonly IReadOnlyList<string> Ops = ["open", "read", "write"];

    /// <summary>The errno <paramref name="op"/> on <paramref name="file"/> fails with, or 0.</summary>
    public static int Of(Graph g, string file, string op)
    {
        ArgumentNullException.ThrowIfNull(g);
        foreach (var f in g.Faults)
            if (f.File == file && f.Op == op) return f.Errno;
        return 0;
    }

    /// <summary>Arms a fault (replacing one on the same file and operation).</summary>
    public static Graph Arm(Graph g, HostFault f)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(f);
        return g with { Faults = [.. g.Faults.Where(x => x.File != f.File || x.Op != f.Op), f] };
    }

    /// <summary>Disarms every fault.</summary>
    public static Graph Clear(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        return g with { Faults = ValueList<HostFault>.Empty };
    }

    /// <summary>The file driver's open error under an open fault (QEMU's text, with the errno's message).</summary>
    public static QmpError? OpenError(Graph g, Node n)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(n);
        var file = n.Str("filename") ?? "";
        int errno = Of(g, file, "open");
        return errno == 0 ? null : Results.Fail($"Could not open '{file}': {ErrnoText(errno)}");
    }

    /// <summary>strerror for the errnos campaigns inject.</summary>
    public static string ErrnoText(int errno) => errno switch
    {
        5 => "Input/output error",
        28 => "No space left on device",
        13 => "Permission denied",
        95 => "Operation not supported",
        _ => $"Unknown error {errno}",
    };
}
