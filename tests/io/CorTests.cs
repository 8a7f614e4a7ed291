// The copy-on-read filter under Verified's documented rule: a file node without a backing child is
// passed through untouched; a file node with one (a qcow2 node, which until the qcow2 driver lands is
// served by the forwarding fallback) gets what is read written back into it, unless the bottom option
// stops the copy at the top. Content lives in x-memory nodes (added through the Command API), whose
// write counters show whether a read was copied; a memory hook holds a write-back to show that a
// guest write through the filter waits for an overlapping copy-on-read and lands after it. The tests
// that rely on the fallback skip themselves once a real qcow2 driver is registered.
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Xunit;
using static Verified.Tests.IO.FilterKit;

namespace Verified.Tests.IO;

public sealed class CorTests
{
    private const int Size = 1 << 20;

    /// <summary>mtop and mbase (x-memory); "top" = qcow2 {file: mtop, backing: mbase}; "cor" over top.</summary>
    private static async Task<(BlockEngine E, MemoryDriver Top, MemoryDriver Base, byte[] Content)> ChainAsync(string corOptions = "")
    {
        var e = NewEngine(new FakeClock());
        var top = AddMemory(e, "mtop", Size);
        var bas = AddMemory(e, "mbase", Size);
        var content = Pattern(Size, 5);
        await e.FindNode("mtop")!.WriteAsync(0, content);
        BlockdevAdd(e, """{"driver":"qcow2","node-name":"top","file":"mtop","backing":"mbase"}""");
        BlockdevAdd(e, $$"""{"driver":"copy-on-read","node-name":"cor","file":"top"{{corOptions}}}""");
        return (e, top, bas, content);
    }

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

    [FactWithoutDriver("qcow2")]
    public async Task With_a_backing_chain_read_data_is_copied_into_the_top_layer()
    {
        var (e, top, _, content) = await ChainAsync();
        long writes = top.Writes;
        Assert.Equal(content.AsSpan(4096, 8192).ToArray(), await ReadAsync(e, "cor", 4096, 8192));
        Assert.Equal(writes + 1, top.Writes);
        Assert.Equal(8192, Driver<CopyOnReadDriver>(e, "cor").CopiedBytes);
        // The copy writes back what was read: the content is unchanged.
        Assert.Equal(content, await ReadAsync(e, "mtop", 0, Size));
    }

    [FactWithoutDriver("qcow2")]
    public async Task A_bottom_at_the_top_layer_copies_nothing()
    {
        var (e, top, _, content) = await ChainAsync(""","bottom":"top" """);
        long writes = top.Writes;
        Assert.Equal(content.AsSpan(0, 65536).ToArray(), await ReadAsync(e, "cor", 0, 65536));
        Assert.Equal(writes, top.Writes);
        Assert.Equal(0, Driver<CopyOnReadDriver>(e, "cor").CopiedBytes);
    }

    [FactWithoutDriver("qcow2")]
    public async Task A_bottom_below_copies_data_from_layers_that_cannot_report_allocation()
    {
        var (e, top, _, _) = await ChainAsync(""","bottom":"mbase" """);
        long writes = top.Writes;
        await ReadAsync(e, "cor", 0, 4096);
        Assert.Equal(writes + 1, top.Writes);
    }

    [FactWithoutDriver("qcow2")]
    public async Task A_guest_write_through_the_filter_waits_for_an_overlapping_copy_on_read_and_lands_after_it()
    {
        var (e, top, _, content) = await ChainAsync();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writeBackStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int writesSeen = 0;
        top.Hook = async (op, _, _) =>
        {
            if (op == MemoryOp.Write && Interlocked.Increment(ref writesSeen) == 1)
            {
                writeBackStarted.TrySetResult();
                await gate.Task;
            }
        };
        var cor = e.FindNode("cor")!;
        var read = Task.Run(() => ReadAsync(e, "cor", 0, 65536));
        await writeBackStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var newData = Enumerable.Repeat((byte)0xAB, 100).ToArray();
        var write = Task.Run(async () => await cor.WriteAsync(100, newData));
        // A write elsewhere is not held.
        await cor.WriteAsync(Size - 4096, new byte[4096]).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(100);
        Assert.False(write.IsCompleted);
        gate.SetResult();
        Assert.Equal(content.AsSpan(0, 65536).ToArray(), await read.WaitAsync(TimeSpan.FromSeconds(10)));
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(newData, await ReadAsync(e, "mtop", 100, 100));
    }
}
