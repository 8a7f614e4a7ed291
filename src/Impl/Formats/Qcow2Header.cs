using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Verified.Impl.Formats;

/// <summary>
/// A parsed qcow2 header (versions 2 and 3) with its extensions, checked as QEMU's <c>qcow2_do_open</c>
/// checks it, in the same order and with the same error texts. Immutable.
/// </summary>
public sealed record Qcow2Header
{
    /// <summary>Bytes read from offset 0 to parse a header: enough for any header with its extensions and backing name up to 4 KiB clusters; larger headers are re-read.</summary>
    public const int ProbeBytes = 4096;

    /// <summary>Length of a version 2 header (and of a version 3 header's fixed part before its v3 fields).</summary>
    public const int V2Length = 72;

    /// <summary>Shortest version 3 header.</summary>
    public const int V3Length = 104;

    /// <summary>Smallest and largest cluster size exponents (512 B … 2 MiB, QEMU's MIN/MAX_CLUSTER_BITS).</summary>
    public const int ClusterBitsMin = 9, ClusterBitsMax = 21;

    /// <summary>Largest refcount order (64-bit refcounts).</summary>
    public const int RefcountOrderMax = 6;

    /// <summary>QEMU's QCOW_MAX_L1_SIZE (32 MiB of L1 table) and QCOW_MAX_REFTABLE_SIZE (8 MiB).</summary>
    public const long L1BytesMax = 32L << 20, RefTableBytesMax = 8L << 20;

    /// <summary>Incompatible feature bits.</summary>
    public const ulong IncompatDirty = 1, IncompatCorrupt = 2, IncompatDataFile = 4, IncompatCompression = 8, IncompatExtendedL2 = 16;

    /// <summary>Header extension types.</summary>
    public const uint ExtEnd = 0, ExtBackingFormat = 0xE2792ACA, ExtFeatureTable = 0x6803f857, ExtBitmaps = 0x23852875;

    /// <summary>Autoclear feature bits: the bitmaps extension is valid; the external data file is raw.</summary>
    public const ulong AutoclearBitmaps = 1, AutoclearDataFileRaw = 2;

    /// <summary>The autoclear bits QEMU knows (QCOW2_AUTOCLEAR_MASK); a writer clears the others.</summary>
    public const ulong AutoclearKnown = AutoclearBitmaps | AutoclearDataFileRaw;

    /// <summary>Length of the bitmaps extension's data.</summary>
    public const int BitmapsExtLength = 24;

    /// <summary>Byte offsets of header fields QEMU rewrites in place.</summary>
    public const int RefTableOffsetField = 48, AutoclearField = 88;

    /// <summary>Format version (2 or 3).</summary>
    public int Version { get; init; }

    /// <summary>log2 of the cluster size.</summary>
    public int ClusterBits { get; init; }

    /// <summary>The virtual disk size in bytes.</summary>
    public long Size { get; init; }

    /// <summary>Number of L1 entries, and the L1 table's host offset.</summary>
    public int L1Size { get; init; }

    /// <inheritdoc cref="L1Size"/>
    public long L1Offset { get; init; }

    /// <summary>The refcount table's host offset and length in clusters.</summary>
    public long RefTableOffset { get; init; }

    /// <inheritdoc cref="RefTableOffset"/>
    public int RefTableClusters { get; init; }

    /// <summary>Internal snapshots in the image.</summary>
    public int Snapshots { get; init; }

    /// <summary>Feature bit sets (all zero for version 2).</summary>
    public ulong Incompatible { get; init; }

    /// <inheritdoc cref="Incompatible"/>
    public ulong Compatible { get; init; }

    /// <inheritdoc cref="Incompatible"/>
    public ulong Autoclear { get; init; }

    /// <summary>The compatible feature bit: refcounts may be stale after a crash (lazy refcounts).</summary>
    public const ulong CompatLazyRefcounts = 1;

    /// <summary>log2 of the refcount width in bits (4 for version 2).</summary>
    public int RefcountOrder { get; init; }

