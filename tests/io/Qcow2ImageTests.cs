// Empty qcow2 images that Verified creates (blockdev-snapshot-sync's overlay) must be images real
// QEMU accepts: `qemu-img check` finds no error or leak, and `qemu-img info` reports the size and
// the backing file and format Verified recorded. qemu-img is a real client here, not a stand-in.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Verified.Impl.Formats;
using Xunit;

namespace Verified.Tests.IO;

public sealed class Qcow2ImageTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("verified-qcow2-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static (int Code, string Out) QemuImg(params string[] args)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }

    [Theory]
    [InlineData(1L << 20)]
    [InlineData(3L << 30)]
    [InlineData(65536L * 8192 * 3 + 1)]
    public void Created_image_passes_qemu_img_check(long size)
    {
        var path = Path.Combine(dir, "a.qcow2");
        Qcow2Image.Create(path, size);
        var (code, output) = QemuImg("check", path);
        Assert.True(code == 0, output);
        Assert.Contains("No errors were found", output, StringComparison.Ordinal);
        var info = JsonNode.Parse(QemuImg("info", "--output=json", path).Out)!;
        Assert.Equal((size + 511) / 512 * 512, info["virtual-size"]!.GetValue<long>());
        Assert.Equal("qcow2", info["format"]!.GetValue<string>());
    }

    [Fact]
    public void Backing_file_and_format_are_recorded()
    {
        var basePath = Path.Combine(dir, "base.qcow2");
        var top = Path.Combine(dir, "top.qcow2");
        Qcow2Image.Create(basePath, 1 << 20);
        Qcow2Image.Create(top, 1 << 20, basePath, "qcow2");
        var info = JsonNode.Parse(QemuImg("info", "--output=json", top).Out)!;
        Assert.Equal(basePath, info["backing-filename"]!.GetValue<string>());
        Assert.Equal("qcow2", info["backing-filename-format"]!.GetValue<string>());
        var (code, output) = QemuImg("check", top);
        Assert.True(code == 0, output);
    }
}
