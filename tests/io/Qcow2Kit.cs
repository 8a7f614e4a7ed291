// Helpers for the qcow2 tests: running qemu-img and qemu-io (real clients, never stand-ins), and an
// engine with one qcow2 node (over a file node, optionally with a backing qcow2 or raw node) opened
// through QMP the way a user would, with a writable device on top for I/O.
using System.Diagnostics;
using System.Text.Json;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.IO;

internal static class Qemu
{
    /// <summary>Longest a qemu-img / qemu-io call may take.</summary>
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(120);

    public static (int Code, string Out) Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(ToolTimeout))
        {
            p.Kill();
            throw new TimeoutException($"{tool} {string.Join(' ', args)} timed out");
        }
        return (p.ExitCode, output + err.Result);
    }

    /// <summary>Runs a tool and asserts it succeeded; returns its output.</summary>
    public static string Ok(string tool, params string[] args)
    {
        var (code, output) = Run(tool, args);
        Assert.True(code == 0, $"{tool} {string.Join(' ', args)} exited {code}: {output}");
        return output;
    }

    /// <summary><c>qemu-img check</c>: no errors and (unless allowed) no leaks.</summary>
    public static void CheckClean(string image, bool allowLeaks = false)
    {
        var (code, output) = Run("qemu-img", "check", "-f", "qcow2", image);
        Assert.False(output.Contains("ERROR", StringComparison.Ordinal), output);
        Assert.DoesNotContain("ERROR", output, StringComparison.Ordinal);
        Assert.DoesNotContain("corrupt", output, StringComparison.OrdinalIgnoreCase);
        if (!allowLeaks)
        {
            Assert.True(code == 0, $"qemu-img check {image} exited {code}: {output}");
            Assert.Contains("No errors were found", output, StringComparison.Ordinal);
        }
        else
        {
            Assert.True(code is 0 or 3, $"qemu-img check {image} exited {code}: {output}");
        }
    }
}

/// <summary>An engine with qcow2 node <c>q</c> over <paramref name="image"/>, a device <c>d</c> on it.</summary>
internal sealed class Qcow2Node : IDisposable
{
    private readonly IoEngine io = new();

    public Qcow2Node(string image, string? backing = null, string backingFormat = "qcow2", bool readOnly = false)
    {
        string backingOpt = backing is null ? "" : backingFormat == "raw"
            ? $$$""","backing":{"driver":"raw","node-name":"b","file":{"driver":"file","filename":{{{JsonSerializer.Serialize(backing)}}}}}"""
            : $$$""","backing":{"driver":"qcow2","node-name":"b","file":{"driver":"file","filename":{{{JsonSerializer.Serialize(backing)}}}}}""";
        io.AddOk($$$"""
            {"driver":"qcow2","node-name":"q","discard":"unmap","read-only":{{{(readOnly ? "true" : "false")}}},
            "file":{"driver":"file","filename":{{{JsonSerializer.Serialize(image)}}}}{{{backingOpt}}}}
            """);
        Device = readOnly ? null : io.Device("d", "q");
        Node = io.Engine.FindNode("q")!;
    }

    public BlockNode Node { get; }

    public DeviceParent? Device { get; }

    public Qcow2Driver Driver => (Qcow2Driver)Node.Driver;

    public byte[] Read(long offset, int length)
    {
        var buf = new byte[length];
        Node.ReadAsync(offset, buf).AsTask().GetAwaiter().GetResult();
        return buf;
    }

    public void Write(long offset, byte[] data) => Device!.WriteAsync(offset, data).AsTask().GetAwaiter().GetResult();

    public void Zero(long offset, long length, bool unmap = false) =>
        Device!.WriteZeroesAsync(offset, length, unmap ? WriteFlags.MayUnmap : WriteFlags.None).AsTask().GetAwaiter().GetResult();

    public void Discard(long offset, long length) => Device!.DiscardAsync(offset, length).AsTask().GetAwaiter().GetResult();

    public void Flush() => Node.FlushAsync().AsTask().GetAwaiter().GetResult();

    public string Error(string json) => io.Error(json);

    /// <summary>Runs a QMP command on the engine; returns the reply.</summary>
    public Verified.Vocabulary.Reply Run(string json) => io.Run(json);

    /// <summary>Deletes the device and the node (writing cached metadata) and closes the engine.</summary>
    public void Dispose() => io.Dispose();
}
