// Image locking, checked against QEMU's own behaviour: two file nodes on one host file in this
// process conflict through their OFD locks with QEMU's exact texts (both when a device attaches and
// when blockdev-add takes permissions at once, via blkdebug's take-child-perms/unshare-child-perms),
// a refused command leaves the graph and the set of open descriptors as they were (counted through
// /proc/self/fd), locking:off nodes never conflict, read-only users coexist, and the real qemu-img
// (QEMU 7.2's file-posix) cannot open a qcow2 file Verified holds read-write, then can once it is
// released (qemu-img info takes locks only through qcow2: on a raw image it locks nothing).
using System.Diagnostics;
using Xunit;

namespace Verified.Tests.IO;

/// <summary>A fact that is skipped when qemu-img is not installed.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class QemuImgFactAttribute : FactAttribute
{
    public QemuImgFactAttribute()
    {
        if (QemuImg.Path is null) Skip = "qemu-img is not installed";
    }
}

internal static class QemuImg
{
    public static string? Path { get; } = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(d => System.IO.Path.Combine(d, "qemu-img"))
        .FirstOrDefault(File.Exists);

    /// <summary>Runs <c>qemu-img info FILE</c>; returns the exit code and stderr.</summary>
    public static (int Code, string Stderr) Info(string file) => Run("info", file);

    /// <summary>
    /// Makes <paramref name="file"/> a qcow2 image. qemu-img info locks only through a format that
    /// takes permissions without doing I/O (qcow2's metadata child); on a raw image it takes no lock at all.
    /// </summary>
    public static void CreateQcow2(string file, long size)
    {
        var (code, stderr) = Run("create", "-q", "-f", "qcow2", file, size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, stderr);
    }

    private static (int Code, string Stderr) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Path!) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, err.Result);
    }
}

public sealed class LockingTests
{
    private const int FileSize = 65536;

    private static string Raw(string name, string path, string fileExtra = "") =>
        $$$$"""{"driver":"raw","node-name":"{{{{name}}}}","file":{"driver":"file","node-name":"{{{{name}}}}-file","filename":"{{{{path}}}}"{{{{fileExtra}}}}}}""";

    private static string Blkdebug(string name, string path, string take, string unshare) =>
        $$$$"""{"driver":"blkdebug","node-name":"{{{{name}}}}","take-child-perms":[{{{{take}}}}],"unshare-child-perms":[{{{{unshare}}}}],"image":{"driver":"file","node-name":"{{{{name}}}}-file","filename":"{{{{path}}}}"}}""";

