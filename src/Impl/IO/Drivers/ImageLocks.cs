using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// QEMU's image locking on one open file description (file-posix's raw_apply_lock_bytes and
/// raw_check_lock_bytes). Each permission bit i held is a shared OFD lock on byte 100+i; each bit
/// <em>not shared</em> is a shared OFD lock on byte 200+i. Another opener that wants bit i probes byte
/// 200+i; one that refuses to share bit i probes byte 100+i. Probing asks F_OFD_GETLK whether a write
/// lock could be taken, so only other descriptions' read locks count, including those of other
/// processes (qemu-img, QEMU) and of other file nodes in this process.
/// </summary>
internal sealed class ImageLocks(int fd)
{
    /// <summary>Byte of the first "holds permission" lock (libvirt uses byte 0; QEMU leaves room).</summary>
    public const int PermBase = 100;

    /// <summary>Byte of the first "does not share permission" lock.</summary>
    public const int SharedBase = 200;

    /// <summary>The descriptor the locks live on.</summary>
    public int Fd { get; } = fd;

    /// <summary>Perm bits whose byte this descriptor has locked.</summary>
    public Perm LockedPerm { get; private set; }

    /// <summary>Unshared bits whose byte this descriptor has locked.</summary>
    public Perm LockedUnshared { get; private set; }

    /// <summary>
    /// Locks the bytes of <paramref name="permBits"/> and <paramref name="unsharedBits"/> not yet locked;
    /// with <paramref name="unlock"/>, also releases locked bytes outside them. Returns QEMU's error text or null.
    /// </summary>
    public string? Apply(Perm permBits, Perm unsharedBits, bool unlock)
    {
        var perm = LockedPerm;
        var err = ApplyRange(PermBase, permBits, ref perm, unlock);
        LockedPerm = perm;
        if (err is not null) return err;
        var unshared = LockedUnshared;
        err = ApplyRange(SharedBase, unsharedBits, ref unshared, unlock);
        LockedUnshared = unshared;
        return err;
    }

    /// <summary>Locks the bytes <paramref name="baseByte"/>+i for bits of <paramref name="wanted"/> not in <paramref name="locked"/>, and with <paramref name="unlock"/> releases the rest.</summary>
    private string? ApplyRange(int baseByte, Perm wanted, ref Perm locked, bool unlock)
    {
        for (int i = 0; i < Perms.BitCount; i++)
        {
            var bit = (Perm)(1 << i);
            if ((wanted & bit) != 0 && (locked & bit) == 0)
            {
                int r = Lock(baseByte + i, LinuxNative.F_RDLCK);
                if (r < 0) return LockError($"Failed to lock byte {baseByte + i}", -r);
                locked |= bit;
            }
            else if (unlock && (locked & bit) != 0 && (wanted & bit) == 0)
            {
                int r = Lock(baseByte + i, LinuxNative.F_UNLCK);
                if (r < 0) return $"Failed to unlock byte {baseByte + i}: {LinuxNative.ErrnoText(-r)}";
                locked &= ~bit;
            }
        }
        return null;
    }

    /// <summary>
    /// Whether another description's locks forbid taking <paramref name="perm"/> while sharing only
    /// <paramref name="shared"/>: first each wanted bit against the "unshared" bytes, then each
    /// unshared bit against the "held" bytes. Returns QEMU's error text or null.
    /// </summary>
    public string? Check(Perm perm, Perm shared)
    {
        for (int i = 0; i < Perms.BitCount; i++)
        {
            var bit = (Perm)(1 << i);
            if ((perm & bit) == 0) continue;
            int r = Test(SharedBase + i);
            if (r < 0) return LockError($"Failed to get \"{Perms.DisplayText(bit)}\" lock", -r);
        }
        for (int i = 0; i < Perms.BitCount; i++)
        {
            var bit = (Perm)(1 << i);
            if ((shared & bit) != 0) continue;
            int r = Test(PermBase + i);
            if (r < 0) return LockError($"Failed to get shared \"{Perms.DisplayText(bit)}\" lock", -r);
        }
        return null;
    }

    /// <summary>QEMU elides the errno when it only says "someone else holds it".</summary>
    private static string LockError(string text, int errno) =>
        errno is LinuxNative.EAGAIN or LinuxNative.EACCES ? text : $"{text}: {LinuxNative.ErrnoText(errno)}";

    private int Lock(long offset, short type)
    {
        var lk = new LinuxNative.Flock { Type = type, Whence = 0, Start = offset, Len = 1, Pid = 0 };
        return LinuxNative.Fcntl(Fd, LinuxNative.F_OFD_SETLK, ref lk);
    }

    /// <summary>0 if a write lock on the byte could be taken, -EAGAIN if another description holds a lock on it, else -errno.</summary>
    private int Test(long offset)
    {
        var lk = new LinuxNative.Flock { Type = LinuxNative.F_WRLCK, Whence = 0, Start = offset, Len = 1, Pid = 0 };
        int r = LinuxNative.Fcntl(Fd, LinuxNative.F_OFD_GETLK, ref lk);
        if (r < 0) return r;
        return lk.Type == LinuxNative.F_UNLCK ? 0 : -LinuxNative.EAGAIN;
    }
}
