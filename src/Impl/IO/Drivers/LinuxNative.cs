using System.Runtime.InteropServices;

namespace Verified.Impl.IO;

/// <summary>
/// The few Linux system calls the file driver needs that .NET does not expose: open with O_DIRECT,
/// open-file-description locks (fcntl F_OFD_*), fallocate, fdatasync and fstat. Constants are the
/// Linux values; where they differ by architecture (O_DIRECT, struct stat) both x86-64 and arm64 are handled.
/// </summary>
internal static partial class LinuxNative
{
    private const string Libc = "libc";

    /// <summary>open(2) access mode: read only.</summary>
    public const int O_RDONLY = 0;
    /// <summary>open(2) access mode: read and write.</summary>
    public const int O_RDWR = 2;
    /// <summary>Close on exec, as QEMU's qemu_open does: children (qemu-img in tests) must not inherit image fds.</summary>
    public const int O_CLOEXEC = 0x80000;

    /// <summary>O_DIRECT: 0x4000 on x86-64, 0x10000 on arm64.</summary>
    public static int O_DIRECT => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    /// <summary>fcntl: query a conflicting OFD lock.</summary>
    public const int F_OFD_GETLK = 36;
    /// <summary>fcntl: set an OFD lock without waiting.</summary>
    public const int F_OFD_SETLK = 37;
    /// <summary>flock.l_type: shared (read) lock.</summary>
    public const short F_RDLCK = 0;
    /// <summary>flock.l_type: exclusive (write) lock.</summary>
    public const short F_WRLCK = 1;
    /// <summary>flock.l_type: unlock / no conflicting lock.</summary>
    public const short F_UNLCK = 2;

    /// <summary>fallocate: do not change the file size.</summary>
    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    /// <summary>fallocate: deallocate the range (must be combined with KEEP_SIZE).</summary>
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    /// <summary>fallocate: make the range read as zeroes, keeping it allocated.</summary>
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    /// <summary>errno: try again (lock held by another description).</summary>
    public const int EAGAIN = 11;
    /// <summary>errno: permission denied.</summary>
    public const int EACCES = 13;
    /// <summary>errno: device or resource busy.</summary>
    public const int EBUSY = 16;
    /// <summary>errno: no such device.</summary>
    public const int ENODEV = 19;
    /// <summary>errno: inappropriate ioctl.</summary>
    public const int ENOTTY = 25;
    /// <summary>errno: function not implemented.</summary>
    public const int ENOSYS = 38;
    /// <summary>errno: interrupted system call.</summary>
    public const int EINTR = 4;

    /// <summary>struct stat: file type mask of st_mode.</summary>
    public const uint S_IFMT = 0xF000;
    /// <summary>struct stat: regular file.</summary>
    public const uint S_IFREG = 0x8000;

    /// <summary>Large enough for struct stat on every Linux ABI (144 bytes on x86-64, 128 on arm64).</summary>
    private const int StatBufferSize = 256;

    /// <summary>struct flock as Linux lays it out on 64-bit ABIs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Flock
    {
        /// <summary>F_RDLCK, F_WRLCK or F_UNLCK.</summary>
        public short Type;
        /// <summary>SEEK_SET (0).</summary>
        public short Whence;
        /// <summary>First byte.</summary>
        public long Start;
        /// <summary>Number of bytes (0 = to EOF).</summary>
        public long Len;
        /// <summary>Must be 0 for OFD locks.</summary>
        public int Pid;
    }

    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlLock(int fd, int cmd, ref Flock lk);

    [LibraryImport(Libc, EntryPoint = "fallocate", SetLastError = true)]
    private static partial int FallocateNative(int fd, int mode, long offset, long len);

