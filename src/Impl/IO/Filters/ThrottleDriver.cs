using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The throttle filter (block/throttle.c): every request waits until its throttle group's buckets
/// admit it, then goes to <c>file</c> unchanged. Reads are accounted as reads; writes, write-zeroes
/// and discards as writes of their length; flushes are not throttled.
/// </summary>
/// <remarks>
/// <para>
/// Membership: <see cref="Open"/> joins the group named by <c>throttle-group</c> (<c>Members++</c>) and
/// <see cref="Close"/> leaves it, so the engine can refuse object-del while the group is used. The group's
/// buckets are shared by all its members (<see cref="ThrottleState"/>). Time comes from the engine's
/// injected clock only.
/// </para>
/// <para>
/// A group without limits costs one field test per request: no lock, no await, no allocation. With
/// limits, a request that fits takes a lock and allocates nothing; only a request that must wait
/// allocates its queue entry and state machine.
/// </para>
/// <para>
/// Not done: QEMU stops throttling while a node is drained, releasing the queued requests at once;
/// Verified's drain gate is not visible to drivers, so queued requests keep their pace during a drain.
/// </para>
/// </remarks>
[BlockDriverName("throttle")]
public sealed class ThrottleDriver : BlockDriver
{
    private ThrottleGroup? group;
    private ThrottleState? state;

    /// <summary>The group this node belongs to (null when closed).</summary>
    public ThrottleGroup? Group => group;

    /// <summary>The group's shared bucket state, or null when the group has no limits.</summary>
    public ThrottleState? State => state;

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        ArgumentNullException.ThrowIfNull(services);
        var id = Node.Str("throttle-group");
        if (id is null) return QmpError.Generic("Parameter 'throttle-group' is missing");
        var g = services.ThrottleGroups(id);
        if (g is null) return QmpError.Generic($"Throttle group '{id}' does not exist");
        var (limits, err) = ThrottleLimits.Parse(g.Props.TryGetValue("limits", out var json) ? json : null);
        if (limits is null) return QmpError.Generic(err!);
        var s = ThrottleState.For(g, limits, services.Clock);
        state = s.Limits.Enabled ? s : null;
        group = g;
        g.Members++;
        return null;
    }

    /// <inheritdoc/>
    protected internal override void Close()
    {
        if (group is null) return;
        group.Members--;
        group = null;
        state = null;
    }

    private BlockNode File => Primary?.Node ?? throw new BlockIOException(Errnos.EIO, $"throttle node '{Node.Name}' has no file child");

    /// <inheritdoc/>
    public override long Length => Primary?.Node.Length ?? 0;

    /// <inheritdoc/>
    public override ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        var s = state;
        return s is null || s.TryAdmit(false, buffer.Length) ? File.ReadAsync(offset, buffer) : ReadSlowAsync(s, offset, buffer);
    }

    /// <inheritdoc/>
    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        var s = state;
        return s is null || s.TryAdmit(true, data.Length) ? File.WriteAsync(offset, data, flags) : WriteSlowAsync(s, offset, data, flags);
    }

    /// <inheritdoc/>
    public override ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        var s = state;
        return s is null || s.TryAdmit(true, length) ? File.WriteZeroesAsync(offset, length, flags) : WriteZeroesSlowAsync(s, offset, length, flags);
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length)
    {
        var s = state;
        return s is null || s.TryAdmit(true, length) ? File.DiscardAsync(offset, length) : DiscardSlowAsync(s, offset, length);
    }

    /// <inheritdoc/>
    public override ValueTask FlushAsync() => File.FlushAsync();

    private async ValueTask ReadSlowAsync(ThrottleState s, long offset, Memory<byte> buffer)
    {
        await s.AdmitAsync(false, buffer.Length).ConfigureAwait(false);
        await File.ReadAsync(offset, buffer).ConfigureAwait(false);
    }

    private async ValueTask WriteSlowAsync(ThrottleState s, long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        await s.AdmitAsync(true, data.Length).ConfigureAwait(false);
        await File.WriteAsync(offset, data, flags).ConfigureAwait(false);
    }

    private async ValueTask WriteZeroesSlowAsync(ThrottleState s, long offset, long length, WriteFlags flags)
    {
        await s.AdmitAsync(true, length).ConfigureAwait(false);
        await File.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
    }

    private async ValueTask DiscardSlowAsync(ThrottleState s, long offset, long length)
    {
        await s.AdmitAsync(true, length).ConfigureAwait(false);
        await File.DiscardAsync(offset, length).ConfigureAwait(false);
    }
}
