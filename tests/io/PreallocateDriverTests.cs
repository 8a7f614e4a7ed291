// The preallocate filter over a real file: it must pass every request through unchanged (reads,
// writes, write-zeroes, flush) and, because node sizes are fixed in this engine, never change the
// file's size, neither while writing nor when it is closed; its option checks use QEMU's texts.
using Xunit;

namespace Verified.Tests.IO;

public sealed class PreallocateDriverTests
{
    private const int FileSize = 1 << 20;

    private static string Stack(string path, string options = "") =>
        $$$$"""{"driver":"preallocate","node-name":"p"{{{{options}}}},"file":{"driver":"file","node-name":"f","filename":"{{{{path}}}}"}}""";

    [Fact]
    public async Task Requests_pass_through_preallocate_and_the_file_keeps_its_size()
    {
        using var img = new TempImage(FileSize);
        var model = img.ReadAll();
        using (var e = new IoEngine())
        {
            e.AddOk(Stack(img.Path, ""","prealloc-size":65536,"prealloc-align":4096"""));
            var dev = e.Device("vd0", "p");
            Assert.Equal(FileSize, dev.Length);
            var data = Enumerable.Range(0, 5000).Select(i => (byte)(i % 251)).ToArray();
            await dev.WriteAsync(FileSize - 5000, data);
            data.CopyTo(model, FileSize - 5000);
            await dev.WriteZeroesAsync(100, 1000);
            Array.Clear(model, 100, 1000);
            await dev.FlushAsync();
            var back = new byte[FileSize];
            await dev.ReadAsync(0, back);
            Assert.Equal(model, back);
            Assert.Equal(FileSize, new FileInfo(img.Path).Length);
        }
        Assert.Equal(model, img.ReadAll());
    }

    [Fact]
    public void A_prealloc_align_not_a_multiple_of_512_is_refused_with_QEMUs_text()
    {
        using var img = new TempImage(4096);
        using var e = new IoEngine();
        Assert.Equal("prealloc-align parameter of preallocate filter is not aligned to 512",
            e.Add(Stack(img.Path, ""","prealloc-align":1000""")).Error!.Desc);
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }
}