    /// <summary>The backing file name recorded in the image, and its format, if any.</summary>
    public string? BackingFile { get; init; }

    /// <inheritdoc cref="BackingFile"/>
    public string? BackingFormat { get; init; }

    /// <summary>Bitmaps in the bitmap directory (0: none, or an extension a bitmap-unaware writer invalidated).</summary>
    public int BitmapCount { get; init; }

    /// <summary>The bitmap directory's host offset and length in bytes.</summary>
    public long BitmapDirectoryOffset { get; init; }

    /// <inheritdoc cref="BitmapDirectoryOffset"/>
    public long BitmapDirectorySize { get; init; }

    /// <summary>A bitmaps extension is present but its autoclear bit is clear: QEMU ignores it (and drops it when it may write).</summary>
    public bool BitmapsExtensionStale { get; init; }

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize => 1 << ClusterBits;

    /// <summary>
    /// Parses and checks <paramref name="h"/> (the first bytes of the file). Returns the header, or QEMU's
    /// error text. <paramref name="writable"/>: the node may write (a corrupt or dirty image may then not open).
    /// </summary>
    public static (Qcow2Header? Header, string? Error) Parse(ReadOnlySpan<byte> h, bool writable)
    {
        if (h.Length < V2Length || BinaryPrimitives.ReadUInt32BigEndian(h) != Qcow2Image.Magic) return (null, "Image is not in qcow2 format");
        uint version = BinaryPrimitives.ReadUInt32BigEndian(h[4..]);
        if (version is < 2 or > 3) return (null, $"Unsupported qcow2 version {version.ToString(CultureInfo.InvariantCulture)}");
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(h[20..]);
        if (clusterBits is < ClusterBitsMin or > ClusterBitsMax) return (null, $"Unsupported cluster size: 2^{clusterBits.ToString(CultureInfo.InvariantCulture)}");
        int cs = 1 << (int)clusterBits;
        ulong incompat = 0, autoclear = 0, compat = 0;
        uint refcountOrder = 4, headerLength = V2Length;
        if (version == 3)
        {
            if (h.Length < V3Length) return (null, "qcow2 header too short");
            incompat = BinaryPrimitives.ReadUInt64BigEndian(h[72..]);
            compat = BinaryPrimitives.ReadUInt64BigEndian(h[80..]);
            autoclear = BinaryPrimitives.ReadUInt64BigEndian(h[AutoclearField..]);
            refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(h[96..]);
            headerLength = BinaryPrimitives.ReadUInt32BigEndian(h[100..]);
            if (headerLength < V3Length) return (null, "qcow2 header too short");
        }
        if (headerLength > cs) return (null, "qcow2 header exceeds cluster size");
        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(h[8..]);
        uint backingSize = BinaryPrimitives.ReadUInt32BigEndian(h[16..]);
        if (backingOffset > (ulong)cs) return (null, "Invalid backing file offset");
        if (h.Length < Math.Min(cs, (int)Math.Max(headerLength, backingOffset + backingSize))) return (null, "qcow2 header truncated");

        var (extErr, backingFormat, featureNames, bitmaps) = Extensions(h[..Math.Min(h.Length, cs)], (int)headerLength, backingOffset == 0 ? cs : (int)backingOffset, autoclear, cs);
        if (extErr is not null) return (null, extErr);
        ulong unsupported = incompat & ~(IncompatDirty | IncompatCorrupt | IncompatCompression);
        if (unsupported != 0) return (null, $"Unsupported qcow2 feature(s): {FeatureList(unsupported, featureNames)}");
        if ((incompat & IncompatCorrupt) != 0 && writable) return (null, "qcow2: Image is corrupt; cannot be opened read/write");
        if ((incompat & IncompatCompression) != 0 && (headerLength <= V3Length || h[V3Length] != 0))
            return (null, "Unsupported compression type: only deflate (zlib) is implemented");
        if ((incompat & IncompatDirty) != 0 && writable)
            return (null, "qcow2 image is dirty (lazy refcounts): Verified cannot repair it; run 'qemu-img check -r all' first");
        if (refcountOrder > RefcountOrderMax) return (null, "Reference count entry width too large; may not exceed 64 bits");

        var (tableErr, header) = Tables(h, version, clusterBits, refcountOrder, incompat, autoclear);
        if (tableErr is not null) return (null, tableErr);
        string? backing = null;
        if (backingOffset != 0)
        {
            if (backingSize > 1023 || backingOffset + backingSize > (ulong)cs) return (null, "Backing file name too long");
            backing = Encoding.UTF8.GetString(h.Slice((int)backingOffset, (int)backingSize));
        }
        return (header! with
        {
            BackingFile = backing, BackingFormat = backingFormat, Compatible = compat, BitmapCount = bitmaps.Count,
            BitmapDirectoryOffset = bitmaps.Offset, BitmapDirectorySize = bitmaps.Size, BitmapsExtensionStale = bitmaps.Stale,
        }, null);
    }

