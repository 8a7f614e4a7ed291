using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>block_resize on a host file.</summary>
public sealed partial class FileDriver
{
    /// <inheritdoc/>
    /// <remarks>The file itself grows with the writes past its end (pwrite extends it); only the node's length moves here.</remarks>
    protected internal override bool Grow(long length)
    {
        lock (stateLock)
        {
            if (length > this.length) this.length = length;
            return true;
        }
    }

    /// <summary>
    /// Sets the file's length to <paramref name="size"/> bytes (QEMU's ftruncate path for regular
    /// files). The caller holds the resize permission on this node, so the descriptor is writable.
    /// </summary>
    internal QmpError? Truncate(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        lock (stateLock)
        {
            var d = Writable();
            try
            {
                RandomAccess.SetLength(d.Handle, size);
                length = RandomAccess.GetLength(d.Handle);
            }
            catch (IOException e)
            {
                return QmpError.Generic($"Failed to resize file: {LinuxNative.ErrnoText(DriverOptions.ErrnoOf(e))}");
            }
            return null;
        }
    }
}