    [LibraryImport(Libc, EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FdatasyncNative(int fd);

    [LibraryImport(Libc, EntryPoint = "fstat", SetLastError = true)]
    private static unsafe partial int FstatNative(int fd, byte* buf);

    [LibraryImport(Libc, EntryPoint = "preadv2", SetLastError = true)]
    private static unsafe partial nint Preadv2Native(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    /// <summary>preadv2's flag: fail with EAGAIN rather than wait for the device (data not in the page cache).</summary>
    private const int RWF_NOWAIT = 0x8;

    private static int noWaitUnsupported;

    /// <summary>
    /// Reads from the page cache only (preadv2 with RWF_NOWAIT): the bytes read, or -errno (EAGAIN when
    /// the data would need the device). Once the kernel says the flag is unsupported, returns -ENOTSUP without asking again.
    /// </summary>
    public static unsafe int ReadCached(int fd, Span<byte> buffer, long offset)
    {
        if (Volatile.Read(ref noWaitUnsupported) != 0) return -Errnos.ENOTSUP;
        fixed (byte* p = buffer)
        {
            var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
            nint r = Preadv2Native(fd, &iov, 1, offset, RWF_NOWAIT);
            if (r >= 0) return (int)r;
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOSYS or Errnos.ENOTSUP or Errnos.EINVAL) Volatile.Write(ref noWaitUnsupported, 1);
            return -errno;
        }
    }

    [LibraryImport(Libc, EntryPoint = "lseek", SetLastError = true)]
    private static partial long LseekNative(int fd, long offset, int whence);

    /// <summary>lseek whence: the next byte at or after the offset that holds data.</summary>
    public const int SEEK_DATA = 3;
    /// <summary>lseek whence: the next hole at or after the offset (end of file counts as one).</summary>
    public const int SEEK_HOLE = 4;

    /// <summary>lseek(2); returns the new offset or -errno (-ENXIO past the last data).</summary>
    public static long Lseek(int fd, long offset, int whence)
    {
        long r = LseekNative(fd, offset, whence);
        return r >= 0 ? r : -Marshal.GetLastPInvokeError();
    }

    /// <summary>open(2); returns the fd or -errno.</summary>
    public static int Open(string path, int flags)
    {
        int fd;
        do fd = OpenNative(path, flags | O_CLOEXEC);
        while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
        return fd >= 0 ? fd : -Marshal.GetLastPInvokeError();
    }

    /// <summary>fcntl with a struct flock; returns 0 or -errno.</summary>
    public static int Fcntl(int fd, int cmd, ref Flock lk) => FcntlLock(fd, cmd, ref lk) == 0 ? 0 : -Marshal.GetLastPInvokeError();

    /// <summary>fallocate(2); returns 0 or -errno, with the "not supported" family folded into -ENOTSUP as QEMU's translate_err does.</summary>
    public static int Fallocate(int fd, int mode, long offset, long len)
    {
        int r;
        do r = FallocateNative(fd, mode, offset, len) == 0 ? 0 : -Marshal.GetLastPInvokeError();
        while (r == -EINTR);
        return r is -ENODEV or -ENOSYS or -Errnos.ENOTSUP or -ENOTTY ? -Errnos.ENOTSUP : r;
    }

    /// <summary>fdatasync(2); returns 0 or -errno.</summary>
    public static int Fdatasync(int fd)
    {
        int r;
        do r = FdatasyncNative(fd) == 0 ? 0 : -Marshal.GetLastPInvokeError();
        while (r == -EINTR);
        return r;
    }

    /// <summary>The st_mode of an open fd, or null when it cannot be read on this architecture.</summary>
    public static unsafe uint? FileMode(int fd)
    {
        // st_mode's offset: after dev, ino, nlink (8 bytes each) on x86-64; after dev, ino on arm64.
        int modeOffset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,
            Architecture.Arm64 => 16,
            _ => -1,
        };
        if (modeOffset < 0) return null;
        byte* buf = stackalloc byte[StatBufferSize];
        if (FstatNative(fd, buf) != 0) return null;
        return *(uint*)(buf + modeOffset);
    }

    /// <summary>Bytes the host has allocated for an open fd (st_blocks × 512), or null when it cannot be read on this architecture.</summary>
    public static unsafe long? AllocatedBytes(int fd)
    {
        // st_blocks sits at offset 64 in struct stat on both x86-64 and arm64.
        if (RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64)) return null;
        byte* buf = stackalloc byte[StatBufferSize];
        if (FstatNative(fd, buf) != 0) return null;
        return *(long*)(buf + StatBlocksOffset) * StatBlockUnit;
    }

    /// <summary>st_blocks' offset in struct stat (x86-64 and arm64).</summary>
    private const int StatBlocksOffset = 64;

    /// <summary>st_blocks counts 512-byte units.</summary>
    private const long StatBlockUnit = 512;

    /// <summary>The C library's text for an errno (strerror).</summary>
    public static string ErrnoText(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
