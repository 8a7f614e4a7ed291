// Shared helpers for the real-I/O tests: a temporary image file filled with a known pattern and
// removed afterwards, an engine wrapper that sends QMP JSON and asserts on replies, and a count of
// this process's descriptors open on a path (read from /proc/self/fd), used to check that failed
// graph changes leave no file open.
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Impl.Graph;
using Verified.Vocabulary;
using Xunit;

namespace Verified.Tests.IO;

/// <summary>A temporary file of a given size whose byte i is <c>(i * 7 + 3) &amp; 0xff</c>; deleted on dispose.</summary>
internal sealed class TempImage : IDisposable
{
    public TempImage(long size, bool pattern = true)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"verified-io-{Guid.NewGuid():N}.img");
        using var fs = new FileStream(Path, FileMode.CreateNew, FileAccess.Write);
        if (pattern)
        {
            var buf = new byte[size];
            for (long i = 0; i < size; i++) buf[i] = PatternByte(i);
            fs.Write(buf);
        }
        else
        {
            fs.SetLength(size);
        }
    }

    public string Path { get; }

    public static byte PatternByte(long i) => (byte)((i * 7 + 3) & 0xff);

    public byte[] ReadAll() => File.ReadAllBytes(Path);

    public void Dispose()
    {
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
            // Best effort: a leaked temp file must not hide the test's own result.
        }
    }
}

/// <summary>An engine driven by QMP JSON text.</summary>
internal sealed class IoEngine : IDisposable
{
    public BlockEngine Engine { get; } = new();

    public Reply Run(string json) => Engine.Execute(JsonNode.Parse(json)!.AsObject());

    public void Ok(string json)
    {
        var r = Run(json);
        Assert.True(r.IsOk, $"{json} failed: {r.Error}");
    }

    public string Error(string json)
    {
        var r = Run(json);
        Assert.False(r.IsOk, $"{json} unexpectedly succeeded");
        return r.Error!.Desc;
    }

    /// <summary>blockdev-add with the given options object.</summary>
    public Reply Add(string options) => Run($$$$"""{"execute":"blockdev-add","arguments":{{{{options}}}}}""");

    public void AddOk(string options)
    {
        var r = Add(options);
        Assert.True(r.IsOk, $"blockdev-add {options} failed: {r.Error}");
    }

    /// <summary>Attaches a writable virtio-blk device to <paramref name="node"/> and returns it.</summary>
    public DeviceParent Device(string id, string node, bool shareRw = false)
    {
        Ok($$$$"""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"{{{{id}}}}","drive":"{{{{node}}}}"{{{{(shareRw ? ",\"share-rw\":true" : "")}}}}}}""");
        return Engine.FindDevice(id)!;
    }

    public IReadOnlyList<string> NodeNames() => [.. Engine.Nodes.Select(n => n.Name)];

    public void Dispose() => Engine.Dispose();
}

internal static class Fds
{
    /// <summary>How many of this process's descriptors are open on <paramref name="path"/>.</summary>
    public static int OpenOn(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        int n = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == full) n++;
            }
            catch (IOException)
            {
                // The descriptor closed while we looked (the enumeration's own one does).
            }
        }
        return n;
    }
}
