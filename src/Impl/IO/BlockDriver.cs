using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>Flags of a write request.</summary>
[Flags]
public enum WriteFlags
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Force unit access: the data is stable when the request completes.</summary>
    Fua = 1,
    /// <summary>A write-zeroes request may deallocate the range.</summary>
    MayUnmap = 2,
}

/// <summary>What a range of a node holds, as block status reports it.</summary>
/// <param name="Bytes">How many bytes from the asked offset the answer holds for (at least 1).</param>
/// <param name="Hole">No storage is allocated for the range.</param>
/// <param name="Zero">The range reads as zeroes.</param>
public readonly record struct RangeStatus(long Bytes, bool Hole, bool Zero);

/// <summary>An I/O error with its errno, as a block driver reports it.</summary>
public sealed class BlockIOException : IOException
{
    /// <summary>Creates an error.</summary>
    public BlockIOException(int errno, string message) : base(message) => Errno = errno;

    /// <summary>Creates an error with a default message.</summary>
    public BlockIOException() : this(Errnos.EIO, "I/O error") { }

    /// <summary>Creates an error with a message.</summary>
    public BlockIOException(string message) : this(Errnos.EIO, message) { }

    /// <summary>Creates an error with a message and a cause.</summary>
    public BlockIOException(string message, Exception inner) : base(message, inner) => Errno = Errnos.EIO;

    /// <summary>The POSIX errno (EIO, ENOSPC, EPERM, EINVAL, ENOTSUP…).</summary>
    public int Errno { get; }

    /// <summary>Whether a copy failed reading its source (not writing its target): block jobs pick their error policy by it.</summary>
    public bool OnRead { get; init; }
}

/// <summary>POSIX errno values used by the block layer (Linux numbering).</summary>
public static class Errnos
{
    /// <summary>Operation not permitted.</summary>
    public const int EPERM = 1;
    /// <summary>I/O error.</summary>
    public const int EIO = 5;
    /// <summary>Permission denied (a broken copy-before-write snapshot).</summary>
    public const int EACCES = 13;
    /// <summary>Out of memory.</summary>
    public const int ENOMEM = 12;
    /// <summary>Invalid argument.</summary>
    public const int EINVAL = 22;
    /// <summary>No space left.</summary>
    public const int ENOSPC = 28;
    /// <summary>Operation not supported.</summary>
    public const int ENOTSUP = 95;
    /// <summary>File too large (a qcow2 refcount table that cannot grow).</summary>
    public const int EFBIG = 27;
    /// <summary>Timed out.</summary>
    public const int ETIMEDOUT = 110;

    /// <summary>glibc's strerror text, as QEMU's messages carry it.</summary>
    public static string Strerror(int errno) => errno switch
    {
        EIO => "Input/output error",
        EINVAL => "Invalid argument",
        ENOSPC => "No space left on device",
        EPERM => "Operation not permitted",
        ENOTSUP => "Operation not supported",
        ETIMEDOUT => "Connection timed out",
        EACCES => "Permission denied",
        _ => "errno " + errno.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}

/// <summary>What the engine offers drivers: the clock, throttle groups, storage. Injected for determinism.</summary>
public sealed class EngineServices
{
    /// <summary>The clock throttling uses.</summary>
    public IClock Clock { get; init; } = SystemClock.Instance;

    /// <summary>Looks up a throttle group object by id.</summary>
    public Func<string, ThrottleGroup?> ThrottleGroups { get; init; } = _ => null;

    /// <summary>A deliberate bug to build the engine with (tests of the oracle only); <see cref="Engine.EngineMutation.None"/> by default.</summary>
    public Engine.EngineMutation Mutation { get; init; }

    /// <summary>Host files: where names resolve, and faults injected on demand.</summary>
    public HostStorage Storage { get; init; } = new();
}

/// <summary>A monotonic clock in nanoseconds, and a way to wait on it.</summary>
public interface IClock
{
    /// <summary>Nanoseconds since an arbitrary origin.</summary>
    long NowNs { get; }

    /// <summary>Completes when <paramref name="deadlineNs"/> has passed.</summary>
    ValueTask WaitUntilAsync(long deadlineNs, CancellationToken ct = default);
}

/// <summary>The real clock.</summary>
public sealed class SystemClock : IClock
{
    /// <summary>The one instance.</summary>
    public static readonly SystemClock Instance = new();

    private SystemClock() { }

    /// <inheritdoc/>
    public long NowNs => (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1e9 / System.Diagnostics.Stopwatch.Frequency));

