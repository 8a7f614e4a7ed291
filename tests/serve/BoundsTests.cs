using Verified.Vocabulary;
using Verified.Server.Daemon;
using Verified.Server.Json;
using Verified.Server.Qmp;
using Xunit;

namespace Verified.Tests.Serve;

/// <summary>The daemon's bounds: QEMU's own where the protocol fixes them, and how the others relate.</summary>
public class BoundsTests
{
    /// <summary>QEMU 7.2's json-streamer limits, which decide when QEMU's error texts appear.</summary>
    [Fact]
    public void Parser_bounds_are_QEMUs()
    {
        Assert.Equal(1024, JsonMessageStream.NestingDepthMax);
        Assert.Equal(64L << 20, JsonMessageStream.TokenSizeMax);
        Assert.Equal(2 << 20, JsonMessageStream.TokenCountMax);
        Assert.Equal(512, QmpJsonWriter.DictBuckets);
    }

    [Fact]
    public void Daemon_bounds_fit_together()
    {
        Assert.InRange(QmpConnection.ReadChunkBytes, 1, JsonMessageStream.TokenSizeMax);
        Assert.True(QmpConnection.OutputQueueMax >= 2, "a reply and an event must fit at once");
        Assert.InRange(QmpDaemon.ClientsMax, 1, 65536);
        Assert.InRange(QmpDaemon.ListenBacklog, 1, QmpDaemon.ClientsMax);
        Assert.True(QmpSocketClient.LineBytesMax >= JsonMessageStream.TokenSizeMax, "verified graph reads any reply the daemon can send back");
        Assert.Equal(JsonMessageStream.TokenSizeMax, QmpDaemon.MessageBytesMax);
    }
}
