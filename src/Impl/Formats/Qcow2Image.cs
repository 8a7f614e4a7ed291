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

    /// <summary>The v3 header length qemu-img writes: with the compression-type byte, padded to 8.</summary>
    private const int HeaderLength = 112;

    /// <summary>The v2 header length: extensions start right after it.</summary>
    private const int HeaderLengthV2 = 72;

    /// <summary>The oldest and newest qcow2 versions Verified creates.</summary>
    public const int VersionMin = 2;

    /// <inheritdoc cref="VersionMin"/>
    public const int VersionMax = 3;

    /// <summary>Widest refcount: 2^6 = 64 bits.</summary>
    public const int RefcountOrderMax = 6;

    /// <summary>Header extension: the feature name table.</summary>
    private const uint ExtFeatureTable = 0x6803f857;

    /// <summary>Images with clusters of at most this many bytes get no feature table.</summary>
    private const int FeatureTableClusterMin = 4096;

    /// <summary>One feature table entry: type, bit, and a 46-byte name.</summary>
    private const int FeatureEntryBytes = 48;

    /// <summary>The feature names qemu-img records in every new image (type: 0 incompatible, 1 compatible, 2 autoclear).</summary>
    private static readonly (byte Type, byte Bit, string Name)[] FeatureNames =
    [
        (0, 0, "dirty bit"), (0, 1, "corrupt bit"), (0, 2, "external data file"), (0, 3, "compression type"),
        (0, 4, "extended L2 entries"), (1, 0, "lazy refcounts"), (2, 0, "bitmaps"), (2, 1, "raw external data"),
    ];

    /// <summary>Header extension: backing file format name.</summary>
    private const uint ExtBackingFormat = 0xE2792ACA;

    /// <summary>Longest backing file name (QEMU's 1023 bytes).</summary>
    public const int BackingNameMax = 1023;

    /// <summary>Largest virtual size accepted (QEMU's limit for 64 KiB clusters is far beyond; this keeps tables small).</summary>
    public const long SizeMax = 1L << 44;

    /// <summary>
    /// Creates (or truncates) <paramref name="path"/> as an empty qcow2 image of <paramref name="size"/> bytes
    /// with clusters of 2^<paramref name="clusterBits"/> bytes (9 … 21).
    /// </summary>
    public static void Create(string path, long size, string? backingFile = null, string? backingFormat = null, int clusterBits = ClusterBits)
    {
        ArgumentNullException.ThrowIfNull(path);
        var image = Layout(size, backingFile, backingFormat, clusterBits);
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite);
        f.Write(image);
        f.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Writes the feature name table extension at <paramref name="pos"/> as QEMU's qcow2_update_header does, and returns
    /// the position after it. QEMU leaves it out of images with small clusters (measured: 4 KiB and below).
    /// </summary>
    internal static int WriteFeatureTable(Span<byte> h, int pos, int clusterSize)
    {
        if (clusterSize <= FeatureTableClusterMin) return pos;
        BinaryPrimitives.WriteUInt32BigEndian(h[pos..], ExtFeatureTable);
        BinaryPrimitives.WriteUInt32BigEndian(h[(pos + 4)..], (uint)(FeatureNames.Length * FeatureEntryBytes));
        pos += 8;
        foreach (var (type, bit, featureName) in FeatureNames)
        {
            h[pos] = type;
            h[pos + 1] = bit;
            Encoding.ASCII.GetBytes(featureName).CopyTo(h[(pos + 2)..]);
            pos += FeatureEntryBytes;
        }
        return pos;
    }

    /// <summary>
    /// Sets refcount entry <paramref name="index"/> of a refcount block to 1: entries of 8 bits and more are
    /// big-endian; narrower ones are packed from each byte's least significant bit, as the qcow2 spec lays them.
    /// </summary>
    private static void SetRefcountOne(Span<byte> block, long index, int bits)
    {
        long bit = index * bits;
        if (bits < 8) block[(int)(bit / 8)] |= (byte)(1 << (int)(bit % 8));
        else block[(int)(bit / 8) + bits / 8 - 1] = 1;
    }

    /// <summary>The bytes of a new empty image (header, refcount table, refcount blocks, L1 table), for <see cref="Create"/>.</summary>
    public static byte[] Layout(long size, string? backingFile, string? backingFormat, int clusterBits) =>
        Layout(size, backingFile, backingFormat, clusterBits, new Qcow2Format());

    /// <summary>
    /// The bytes of a new empty image in <paramref name="format"/> (version, refcount width, lazy refcounts), as
    /// QEMU's qcow2_co_create writes them into an empty file: every byte from 0 to the end of the L1 table's entries.
    /// </summary>
    public static byte[] Layout(long size, string? backingFile, string? backingFormat, int clusterBits, Qcow2Format format)
    {
        ArgumentNullException.ThrowIfNull(format);
        ArgumentOutOfRangeException.ThrowIfLessThan(format.Version, VersionMin);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(format.Version, VersionMax);
        ArgumentOutOfRangeException.ThrowIfNegative(format.RefcountOrder);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(format.RefcountOrder, RefcountOrderMax);
        if (format.Version < 3 && (format.RefcountOrder != RefcountOrder || format.LazyRefcounts))
            throw new ArgumentException("version 2 images have 16-bit refcounts and no lazy refcounts", nameof(format));
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, SizeMax);
        ArgumentOutOfRangeException.ThrowIfLessThan(clusterBits, Qcow2Header.ClusterBitsMin);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(clusterBits, Qcow2Header.ClusterBitsMax);
        size = (size + 511) & ~511L; // qemu-img rounds sizes up to whole sectors
        int cluster = 1 << clusterBits;
        long l2Coverage = (long)cluster / 8 * cluster;
        long l1Size = (size + l2Coverage - 1) / l2Coverage;
        if (l1Size * 8 > Qcow2Header.L1BytesMax) throw new ArgumentOutOfRangeException(nameof(size), "image too large for this cluster size");
        // An empty image has no L1 table at all: offset 0, and the file ends after the refcount block (as QEMU makes it).
        long l1Clusters = (l1Size * 8 + cluster - 1) / cluster;
        int refcountBits = 1 << format.RefcountOrder;
        long perBlock = (long)cluster * 8 / refcountBits;
        long blocks = 1, tableClusters = 1;
        for (int i = 0; i < 8; i++)
        {
            // A fixed point: the refcount structures count themselves too.
            long metadata = 1 + tableClusters + blocks + l1Clusters;
            blocks = (metadata + perBlock - 1) / perBlock;
            tableClusters = Math.Max(1, (blocks * 8 + cluster - 1) / cluster);
        }
        long clusters = 1 + tableClusters + blocks + l1Clusters;
        if (clusters > blocks * perBlock || clusters * cluster > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(size), "image metadata too large");
        long tableAt = 1, blocksAt = 1 + tableClusters, l1At = blocksAt + blocks;

        var image = new byte[clusters * cluster];
        var h = image.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(h[0..], Magic);
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], (uint)format.Version);
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], (uint)clusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(h[24..], (ulong)size);
        BinaryPrimitives.WriteUInt32BigEndian(h[32..], 0); // no encryption
        BinaryPrimitives.WriteUInt32BigEndian(h[36..], (uint)l1Size);
        BinaryPrimitives.WriteUInt64BigEndian(h[40..], l1Size == 0 ? 0 : (ulong)(l1At * cluster));
        BinaryPrimitives.WriteUInt64BigEndian(h[48..], (ulong)(tableAt * cluster));
        BinaryPrimitives.WriteUInt32BigEndian(h[56..], (uint)tableClusters);
        int pos = HeaderLengthV2;
        if (format.Version >= 3)
        {
            // The v3 fields: feature bits (lazy refcounts is compatible bit 0), refcount order, header length.
            if (format.LazyRefcounts) BinaryPrimitives.WriteUInt64BigEndian(h[80..], 1);
            BinaryPrimitives.WriteUInt32BigEndian(h[96..], (uint)format.RefcountOrder);
            BinaryPrimitives.WriteUInt32BigEndian(h[100..], HeaderLength);
            pos = HeaderLength;
        }
        for (long b = 0; b < blocks; b++)
            BinaryPrimitives.WriteUInt64BigEndian(h[(int)(tableAt * cluster + b * 8)..], (ulong)((blocksAt + b) * cluster));
        for (long c = 0; c < clusters; c++) SetRefcountOne(h[(int)(blocksAt * cluster)..], c, refcountBits);

        if (backingFormat is not null)
        {
            var fmt = Encoding.UTF8.GetBytes(backingFormat);
            BinaryPrimitives.WriteUInt32BigEndian(h[pos..], ExtBackingFormat);
            BinaryPrimitives.WriteUInt32BigEndian(h[(pos + 4)..], (uint)fmt.Length);
            fmt.CopyTo(h[(pos + 8)..]);
            pos += 8 + ((fmt.Length + 7) & ~7);
        }
        // qemu-img leaves the feature table out of v2 images.
        if (format.Version >= 3) pos = WriteFeatureTable(h, pos, cluster);
        pos += 8; // end-of-extensions marker: type 0, length 0 (already zero)
        if (backingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(backingFile);
            if (pos + name.Length > cluster || name.Length > BackingNameMax) throw new ArgumentException("backing file name too long", nameof(backingFile));
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], (ulong)pos);
            BinaryPrimitives.WriteUInt32BigEndian(h[16..], (uint)name.Length);
            name.CopyTo(h[pos..]);
        }
        // qemu-img's file ends where the L1 table's entries end.
        return l1Size == 0 ? image : image[..(int)(l1At * cluster + l1Size * 8)];
    }
}

/// <summary>What a new qcow2 image's header declares beyond its size, clusters and backing file.</summary>
/// <param name="Version">2 (compat 0.10) or 3 (compat 1.1).</param>
/// <param name="RefcountOrder">Refcount width exponent (0 … 6); 4 (16 bits) for version 2.</param>
/// <param name="LazyRefcounts">The lazy refcounts compatible feature (version 3 only).</param>
public sealed record Qcow2Format(int Version = 3, int RefcountOrder = Qcow2Image.RefcountOrder, bool LazyRefcounts = false);