    [Fact]
    public void A_second_writer_on_the_same_file_is_refused_with_QEMUs_write_lock_text_and_nothing_changes()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw("a", img.Path));
        e.Device("vd0", "a");
        e.AddOk(Raw("b", img.Path));
        var nodes = e.NodeNames();
        int fds = Fds.OpenOn(img.Path);
        Assert.Equal(2, fds);

        var err = e.Error("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd1","drive":"b"}}""");
        Assert.Equal("Failed to get \"write\" lock", err);
        Assert.Null(e.Engine.FindDevice("vd1"));
        Assert.Equal(nodes, e.NodeNames());
        Assert.Equal(fds, Fds.OpenOn(img.Path));
        Assert.All(e.Engine.FindNode("b")!.Parents, p => Assert.Equal(Verified.Vocabulary.Perm.None, p.Perm));

        // The refused node can still be used once the first writer is gone.
        e.Ok("""{"execute":"device_del","arguments":{"id":"vd0"}}""");
        e.Device("vd1", "b");
    }

    [Fact]
    public void Blockdev_add_of_a_node_unsharing_write_is_refused_with_QEMUs_shared_lock_text()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw("a", img.Path));
        e.Device("vd0", "a");
        var nodes = e.NodeNames();
        int fds = Fds.OpenOn(img.Path);

        var r = e.Add(Blkdebug("d", img.Path, "\"consistent-read\"", "\"write\""));
        Assert.Equal("Failed to get shared \"write\" lock", r.Error!.Desc);
        Assert.Equal(nodes, e.NodeNames());
        Assert.Equal(fds, Fds.OpenOn(img.Path));

        r = e.Add(Blkdebug("d", img.Path, "\"write\"", ""));
        Assert.Equal("Failed to get \"write\" lock", r.Error!.Desc);
        Assert.Equal(nodes, e.NodeNames());
        Assert.Equal(fds, Fds.OpenOn(img.Path));
    }

    [Fact]
    public void A_reader_that_unshares_write_blocks_a_later_writer()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        // A reader that refuses to share write, then a writer: the writer sees the reader's "unshared write" byte.
        e.AddOk(Blkdebug("d", img.Path, "\"consistent-read\"", "\"write\""));
        e.AddOk(Raw("a", img.Path));
        Assert.Equal("Failed to get \"write\" lock",
            e.Error("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"a"}}"""));
        e.Ok("""{"execute":"blockdev-del","arguments":{"node-name":"d"}}""");
        e.Device("vd0", "a");
    }

    [Fact]
    public void Nodes_with_locking_off_do_not_conflict()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw("a", img.Path, ""","locking":"off" """));
        e.AddOk(Raw("b", img.Path, ""","locking":"off" """));
        e.Device("vd0", "a");
        e.Device("vd1", "b");
    }

    [Fact]
    public void Read_only_users_of_one_file_coexist()
    {
        using var img = new TempImage(0, pattern: false);
        QemuImg.CreateQcow2(img.Path, FileSize);
        using var e = new IoEngine();
        e.AddOk($$$$"""{"driver":"raw","node-name":"a","read-only":true,"file":{"driver":"file","node-name":"a-file","filename":"{{{{img.Path}}}}"}}""");
        e.AddOk($$$$"""{"driver":"raw","node-name":"b","read-only":true,"file":{"driver":"file","node-name":"b-file","filename":"{{{{img.Path}}}}"}}""");
        e.Device("vd0", "a");
        e.Device("vd1", "b");
        // A writer is refused: the readers do not share write.
        e.AddOk(Raw("c", img.Path));
        Assert.Equal("Failed to get \"write\" lock",
            e.Error("""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd2","drive":"c"}}"""));
    }

    [Fact]
    public void A_failed_transaction_that_opened_a_file_leaves_no_descriptor_open()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        var err = e.Error($$$$"""
            {"execute":"transaction","arguments":{"actions":[
              {"type":"blockdev-add","data":{{{{Raw("a", img.Path)}}}}},
              {"type":"abort","data":{}}]}}
            """);
        Assert.Equal("Transaction aborted using Abort action", err);
        Assert.Empty(e.NodeNames());
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }

    [Fact]
    public void A_blockdev_add_failing_after_its_file_opened_leaves_no_descriptor_open()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        // The file child opens first; raw then refuses its window.
        var r = e.Add($$$$"""{"driver":"raw","node-name":"a","offset":1000000,"file":{"driver":"file","node-name":"a-file","filename":"{{{{img.Path}}}}"}}""");
        Assert.False(r.IsOk);
        Assert.Empty(e.NodeNames());
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }

    [Fact]
    public void Deleting_the_nodes_closes_the_file()
    {
        using var img = new TempImage(FileSize);
        using var e = new IoEngine();
        e.AddOk(Raw("a", img.Path));
        e.Device("vd0", "a");
        Assert.Equal(1, Fds.OpenOn(img.Path));
        e.Ok("""{"execute":"device_del","arguments":{"id":"vd0"}}""");
        e.Ok("""{"execute":"blockdev-del","arguments":{"node-name":"a"}}""");
        Assert.Equal(0, Fds.OpenOn(img.Path));
    }

    [QemuImgFact]
    public void Qemu_img_cannot_open_a_file_Verified_holds_read_write_and_can_after_it_is_released()
    {
        using var img = new TempImage(0, pattern: false);
        QemuImg.CreateQcow2(img.Path, FileSize);
        using var e = new IoEngine();
        // Verified sees the qcow2 file as raw bytes: the locks are the file node's either way.
        e.AddOk(Raw("a", img.Path));
        Assert.Equal(0, QemuImg.Info(img.Path).Code); // no parent yet: no permission, no lock

        e.Device("vd0", "a");
        var (code, stderr) = QemuImg.Info(img.Path);
        Assert.NotEqual(0, code);
        Assert.Contains($"Could not open '{img.Path}': Failed to get shared \"write\" lock", stderr, StringComparison.Ordinal);

        e.Ok("""{"execute":"device_del","arguments":{"id":"vd0"}}""");
        Assert.Equal(0, QemuImg.Info(img.Path).Code);
    }

    [QemuImgFact]
    public void Qemu_img_may_read_a_file_Verified_holds_read_only()
    {
        using var img = new TempImage(0, pattern: false);
        QemuImg.CreateQcow2(img.Path, FileSize);
        using var e = new IoEngine();
        e.AddOk($$$$"""{"driver":"raw","node-name":"a","read-only":true,"file":{"driver":"file","node-name":"a-file","filename":"{{{{img.Path}}}}"}}""");
        e.Device("vd0", "a");
        var (code, stderr) = QemuImg.Info(img.Path);
        Assert.True(code == 0, stderr);
    }
}
