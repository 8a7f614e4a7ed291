using System.Buffers.Binary;
using System.Text;

namespace Verified.Impl.Formats;

/// <summary>
/// Creates empty qcow2 (version 3) image files, as <c>qemu-img create -f qcow2</c> lays them out:
/// header and extensions in cluster 0, the refcount table in cluster 1, its first refcount block in
/// cluster 2, the L1 table from cluster 3. All data clusters are unallocated, so the image reads as
/// its backing file (or zeroes). Reading and writing qcow2 is the qcow2 driver's work.
/// </summary>
public static class Qcow2Image
{
    /// <summary>qcow2's magic, "QFI\xfb".</summary>
    public const uint Magic = 0x514649fb;

    /// <summary>Cluster size exponent of new images (64 KiB, QEMU's default).</summary>
    public const int ClusterBits = 16;

    /// <summary>Refcount width exponent (16-bit refcounts, QEMU's default).</summary>
    public const int RefcountOrder = 4;

    /// <summary>The v3 header length without the compression-type field.</summary>
    private const int HeaderLength = 104;

    /// <summary>Header extension: backing file format name.</summary>
    private const uint ExtBackingFormat = 0xE2792ACA;

    /// <summary>Largest virtual size accepted (QEMU's limit for 64 KiB clusters is far beyond; this keeps tables small).</summary>
    public const long SizeMax = 1L << 44;

    /// <summary>Creates (or truncates) <paramref name="path"/> as an empty qcow2 image of <paramref name="size"/> bytes.</summary>
    public static void Create(string path, long size, string? backingFile = null, string? backingFormat = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, SizeMax);
        size = (size + 511) & ~511L; // qemu-img rounds sizes up to whole sectors
        int cluster = 1 << ClusterBits;
        long l2Coverage = (long)cluster / 8 * cluster;
        int l1Size = (int)((size + l2Coverage - 1) / l2Coverage);
        int l1Clusters = Math.Max(1, (l1Size * 8 + cluster - 1) / cluster);
        int clusters = 3 + l1Clusters;
        if (clusters > cluster / 2) throw new ArgumentOutOfRangeException(nameof(size), "image too large for one refcount block");

        var image = new byte[(long)clusters * cluster];
        var h = image.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(h[0..], Magic);
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], 3);
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(h[24..], (ulong)size);
        BinaryPrimitives.WriteUInt32BigEndian(h[32..], 0); // no encryption
        BinaryPrimitives.WriteUInt32BigEndian(h[36..], (uint)l1Size);
        BinaryPrimitives.WriteUInt64BigEndian(h[40..], 3UL * (uint)cluster);
        BinaryPrimitives.WriteUInt64BigEndian(h[48..], 1UL * (uint)cluster);
        BinaryPrimitives.WriteUInt32BigEndian(h[56..], 1);
        BinaryPrimitives.WriteUInt32BigEndian(h[96..], RefcountOrder);
        BinaryPrimitives.WriteUInt32BigEndian(h[100..], HeaderLength);

        int pos = HeaderLength;
        if (backingFormat is not null)
        {
            var fmt = Encoding.UTF8.GetBytes(backingFormat);
            BinaryPrimitives.WriteUInt32BigEndian(h[pos..], ExtBackingFormat);
            BinaryPrimitives.WriteUInt32BigEndian(h[(pos + 4)..], (uint)fmt.Length);
            fmt.CopyTo(h[(pos + 8)..]);
            pos += 8 + ((fmt.Length + 7) & ~7);
        }
        pos += 8; // end-of-extensions marker: type 0, length 0 (already zero)
        if (backingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(backingFile);
            if (pos + name.Length > cluster) throw new ArgumentException("backing file name too long", nameof(backingFile));
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], (ulong)pos);
            BinaryPrimitives.WriteUInt32BigEndian(h[16..], (uint)name.Length);
            name.CopyTo(h[pos..]);
        }
        // Refcount table entry 0 -> refcount block in cluster 2, which counts every metadata cluster once.
        BinaryPrimitives.WriteUInt64BigEndian(h[cluster..], 2UL * (uint)cluster);
        for (int c = 0; c < clusters; c++) BinaryPrimitives.WriteUInt16BigEndian(h[(2 * cluster + 2 * c)..], 1);

        using var f = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite);
        f.Write(image);
        f.Flush(flushToDisk: true);
    }
}