    /// <summary>The L1 and refcount table checks (sizes, alignment), in QEMU's order.</summary>
    private static (string? Error, Qcow2Header? Header) Tables(ReadOnlySpan<byte> h, uint version, uint clusterBits, uint refcountOrder, ulong incompat, ulong autoclear)
    {
        long cs = 1L << (int)clusterBits;
        ulong size = BinaryPrimitives.ReadUInt64BigEndian(h[24..]);
        uint crypt = BinaryPrimitives.ReadUInt32BigEndian(h[32..]);
        uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(h[36..]);
        ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(h[40..]);
        ulong refOffset = BinaryPrimitives.ReadUInt64BigEndian(h[48..]);
        uint refClusters = BinaryPrimitives.ReadUInt32BigEndian(h[56..]);
        uint snapshots = BinaryPrimitives.ReadUInt32BigEndian(h[60..]);
        ulong snapOffset = BinaryPrimitives.ReadUInt64BigEndian(h[64..]);
        if ((ulong)refClusters * (ulong)cs > RefTableBytesMax) return ("Reference count table too large", null);
        if (!ValidTable(refOffset, refClusters * (ulong)cs, cs)) return ("Invalid reference count table offset", null);
        if (snapshots != 0 && !ValidTable(snapOffset, 1, cs)) return ("Invalid snapshot table offset", null);
        if ((ulong)l1Size * 8 > L1BytesMax) return ("Active L1 table too large", null);
        if (crypt != 0) return ($"Unsupported encryption method: {crypt.ToString(CultureInfo.InvariantCulture)} (Verified reads unencrypted images only)", null);
        ulong l2Coverage = (ulong)cs / 8 * (ulong)cs;
        if (size > long.MaxValue / 2 || (size + l2Coverage - 1) / l2Coverage > l1Size) return ("L1 table is too small", null);
        if (!ValidTable(l1Offset, (ulong)l1Size * 8, cs)) return ("Invalid L1 table offset", null);
        return (null, new Qcow2Header
        {
            Version = (int)version, ClusterBits = (int)clusterBits, Size = (long)size, L1Size = (int)l1Size, L1Offset = (long)l1Offset,
            RefTableOffset = (long)refOffset, RefTableClusters = (int)refClusters, Snapshots = (int)snapshots,
            Incompatible = incompat, Autoclear = autoclear, RefcountOrder = (int)refcountOrder,
        });
    }

    /// <summary>QEMU's validate_table_offset: cluster-aligned and not overflowing.</summary>
    private static bool ValidTable(ulong offset, ulong bytes, long cs) =>
        offset % (ulong)cs == 0 && offset <= long.MaxValue && bytes <= (ulong)long.MaxValue - offset;