    /// <inheritdoc/>
    public async ValueTask WaitUntilAsync(long deadlineNs, CancellationToken ct = default)
    {
        long wait = deadlineNs - NowNs;
        if (wait > 0) await Task.Delay(TimeSpan.FromTicks(Math.Max(1, wait / 100)), ct).ConfigureAwait(false);
    }
}

/// <summary>
/// A block driver bound to one node: its open resources, its I/O, and its permission hooks (only
/// file locking uses them). The permission rules for its children live in <c>PermRules</c>.
/// </summary>
public abstract class BlockDriver
{
    /// <summary>The node this driver instance serves (set before <see cref="Open"/>).</summary>
    public BlockNode Node { get; internal set; } = null!;

    /// <summary>
    /// Acquires the node's resources once its children are attached (no permission is taken yet).
    /// Returns QEMU's error text on failure; whatever it acquired must then be released by <see cref="Close"/>.
    /// </summary>
    protected internal virtual QmpError? Open(EngineServices services) => null;

    /// <summary>
    /// Called when the node is deleted, before its children are detached: a driver with cached state
    /// (qcow2's metadata) writes it while its children are still there.
    /// </summary>
    protected internal virtual void Closing() { }

    /// <summary>
    /// A format driver reads its image through its attached <c>file</c> child here (qcow2's header and
    /// tables), before any other child opens, as QEMU's driver open precedes the backing child's. Returns
    /// QEMU's error text on failure; <see cref="Close"/> releases whatever it acquired.
    /// </summary>
    protected internal virtual QmpError? OpenFormat(EngineServices services) => null;

    /// <summary>True for format drivers whose <see cref="OpenFormat"/> reads the image (it then runs before the other children open).</summary>
    protected internal virtual bool ReadsImageAtOpen => false;

    /// <summary>Releases the node's resources (files opened, group membership).</summary>
    protected internal virtual void Close() { }

    /// <summary>Permission prepare hook: may refuse (file locking). Must be undone by <see cref="AbortPerm"/>.</summary>
    protected internal virtual QmpError? CheckPerm(Perm perm, Perm shared) => null;

    /// <summary>Permission commit hook.</summary>
    protected internal virtual void SetPerm(Perm perm, Perm shared) { }

    /// <summary>Permission abort hook: back to what the last <see cref="SetPerm"/> set.</summary>
    protected internal virtual void AbortPerm() { }

    /// <summary>The node's size in bytes.</summary>
    public abstract long Length { get; }

    /// <summary>Reads <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>.</summary>
    public abstract ValueTask ReadAsync(long offset, Memory<byte> buffer);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>.</summary>
    public abstract ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags);

    /// <summary>Makes completed writes stable.</summary>
    public virtual ValueTask FlushAsync() => Primary is { } c ? c.Node.FlushAsync() : ValueTask.CompletedTask;

    /// <summary>Discards a range (may read back as anything until written).</summary>
    public virtual ValueTask DiscardAsync(long offset, long length) => Primary is { } c ? c.Node.DiscardAsync(offset, length) : ValueTask.CompletedTask;

    /// <summary>Writes zeroes over a range.</summary>
    public virtual async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        const int chunk = 1 << 20;
        var zeros = new byte[(int)Math.Min(length, chunk)];
        for (long done = 0; done < length; done += zeros.Length)
            await WriteAsync(offset + done, zeros.AsMemory(0, (int)Math.Min(zeros.Length, length - done)), flags).ConfigureAwait(false);
    }

    /// <summary>
    /// What the range at <paramref name="offset"/> holds (QEMU's bdrv_block_status, one layer down to
    /// the host): a hole or data, reading as zeroes or not, for how many bytes the answer holds
    /// (at least 1, at most <paramref name="length"/>). Filters ask their primary child; a driver that
    /// cannot tell says "data" for the whole range, which is always a safe answer.
    /// </summary>
    public virtual ValueTask<RangeStatus> StatusAsync(long offset, long length) =>
        Rules.PermRules.IsFilter(Node.DriverName) && Primary is { } c && c.Node.Length == Length
            ? c.Node.StatusAsync(offset, length)
            : ValueTask.FromResult(new RangeStatus(length, Hole: false, Zero: false));

    /// <summary>
    /// Lets writes reach up to <paramref name="length"/> bytes (a format node growing its image file, as QEMU's
    /// block layer lets a parent holding the resize permission write past the end). False if this driver cannot grow.
    /// </summary>
    protected internal virtual bool Grow(long length) => false;

    /// <summary>The child that I/O passes to by default (file, or blkdebug's image).</summary>
    protected BdrvChild? Primary => Node.Child("file") ?? Node.Child("image");
}
