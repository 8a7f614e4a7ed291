// The copy-on-read filter over nodes without a backing child: reads, writes, zeroes and discards pass
// through untouched; over a real qcow2 layer with a backing child, a guest write through the filter
// waits for an overlapping copy-on-read (read, then write-back) and lands after it. Content lives in
// x-memory nodes (added through the Command API): their write counters show that nothing was copied,
// and a memory hook holds the copy-on-read's read of the backing node to expose the ordering. Copy-on-read over
// a qcow2 chain on real files (the top filled with what was read, qemu-img map agreeing) is tested in
// Qcow2SnapshotTests.
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Xunit;
using static Verified.Tests.IO.FilterKit;

namespace Verified.Tests.IO;

public sealed class CorTests
{
    private const int Size = 1 << 20;

    /// <summary>mtop and mbase (x-memory); "top" = qcow2 {file: mtop, backing: mbase}; "cor" over top.</summary>
    [Fact]
    public async Task Without_a_backing_chain_reads_pass_through_and_nothing_is_written()
    {
        var e = NewEngine(new FakeClock());
        var mem = AddMemory(e, "mem", Size);
        var content = Pattern(Size, 2);
        await e.FindNode("mem")!.WriteAsync(0, content);
        BlockdevAdd(e, """{"driver":"copy-on-read","node-name":"cor","file":"mem"}""");
        long writes = mem.Writes;
        Assert.Equal(content, await ReadAsync(e, "cor", 0, Size));
        Assert.Equal(writes, mem.Writes);
        Assert.Equal(0, Driver<CopyOnReadDriver>(e, "cor").CopiedBytes);
        Assert.Equal(Size, e.FindNode("cor")!.Length);
    }

    [Fact]
    public async Task Writes_write_zeroes_discards_and_flushes_are_forwarded_to_the_file()
    {
        var e = NewEngine(new FakeClock());
        AddMemory(e, "mem", Size);
        BlockdevAdd(e, """{"driver":"copy-on-read","node-name":"cor","file":"mem"}""");
        var cor = e.FindNode("cor")!;
        var data = Pattern(8192, 9);
        await cor.WriteAsync(4096, data);
        Assert.Equal(data, await ReadAsync(e, "mem", 4096, 8192));
        await cor.WriteZeroesAsync(4096, 4096);
        Assert.Equal(new byte[4096], await ReadAsync(e, "mem", 4096, 4096));
        await cor.DiscardAsync(8192, 4096);
        Assert.Equal(new byte[4096], await ReadAsync(e, "mem", 8192, 4096));
        await cor.FlushAsync();
    }

    /// <summary>Room in the qcow2 layer's x-memory file for the image's metadata and every data cluster.</summary>
    private const int TopFileSize = 4 * Size;

    /// <summary>Longest any step below may take before the test calls it hung.</summary>
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_guest_write_waits_for_an_overlapping_copy_on_read_over_qcow2_and_lands_after_it()
    {
        var e = NewEngine(new FakeClock());
        AddMemory(e, "mtop", TopFileSize);
        await e.FindNode("mtop")!.WriteAsync(0, Verified.Impl.Formats.Qcow2Image.Layout(Size, null, null, Verified.Impl.Formats.Qcow2Image.ClusterBits));
        var baseFile = AddMemory(e, "mbase", Size);
        var content = Pattern(Size, 5);
        await e.FindNode("mbase")!.WriteAsync(0, content);
        BlockdevAdd(e, """{"driver":"qcow2","node-name":"top","file":"mtop","backing":"mbase"}""");
        BlockdevAdd(e, """{"driver":"copy-on-read","node-name":"cor","file":"top"}""");

        // Hold the first read of the backing node: the copy-on-read's, before its write-back. (Holding a
        // write to the qcow2 file instead would test qcow2's own allocation lock, not the filter.)
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var copyStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int readsSeen = 0;
        baseFile.Hook = async (op, _, _) =>
        {
            if (op == MemoryOp.Read && Interlocked.Increment(ref readsSeen) == 1)
            {
                copyStarted.TrySetResult();
                await gate.Task;
            }
        };
        var cor = e.FindNode("cor")!;
        var read = Task.Run(() => ReadAsync(e, "cor", 0, 65536));
        await copyStarted.Task.WaitAsync(StepTimeout);
        var newData = Enumerable.Repeat((byte)0xAB, 100).ToArray();
        var write = Task.Run(async () => await cor.WriteAsync(100, newData));
        await Task.Delay(100);
        Assert.False(write.IsCompleted, "the guest write finished while the overlapping copy-on-read was still writing back");
        gate.SetResult();
        Assert.Equal(content.AsSpan(0, 65536).ToArray(), await read.WaitAsync(StepTimeout));
        await write.WaitAsync(StepTimeout);
        Assert.True(Driver<CopyOnReadDriver>(e, "cor").CopiedBytes >= 65536);
        // The write landed after the copy: the top layer has the new bytes over the copied ones.
        var expected = content.AsSpan(0, 65536).ToArray();
        newData.CopyTo(expected, 100);
        Assert.Equal(expected, await ReadAsync(e, "top", 0, 65536));
    }
}
