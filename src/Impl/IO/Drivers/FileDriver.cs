using Microsoft.Win32.SafeHandles;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The <c>file</c> protocol driver (QEMU's file-posix): a host regular file, read and written with
/// positional I/O. Its size is the file's size at open (there is no resize yet).
/// </summary>
/// <remarks>
/// <para>Options: <c>filename</c>; <c>locking</c> (off, on, auto — image locking with OFD locks, see
/// <see cref="ImageLocks"/>); <c>cache.direct</c> (O_DIRECT, with aligned bounce buffers and
/// read-modify-write for unaligned requests); <c>cache.no-flush</c> (flush does nothing);
/// <c>discard</c> (unmap lets discard punch holes); <c>aio</c> (only checked: native needs cache.direct);
/// <c>auto-read-only</c> (the file is opened read-write only while a parent writes).</para>
/// <para>The descriptor is opened read-only or read-write as the node is; when a reopen or a parent
/// changes that, the permission check opens a second descriptor, moves the locks to it, and the commit
/// switches to it, as file-posix's raw_reconfigure_getfd does. The same switch applies
/// <c>cache.direct</c> inherited from the parent an inline child was created under: the engine opens
/// the child before its parent exists, so the inherited value is only known at the first permission
/// check, which precedes any I/O.</para>
/// <para>Reads and writes run as blocking positional calls on the thread pool (QEMU's aio=threads);
/// with O_DIRECT, requests or buffers not aligned to the probed alignment go through an aligned bounce
/// buffer, writes doing read-modify-write of the edge blocks under a range lock.</para>
/// </remarks>
[BlockDriverName("file")]
public sealed partial class FileDriver : BlockDriver, IAllocatedSize
{
    /// <summary>The largest alignment O_DIRECT may need (QEMU's MAX_BLOCKSIZE, also the page size).</summary>
    public const int MaxAlignment = 4096;

    /// <summary>Zero-fill chunk when write-zeroes falls back to writing buffers.</summary>
    public const int ZeroChunk = 1 << 20;

    /// <summary>errno: bad file descriptor (a write on a descriptor opened read-only).</summary>
    private const int EBADF = 9;

    /// <summary>Alignments QEMU's raw_probe_alignment tries, smallest first.</summary>
    private static readonly int[] ProbeAlignments = [1, 512, 1024, 2048, 4096];

    private readonly RangeLock ranges = new();
    private readonly object stateLock = new();
    private string filename = "";
    private HostStorage storage = new();
    private Descriptor? current;
    private Descriptor? pending;
    private Perm perm = Perm.None;
    private Perm shared = Perm.All;
    private bool useLock;
    private bool autoReadOnly;
    private long length;
    private int pageCacheInconsistent;
    private bool hasDiscard = true;
    private bool hasWriteZeroes = true;
    private bool hasFallocate = true;

    /// <summary>One open descriptor of the file: its mode, its O_DIRECT alignment, and the locks it holds.</summary>
    private sealed class Descriptor(SafeFileHandle handle, bool writable, bool direct)
    {
        public SafeFileHandle Handle { get; } = handle;
        public bool Writable { get; } = writable;
        public bool Direct { get; } = direct;
        public ImageLocks Locks { get; } = new((int)handle.DangerousGetHandle());
        public int RequestAlign { get; set; } = 1;
        public int BufAlign { get; set; } = 1;
        public int Fd => (int)Handle.DangerousGetHandle();
    }

    /// <summary>QEMU's sector: node lengths are whole sectors (bs->total_sectors), a file's tail reads as zeroes.</summary>
    private const long SectorBytes = 512;

    /// <inheritdoc/>
    public override long Length => (length + SectorBytes - 1) / SectorBytes * SectorBytes;

    /// <summary>Whether the file is open with O_DIRECT.</summary>
    public bool Direct => current?.Direct ?? false;

    /// <summary>The request alignment O_DIRECT needs (1 without it).</summary>
    public int RequestAlignment => current?.RequestAlign ?? 1;

    /// <summary>Whether image locking is on.</summary>
    public bool Locking => useLock;

    /// <summary>The host file name.</summary>
    public string FileName => filename;

    /// <inheritdoc/>
    public long? AllocatedBytes
    {
        get
        {
            lock (stateLock) return current is { } d ? LinuxNative.AllocatedBytes(d.Fd) : null;
        }
    }

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        filename = Node.Str("filename") ?? "";
        storage = services.Storage;
        if (storage.Fault(filename, HostOp.Open) is var fault and not 0)
            return QmpError.Generic($"Could not open '{filename}': {LinuxNative.ErrnoText(fault)}");
        useLock = Node.Str("locking") != "off";
        autoReadOnly = DriverOptions.Bool(Node, "auto-read-only", false);
        if (Node.Str("aio") == "native" && !WantDirect())
            return QmpError.Generic("aio=native was specified, but it requires cache.direct=on, which was not specified.");

        // With auto-read-only the file starts read-only: no parent writes yet (raw_parse_flags, has_writers=false).
        var (d, err) = OpenDescriptor(WantWritable(Perm.None), WantDirect());
        if (err is not null) return err;
        current = d;

        uint? mode = LinuxNative.FileMode(d!.Fd);
        if (mode is { } m && (m & LinuxNative.S_IFMT) != LinuxNative.S_IFREG)
            return QmpError.Generic($"'file' driver requires '{filename}' to be a regular file");
        try
        {
            length = RandomAccess.GetLength(d.Handle);
        }
        catch (IOException e)
        {
            return QmpError.Generic($"Could not stat file: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
        }
        return null;
    }

    /// <inheritdoc/>
    protected internal override void Close()
    {
        lock (stateLock)
        {
            // Closing a descriptor drops its OFD locks, which is all the unlocking needed.
            pending?.Handle.Dispose();
            pending = null;
            current?.Handle.Dispose();
            current = null;
        }
    }

    /// <inheritdoc/>
    protected internal override QmpError? CheckPerm(Perm perm, Perm shared)
    {
        lock (stateLock)
        {
            if (current is null) return null;
            // A parent now writes (auto-read-only), a reopen changed read-only, or the node now inherits
            // cache.direct from the parent it was created under (inline children open before their parent):
            // get a descriptor of the wanted kind, as raw_reconfigure_getfd does.
            bool writable = WantWritable(perm), direct = WantDirect();
            if ((writable != current.Writable || direct != current.Direct) && (pending is null || pending.Writable != writable || pending.Direct != direct))
            {
                DropPending();
                var (d, err) = OpenDescriptor(writable, direct);
                if (err is not null) return err;
                pending = d;
            }

            if (useLock && !((this.perm | perm) == this.perm && (this.shared & shared) == this.shared))
            {
                // Take the union first so the node is never less locked than either state, then test.
                var err = current.Locks.Apply(this.perm | perm, ~this.shared | ~shared, unlock: false) ?? current.Locks.Check(perm, shared);
                if (err is not null)
                {
                    current.Locks.Apply(this.perm, ~this.shared, unlock: true);
                    DropPending();
                    return QmpError.Generic(err);
                }
            }
            if (useLock && pending is not null)
            {
                var err = pending.Locks.Apply(perm, ~shared, unlock: false);
                if (err is not null)
                {
                    current.Locks.Apply(this.perm, ~this.shared, unlock: true);
                    DropPending();
                    return QmpError.Generic(err);
                }
            }
            return null;
        }
    }

    /// <inheritdoc/>
    protected internal override void SetPerm(Perm perm, Perm shared)
    {
        lock (stateLock)
        {
            if (current is null) return;
            // QEMU commits the node's cumulative perms as they are at commit time, not as they were
            // when checked: with several checks in one transaction, the last state of the graph wins.
            if (!Node.Deleted) (perm, shared) = Node.ComputeCumulative();
            if (pending is not null && pending.Writable == WantWritable(perm) && pending.Direct == WantDirect())
            {
                current.Handle.Dispose();
                current = pending;
                pending = null;
            }
            DropPending();
            if (useLock) current.Locks.Apply(perm, ~shared, unlock: true);
            this.perm = perm;
            this.shared = shared;
        }
    }

    /// <inheritdoc/>
    protected internal override void AbortPerm()
    {
        lock (stateLock)
        {
            DropPending();
            if (current is not null && useLock) current.Locks.Apply(perm, ~shared, unlock: true);
        }
    }

    /// <inheritdoc/>
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        var d = Current();
        Injected(HostOp.Read);
        if (buffer.Length == 0) return;
        if (!d.Direct || IsAligned(d, offset, buffer.Length))
        {
            using var pin = buffer.Pin();
            if (!d.Direct || IsAlignedMemory(d, pin))
            {
                await ReadFull(d, offset, buffer).ConfigureAwait(false);
                return;
            }
        }
        long start = AlignDown(d, offset), end = AlignUp(d, offset + buffer.Length);
        using var bounce = new AlignedBuffer(checked((int)(end - start)), BounceAlignment(d));
        await ReadFull(d, start, bounce.Memory).ConfigureAwait(false);
        bounce.Memory.Slice((int)(offset - start), buffer.Length).CopyTo(buffer);
    }

    /// <inheritdoc/>
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        var d = Writable();
        Injected(HostOp.Write);
        if (data.Length > 0)
        {
            using var held = await Serialise(d, offset, data.Length).ConfigureAwait(false);
            await WriteCore(d, offset, data).ConfigureAwait(false);
        }
        // file-posix has no native FUA: the block layer emulates it with a flush.
        if ((flags & WriteFlags.Fua) != 0) await FlushAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// file-posix's find_allocation: SEEK_DATA and SEEK_HOLE tell data from holes (holes read as
    /// zeroes); where the file system cannot tell, everything is data.
    /// </summary>
    public override ValueTask<RangeStatus> StatusAsync(long offset, long length)
    {
        var d = Current();
        long data = LinuxNative.Lseek(d.Fd, offset, LinuxNative.SEEK_DATA);
        const int ENXIO = 6;
        RangeStatus s;
        if (data == -ENXIO) s = new RangeStatus(length, Hole: true, Zero: true); // only a hole up to the end
        else if (data < 0) s = new RangeStatus(length, Hole: false, Zero: false);
        else if (data > offset) s = new RangeStatus(Math.Min(length, data - offset), Hole: true, Zero: true);
        else
        {
            long hole = LinuxNative.Lseek(d.Fd, offset, LinuxNative.SEEK_HOLE);
            s = new RangeStatus(hole > offset ? Math.Min(length, hole - offset) : length, Hole: false, Zero: false);
        }
        return ValueTask.FromResult(s);
    }

    /// <inheritdoc/>
    public override ValueTask FlushAsync()
    {
        var d = Current();
        if (DriverOptions.CacheFlag(Node, "no-flush")) return ValueTask.CompletedTask;
        // After a failed fdatasync the page cache may have dropped dirty pages: never claim stability again.
        if (pageCacheInconsistent != 0) throw DriverOptions.IOError(pageCacheInconsistent, $"flush '{filename}'");
        int r = LinuxNative.Fdatasync(d.Fd);
        if (r < 0)
        {
            pageCacheInconsistent = -r;
            throw DriverOptions.IOError(-r, $"flush '{filename}'");
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public override async ValueTask DiscardAsync(long offset, long length)
    {
        var d = Writable();
        // Discard is advisory: ignored unless the node allows unmapping, and when the file system cannot punch holes.
        if (length == 0 || !DriverOptions.UnmapAllowed(Node) || !hasDiscard) return;
        using var held = await Serialise(d, offset, length).ConfigureAwait(false);
        int r = LinuxNative.Fallocate(d.Fd, LinuxNative.FALLOC_FL_PUNCH_HOLE | LinuxNative.FALLOC_FL_KEEP_SIZE, offset, length);
        if (r == -Errnos.ENOTSUP) hasDiscard = false;
        else if (r < 0) throw DriverOptions.IOError(-r, $"discard on '{filename}'");
    }

    /// <inheritdoc/>
    public override async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        var d = Writable();
        if (length > 0)
        {
            // The block layer drops MAY_UNMAP on nodes that do not allow unmapping.
            bool mayUnmap = (flags & WriteFlags.MayUnmap) != 0 && DriverOptions.UnmapAllowed(Node);
            using var held = await Serialise(d, offset, length).ConfigureAwait(false);
            int r = mayUnmap ? ZeroesUnmap(d.Fd, offset, length) : Zeroes(d.Fd, offset, length);
            if (r == -Errnos.ENOTSUP)
            {
                // The block layer's fallback: write buffers of zeroes.
                using var zeros = new AlignedBuffer((int)Math.Min(length, ZeroChunk), BounceAlignment(d));
                for (long done = 0; done < length; done += zeros.Memory.Length)
                    await WriteCore(d, offset + done, zeros.Memory[..(int)Math.Min(zeros.Memory.Length, length - done)]).ConfigureAwait(false);
            }
            else if (r < 0)
            {
                throw DriverOptions.IOError(-r, $"write zeroes on '{filename}'");
            }
        }
        if ((flags & WriteFlags.Fua) != 0) await FlushAsync().ConfigureAwait(false);
    }

    /// <summary>file-posix's handle_aiocb_write_zeroes_unmap: punch a hole if possible, else zero without unmapping.</summary>
    private int ZeroesUnmap(int fd, long offset, long length)
    {
        int r = LinuxNative.Fallocate(fd, LinuxNative.FALLOC_FL_PUNCH_HOLE | LinuxNative.FALLOC_FL_KEEP_SIZE, offset, length);
        return r is -Errnos.ENOTSUP or -Errnos.EINVAL or -LinuxNative.EBUSY ? Zeroes(fd, offset, length) : r;
    }

    /// <summary>file-posix's handle_aiocb_write_zeroes: ZERO_RANGE, else punch and reallocate; -ENOTSUP means "write buffers".</summary>
    private int Zeroes(int fd, long offset, long length)
    {
        if (hasWriteZeroes)
        {
            int r = LinuxNative.Fallocate(fd, LinuxNative.FALLOC_FL_ZERO_RANGE, offset, length);
            if (r == -Errnos.ENOTSUP) hasWriteZeroes = false;
            else if (r != -Errnos.EINVAL) return r; // some file systems say EINVAL for unaligned ranges: try the next way
        }
        if (hasDiscard && hasFallocate)
        {
            int r = LinuxNative.Fallocate(fd, LinuxNative.FALLOC_FL_PUNCH_HOLE | LinuxNative.FALLOC_FL_KEEP_SIZE, offset, length);
            if (r == 0)
            {
                r = LinuxNative.Fallocate(fd, 0, offset, length);
                if (r != -Errnos.ENOTSUP) return r;
                hasFallocate = false;
            }
            else if (r == -Errnos.ENOTSUP)
            {
                hasDiscard = false;
            }
            else if (r != -Errnos.EINVAL)
            {
                return r;
            }
        }
        return -Errnos.ENOTSUP;
    }

    /// <summary>With O_DIRECT, holds the aligned range so a read-modify-write cannot interleave with another write to its blocks.</summary>
    private async ValueTask<IDisposable?> Serialise(Descriptor d, long offset, long length) =>
        d.Direct ? await ranges.AcquireAsync(AlignDown(d, offset), AlignUp(d, offset + length)).ConfigureAwait(false) : null;

    /// <summary>Writes, bouncing through aligned memory (and reading the partial edge blocks) when O_DIRECT needs it.</summary>
    private async ValueTask WriteCore(Descriptor d, long offset, ReadOnlyMemory<byte> data)
    {
        if (!d.Direct)
        {
            await WriteChecked(d, offset, data).ConfigureAwait(false);
            return;
        }
        if (IsAligned(d, offset, data.Length))
        {
            using var pin = data.Pin();
            if (IsAlignedMemory(d, pin))
            {
                await WriteChecked(d, offset, data).ConfigureAwait(false);
                return;
            }
        }
        int align = d.RequestAlign;
        long start = AlignDown(d, offset), end = AlignUp(d, offset + data.Length);
        using var bounce = new AlignedBuffer(checked((int)(end - start)), BounceAlignment(d));
        var mem = bounce.Memory;
        if (start != offset) await ReadFull(d, start, mem[..align]).ConfigureAwait(false);
        bool tailInHead = end - align == start && start != offset;
        if (end != offset + data.Length && !tailInHead)
            await ReadFull(d, end - align, mem[(int)(end - align - start)..]).ConfigureAwait(false);
        data.CopyTo(mem[(int)(offset - start)..]);
        long fileLength = RandomAccess.GetLength(d.Handle);
        await WriteChecked(d, start, mem).ConfigureAwait(false);
        // The padded tail may have run past an unaligned end of file: give the file back its size.
        if (end > fileLength && offset + data.Length <= fileLength) RandomAccess.SetLength(d.Handle, fileLength);
    }

    /// <summary>
    /// Largest buffered (not O_DIRECT) request served on the caller's thread: a write into the page cache,
    /// or a read the page cache already holds, is a copy in memory, cheaper than handing it to a worker.
    /// </summary>
    public const int InlineBufferedMax = 64 * 1024;

    private ValueTask WriteChecked(Descriptor d, long offset, ReadOnlyMemory<byte> data)
    {
        if (!d.Direct && data.Length <= InlineBufferedMax)
        {
            WriteNow(d, offset, data.Span);
            return ValueTask.CompletedTask;
        }
        return new ValueTask(Offload(() => WriteNow(d, offset, data.Span)));
    }

    private void WriteNow(Descriptor d, long offset, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(d.Handle, data, offset);
        }
        catch (IOException e) when (e is not BlockIOException)
        {
            throw DriverOptions.IOError(DriverOptions.ErrnoOf(e), $"write to '{filename}'");
        }
    }

    /// <summary>Reads the whole range; what lies past the end of the file reads as zeroes (the block layer's zero fill after a short read).</summary>
    private ValueTask ReadFull(Descriptor d, long offset, Memory<byte> buffer)
    {
        // Served from the page cache on this thread when it holds all of it; anything else (a miss, a
        // short read at the end of the file) goes to a worker, which waits for the device and zero-fills.
        if (!d.Direct && buffer.Length <= InlineBufferedMax && LinuxNative.ReadCached(d.Fd, buffer.Span, offset) == buffer.Length)
            return ValueTask.CompletedTask;
        return new ValueTask(Offload(() => ReadNow(d, offset, buffer)));
    }

    private void ReadNow(Descriptor d, long offset, Memory<byte> buffer)
    {
        var span = buffer.Span;
        int done = 0;
        try
        {
            while (done < span.Length)
            {
                int n = RandomAccess.Read(d.Handle, span[done..], offset + done);
                if (n == 0) break;
                done += n;
                // With O_DIRECT the next read would start unaligned; a short read of a regular file is its end.
                if (d.Direct && done < span.Length) break;
            }
        }
        catch (IOException e) when (e is not BlockIOException)
        {
            throw DriverOptions.IOError(DriverOptions.ErrnoOf(e), $"read from '{filename}'");
        }
        span[done..].Clear();
    }

    /// <summary>
    /// Runs a blocking system call on the thread pool, like QEMU's aio=threads worker pool. PreferFairness
    /// queues it globally (FIFO): a local queue would let one submitter's tight request loop keep its
    /// thread forever and starve the others on a machine with few cores.
    /// </summary>
    private static Task Offload(Action io)
    {
        EnsureWorkers();
        return Task.Factory.StartNew(io, CancellationToken.None, TaskCreationOptions.PreferFairness | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);
    }

    /// <summary>QEMU's default thread-pool-max: up to this many blocking calls run at once.</summary>
    public const int IoWorkers = 64;

    private static int workersEnsured;

    /// <summary>
    /// Lets the thread pool start up to <see cref="IoWorkers"/> workers without delay, as QEMU's aio=threads
    /// pool does. The pool otherwise starts with one worker per core and adds more only slowly while they
    /// block: on a 2-core machine 64 O_DIRECT requests in flight ran about two at a time, at twice QEMU's
    /// time (measured with <c>verified bench -d 64 -t none</c>; with this, level with it). Threads are still
    /// created only when work is waiting.
    /// </summary>
    private static void EnsureWorkers()
    {
        if (Volatile.Read(ref workersEnsured) != 0 || Interlocked.Exchange(ref workersEnsured, 1) != 0) return;
        ThreadPool.GetMinThreads(out int worker, out int completion);
        if (worker < IoWorkers) ThreadPool.SetMinThreads(IoWorkers, completion);
    }

    /// <summary>
    /// QEMU's raw_probe_alignment for a regular file: the smallest of 1, 512 … 4096 bytes that an O_DIRECT
    /// read at offset 0 accepts (1 meaning "unknown", so 4096), then the memory alignment the same way.
    /// </summary>
    private static QmpError? ProbeAlignment(Descriptor d)
    {
        int requestAlign = 0, bufAlign = 0;
        using (var buf = new AlignedBuffer(MaxAlignment, MaxAlignment))
        {
            foreach (int a in ProbeAlignments)
            {
                if (!IoRefused(d.Handle, buf.Memory[..a])) { requestAlign = a != 1 ? a : MaxAlignment; break; }
            }
        }
        using (var buf = new AlignedBuffer(2 * MaxAlignment, MaxAlignment))
        {
            foreach (int a in ProbeAlignments)
            {
                if (!IoRefused(d.Handle, buf.Memory.Slice(a, MaxAlignment))) { bufAlign = a != 1 ? a : requestAlign; break; }
            }
        }
        if (requestAlign == 0 || bufAlign == 0) return QmpError.Generic("Could not find working O_DIRECT alignment");
        d.RequestAlign = requestAlign;
        d.BufAlign = bufAlign;
        return null;
    }

    /// <summary>True only if the kernel refused the read as misaligned (EINVAL); other errors say nothing about alignment.</summary>
    /// <summary>A fault armed on this file's host storage fails the request before it reaches the file.</summary>
    private void Injected(HostOp op)
    {
        if (storage.Fault(filename, op) is var errno and not 0)
            throw new BlockIOException(errno, $"{op.ToString().ToLowerInvariant()} on '{filename}': {LinuxNative.ErrnoText(errno)} (injected)");
    }

    private static bool IoRefused(SafeFileHandle h, Memory<byte> buf)
    {
        try
        {
            RandomAccess.Read(h, buf.Span, 0);
            return false;
        }
        catch (IOException e)
        {
            return DriverOptions.ErrnoOf(e) == Errnos.EINVAL;
        }
    }

    private bool WantWritable(Perm p) =>
        !Node.ReadOnly && (!autoReadOnly || (p & (Perm.Write | Perm.WriteUnchanged | Perm.Resize)) != 0);

    /// <summary>cache.direct, own or inherited; an inline child learns its parent only after it opened.</summary>
    private bool WantDirect() => DriverOptions.CacheFlag(Node, "direct");

    private (Descriptor? Descriptor, QmpError? Error) OpenDescriptor(bool writable, bool direct)
    {
        int flags = (writable ? LinuxNative.O_RDWR : LinuxNative.O_RDONLY) | (direct ? LinuxNative.O_DIRECT : 0);
        int fd = LinuxNative.Open(storage.Resolve(filename), flags);
        if (fd < 0) return (null, QmpError.Generic($"Could not open '{filename}': {LinuxNative.ErrnoText(-fd)}"));
        var d = new Descriptor(new SafeFileHandle(fd, ownsHandle: true), writable, direct);
        var err = direct ? ProbeAlignment(d) : null;
        if (err is not null) d.Handle.Dispose();
        return err is null ? (d, null) : (null, err);
    }

    private void DropPending()
    {
        pending?.Handle.Dispose();
        pending = null;
    }

    private Descriptor Current() =>
        current is { Handle.IsClosed: false } d ? d : throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' is not open");

    private Descriptor Writable()
    {
        var d = Current();
        return d.Writable ? d : throw new BlockIOException(EBADF, $"'{filename}' is open read-only");
    }

    private static int BounceAlignment(Descriptor d) => Math.Max(Math.Max(d.RequestAlign, d.BufAlign), MaxAlignment);

    private static bool IsAligned(Descriptor d, long offset, long len) => offset % d.RequestAlign == 0 && len % d.RequestAlign == 0;

    private static unsafe bool IsAlignedMemory(Descriptor d, System.Buffers.MemoryHandle pin) => (nuint)pin.Pointer % (nuint)d.BufAlign == 0;

    private static long AlignDown(Descriptor d, long x) => x - (x % d.RequestAlign);

    private static long AlignUp(Descriptor d, long x) => AlignDown(d, x + d.RequestAlign - 1);
}
