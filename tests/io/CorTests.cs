// The copy-on-read filter over nodes without a backing child: reads, writes, zeroes and discards pass
// through untouched. Content lives in x-memory nodes (added through the Command API), whose write
// counters show that nothing was copied. Copy-on-read over a real qcow2 backing chain (the top filled
// with what was read, qemu-img map agreeing) is tested in Qcow2SnapshotTests.
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

}
