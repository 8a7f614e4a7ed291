// A qcow2 node added without a "backing" option opens the backing chain its header names, as QEMU's
// bdrv_open_backing_file does. Chains qemu-img makes (relative and absolute names, a qcow2 and a raw
// bottom, a backing format left out so it is probed, a top larger than its backing) must read through
// Verified byte for byte as `qemu-img convert -O raw` reads them, which is qemu-io's block layer reading
// the same chain. Chains Verified writes itself check the bounds: a loop and a chain deeper than
// HeaderBackingDepthMax are refused, a missing file at the bottom of a three-deep chain fails with
// QEMU's nested text, and every refusal (a later action's in a transaction too) leaves the graph exactly
// as it was; blockdev-del of the top takes the implicit nodes with it.
using System.Globalization;
using System.Text.Json;
using Verified.Impl.Engine;
using Verified.Impl.Formats;
using Xunit;

namespace Verified.Tests.IO;

public sealed class HeaderBackingTests : IDisposable
{
    /// <summary>Virtual size of the bottom images; the top is larger, so its tail reads past the backing's end.</summary>
    private const long BaseSize = 4L << 20;

    /// <summary>Virtual size of the top image.</summary>
    private const long TopSize = 6L << 20;

    private readonly string dir = Directory.CreateTempSubdirectory("verified-hdrbacking-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    private static string Size(long bytes) => bytes.ToString(CultureInfo.InvariantCulture);

    private static string File(string path) => $$"""{"driver":"file","filename":{{JsonSerializer.Serialize(path)}}}""";

    /// <summary>Reads the whole of node <paramref name="name"/>.</summary>
    private static byte[] ReadAll(IoEngine io, string name)
    {
        var node = io.Engine.FindNode(name)!;
        var buf = new byte[node.Length];
        node.ReadAsync(0, buf).AsTask().GetAwaiter().GetResult();
        return buf;
    }

    /// <summary>What QEMU reads from <paramref name="image"/>'s chain, as a raw file's bytes.</summary>
    private byte[] QemuReads(string image)
    {
        var raw = P("qemu-read.raw");
        Qemu.Ok("qemu-img", "convert", "-O", "raw", image, raw);
        return System.IO.File.ReadAllBytes(raw);
    }

    // A three-deep chain qemu-img made (relative name below, absolute name above, format recorded) reads as QEMU reads it.
    [Theory]
    [InlineData("qcow2", true)]
    [InlineData("qcow2", false)]
    [InlineData("raw", true)]
    [InlineData("raw", false)]
    public void A_chain_qemu_img_made_reads_as_QEMU_reads_it(string baseFormat, bool formatRecorded)
    {
        Directory.CreateDirectory(P("sub"));
        var bottom = P($"sub/base.{baseFormat}");
        Qemu.Ok("qemu-img", "create", "-f", baseFormat, bottom, Size(BaseSize));
        Qemu.Ok("qemu-io", "-f", baseFormat, "-c", "write -P 0x11 0 3M", bottom);
        var mid = P("sub/mid.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-b", Path.GetFileName(bottom), "-F", baseFormat, mid);
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 1M 512k", "-c", "write -z 2M 64k", mid);
        if (!formatRecorded)
        {
            // The backing format extension comes first after the 112-byte header: end the extensions there, so the format is probed.
            Qemu.Ok("qemu-io", "-f", "raw", "-c", "write -P 0 112 4", mid);
        }
        var top = P("top.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-b", mid, "-F", "qcow2", top, Size(TopSize));
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 1536k 4k", "-c", "write -P 0x44 5M 4k", top);

        var expected = QemuReads(top);
        using var io = new IoEngine();
        io.AddOk($$"""{"driver":"qcow2","node-name":"top","read-only":true,"file":{{File(top)}}}""");
        Assert.Equal(6, io.Engine.Nodes.Count);
        Assert.True(expected.AsSpan().SequenceEqual(ReadAll(io, "top")), "Verified read the chain differently from qemu-img convert");
        // Spot checks, so a chain neither side opened (all zeroes) cannot pass.
        Assert.Equal(0x11, expected[0]);
        Assert.Equal(0x22, expected[(1 << 20) + 1]);
        Assert.Equal(0x33, expected[(1536 << 10) + 1]);
    }

    // backing: null opens no backing file: unallocated clusters read as zeroes.
    [QemuImgFact]
    public void Backing_null_opens_none_and_reads_zeroes_below()
    {
        var bottom = P("base.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", bottom, Size(BaseSize));
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", bottom);
        var top = P("top.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
        using var io = new IoEngine();
        io.AddOk($$"""{"driver":"qcow2","node-name":"top","backing":null,"file":{{File(top)}}}""");
        Assert.Equal(2, io.Engine.Nodes.Count);
        Assert.All(ReadAll(io, "top"), b => Assert.Equal(0, b));
    }

    // A missing file at the bottom of a chain fails with one context per level, and the graph is as before.
    [Fact]
    public void A_missing_bottom_fails_with_QEMUs_nested_text_and_changes_nothing()
    {
        Qcow2Image.Create(P("mid.qcow2"), BaseSize, "gone.qcow2", "qcow2");
        Qcow2Image.Create(P("top.qcow2"), BaseSize, "mid.qcow2", "qcow2");
        using var io = new IoEngine();
        io.AddOk("""{"driver":"null-co","node-name":"n"}""");
        var before = io.NodeNames();
        var err = io.Error($$$"""{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"top","file":{{{File(P("top.qcow2"))}}}}}""");
        Assert.Equal($"Could not open backing file: Could not open backing file: Could not open '{P("gone.qcow2")}': No such file or directory", err);
        Assert.Equal(before, io.NodeNames());
        Assert.Equal(0, Fds.OpenOn(P("top.qcow2")));
        Assert.Equal(0, Fds.OpenOn(P("mid.qcow2")));
    }

    // Two images naming each other are refused (QEMU 7.2 recurses until it hangs), and nothing stays open.
    [Fact]
    public void A_loop_is_refused_and_changes_nothing()
    {
        Qcow2Image.Create(P("a.qcow2"), BaseSize, "b.qcow2", "qcow2");
        Qcow2Image.Create(P("b.qcow2"), BaseSize, "a.qcow2", "qcow2");
        using var io = new IoEngine();
        var err = io.Error($$$"""{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"a","read-only":true,"file":{{{File(P("a.qcow2"))}}}}}""");
        Assert.EndsWith($"Backing file '{P("b.qcow2")}' creates an infinite loop.", err, StringComparison.Ordinal);
        Assert.StartsWith("Could not open backing file: Could not open backing file: ", err, StringComparison.Ordinal);
        Assert.Empty(io.NodeNames());
        Assert.Equal(0, Fds.OpenOn(P("a.qcow2")));
    }

    // A chain exactly HeaderBackingDepthMax deep opens; one image deeper is refused.
    [Theory]
    [InlineData(BlockEngine.HeaderBackingDepthMax, true)]
    [InlineData(BlockEngine.HeaderBackingDepthMax + 1, false)]
    public void Chains_open_down_to_the_depth_bound_and_no_deeper(int backingImages, bool opens)
    {
        Qcow2Image.Create(P("l0.qcow2"), BaseSize);
        for (int i = 1; i <= backingImages; i++) Qcow2Image.Create(P($"l{i}.qcow2"), BaseSize, $"l{i - 1}.qcow2", "qcow2");
        using var io = new IoEngine();
        var reply = io.Add($$"""{"driver":"qcow2","node-name":"top","read-only":true,"file":{{File(P($"l{backingImages}.qcow2"))}}}""");
        Assert.Equal(opens, reply.IsOk);
        Assert.Equal(opens ? 2 * (backingImages + 1) : 0, io.Engine.Nodes.Count);
        if (!opens) Assert.EndsWith($"Backing chain longer than {BlockEngine.HeaderBackingDepthMax} images", reply.Error!.Desc, StringComparison.Ordinal);
    }

    // In a transaction, a later action's failure removes the chain an earlier blockdev-add opened (and closes its files).
    [Fact]
    public void A_failing_transaction_removes_the_chain_again()
    {
        Qcow2Image.Create(P("base.qcow2"), BaseSize);
        Qcow2Image.Create(P("top.qcow2"), BaseSize, "base.qcow2", "qcow2");
        using var io = new IoEngine();
        var add = $$$"""{"type":"blockdev-add","data":{"driver":"qcow2","node-name":"top","file":{{{File(P("top.qcow2"))}}}}}""";
        var err = io.Error($$$"""{"execute":"transaction","arguments":{"actions":[{{{add}}},{"type":"blockdev-del","data":{"node-name":"nosuch"}}]}}""");
        Assert.Equal("Failed to find node with node-name='nosuch'", err);
        Assert.Empty(io.NodeNames());
        Assert.Equal(0, Fds.OpenOn(P("base.qcow2")));
        io.Ok($$$"""{"execute":"transaction","arguments":{"actions":[{{{add}}}]}}""");
        Assert.Equal(4, io.NodeNames().Count);
    }

    // The implicit nodes belong to the top: blockdev-del takes the whole chain, and a read-only implicit node cannot be deleted on its own.
    [Fact]
    public void Deleting_the_top_takes_the_implicit_chain_with_it()
    {
        Qcow2Image.Create(P("base.qcow2"), BaseSize);
        Qcow2Image.Create(P("top.qcow2"), BaseSize, "base.qcow2", "qcow2");
        using var io = new IoEngine();
        io.AddOk($$"""{"driver":"qcow2","node-name":"top","file":{{File(P("top.qcow2"))}}}""");
        var backing = io.Engine.FindNode("top")!.Child("backing")!.Node;
        Assert.True(backing.AutoNamed && backing.ReadOnly && !backing.MonitorOwned);
        Assert.Equal(P("base.qcow2"), backing.Child("file")!.Node.Str("filename"));
        Assert.StartsWith("Node '", io.Error($$$"""{"execute":"blockdev-del","arguments":{"node-name":"{{{backing.Name}}}"}}"""), StringComparison.Ordinal);
        io.Ok("""{"execute":"blockdev-del","arguments":{"node-name":"top"}}""");
        Assert.Empty(io.NodeNames());
        Assert.Equal(0, Fds.OpenOn(P("base.qcow2")));
    }
}