    /// <summary>Walks the header extensions: the backing format, the feature name table, the bitmaps extension; an overrun is QEMU's error.</summary>
    private static (string? Error, string? BackingFormat, Dictionary<int, string> Names, BitmapsExt Bitmaps) Extensions(ReadOnlySpan<byte> h, int start, int end, ulong autoclear, int cs)
    {
        var names = new Dictionary<int, string>();
        var bitmaps = default(BitmapsExt);
        string? backingFormat = null;
        int pos = start;
        const int extensionsMax = 1024; // a bound on a corrupt image's loop
        for (int i = 0; i < extensionsMax && pos + 8 <= end && pos + 8 <= h.Length; i++)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(h[pos..]);
            uint len = BinaryPrimitives.ReadUInt32BigEndian(h[(pos + 4)..]);
            pos += 8;
            if (type == ExtEnd) break;
            if (len > (uint)(end - pos) || pos + len > h.Length) return ("Invalid extension length", null, names, bitmaps);
            var data = h.Slice(pos, (int)len);
            if (type == ExtBackingFormat) backingFormat = Encoding.UTF8.GetString(data);
            if (type == ExtFeatureTable)
            {
                const int entry = 48;
                for (int e = 0; e + entry <= data.Length; e += entry)
                {
                    if (data[e] == 0) names[data[e + 1]] = Encoding.UTF8.GetString(data.Slice(e + 2, 46)).TrimEnd('\0');
                }
            }
            if (type == ExtBitmaps)
            {
                var (err, ext) = BitmapsExtension(data, autoclear, cs);
                if (err is not null) return (err, null, names, bitmaps);
                bitmaps = ext;
            }
            pos += (int)((len + 7) & ~7u);
        }
        return (null, backingFormat, names, bitmaps);
    }

    /// <summary>The bitmaps extension's fields, or none.</summary>
    private readonly record struct BitmapsExt(int Count, long Offset, long Size, bool Stale);

    /// <summary>QEMU's qcow2_read_extensions for the bitmaps extension: ignored (stale) without its autoclear bit, else checked.</summary>
    private static (string? Error, BitmapsExt Ext) BitmapsExtension(ReadOnlySpan<byte> data, ulong autoclear, int cs)
    {
        if (data.Length != BitmapsExtLength) return ("bitmaps_ext: Invalid extension length", default);
        if ((autoclear & AutoclearBitmaps) == 0) return (null, new BitmapsExt(0, 0, 0, Stale: true));
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (BinaryPrimitives.ReadUInt32BigEndian(data[4..]) != 0) return ("bitmaps_ext: Reserved field is not zero", default);
        ulong size = BinaryPrimitives.ReadUInt64BigEndian(data[8..]);
        ulong offset = BinaryPrimitives.ReadUInt64BigEndian(data[16..]);
        if (count > Qcow2Bitmaps.BitmapsMax)
            return ($"bitmaps_ext: Image has {count.ToString(CultureInfo.InvariantCulture)} bitmaps, exceeding the QEMU supported maximum of {Qcow2Bitmaps.BitmapsMax.ToString(CultureInfo.InvariantCulture)}", default);
        if (count == 0) return ("found bitmaps extension with zero bitmaps", default);
        if (offset % (ulong)cs != 0) return ("bitmaps_ext: invalid dir offset", default);
        if (size > Qcow2Bitmaps.DirectoryBytesMax)
            return ($"bitmaps_ext: bitmap directory size ({size.ToString(CultureInfo.InvariantCulture)}) exceeds the maximum supported size ({Qcow2Bitmaps.DirectoryBytesMax.ToString(CultureInfo.InvariantCulture)})", default);
        return (null, new BitmapsExt((int)count, (long)offset, (long)size, Stale: false));
    }

    private static string FeatureList(ulong bits, Dictionary<int, string> names)
    {
        var parts = new List<string>();
        for (int b = 0; b < 64; b++)
        {
            if ((bits & (1UL << b)) == 0) continue;
            parts.Add(names.TryGetValue(b, out var n) ? n : $"Unknown incompatible feature: {(1UL << b).ToString("x", CultureInfo.InvariantCulture)}");
        }
        return string.Join(", ", parts);
    }
}
