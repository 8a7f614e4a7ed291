// The x-memory test node that the filter tests keep content in: it is added through the Command API
// (the QAPI schema does not know it, so QMP refuses it), keeps what is written in sparse pages, reads
// unwritten ranges and zeroed or discarded ranges as zeroes, and runs a hook before each request that
// can inject an error. Each test adds one node and compares what it reads with what it wrote.
using Verified.Impl.IO;
using Xunit;
using static Verified.Tests.IO.FilterKit;

namespace Verified.Tests.IO;

public sealed class FilterMemoryDriverTests
{
    [Fact]
    public async Task Memory_nodes_keep_what_is_written_and_read_zeroes_elsewhere()
    {
        var e = NewEngine(new FakeClock());
        var mem = AddMemory(e, "m", 300_000);
        var node = e.FindNode("m")!;
        Assert.Equal(300_000, node.Length);
        var data = Pattern(150_000, 4);
        await node.WriteAsync(60_000, data);
        Assert.Equal(data, await ReadAsync(e, "m", 60_000, 150_000));
        Assert.Equal(new byte[60_000], await ReadAsync(e, "m", 0, 60_000));
        await node.WriteZeroesAsync(70_000, 1000);
        await node.DiscardAsync(65_536, 131_072);
        var all = mem.Snapshot();
        Assert.Equal(-1, all.AsSpan(0, 60_000).IndexOfAnyExcept((byte)0));
        Assert.Equal(data.AsSpan(0, 5536).ToArray(), all.AsSpan(60_000, 5536).ToArray());
        Assert.Equal(-1, all.AsSpan(65_536, 131_072).IndexOfAnyExcept((byte)0));
        Assert.Equal(data.AsSpan(196_608 - 60_000).ToArray(), all.AsSpan(196_608, 210_000 - 196_608).ToArray());
    }

    [Fact]
    public async Task A_hook_can_fail_requests_with_an_errno()
    {
        var e = NewEngine(new FakeClock());
        var mem = AddMemory(e, "m", 65_536);
        mem.Hook = (op, _, _) => op == MemoryOp.Write ? throw new BlockIOException(Errnos.ENOSPC, "full") : ValueTask.CompletedTask;
        await ThrowsErrnoAsync(Errnos.ENOSPC, async () => await e.FindNode("m")!.WriteAsync(0, new byte[10]));
        Assert.Equal(new byte[10], await ReadAsync(e, "m", 0, 10));
    }

    [Fact]
    public void QMP_cannot_add_a_memory_node()
    {
        var e = NewEngine(new FakeClock());
        Fails(e, """{"execute":"blockdev-add","arguments":{"driver":"x-memory","node-name":"m","size":512}}""");
        Assert.Null(e.FindNode("m"));
    }
}
