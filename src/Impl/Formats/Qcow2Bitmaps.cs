using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Verified.Impl.Formats;

/// <summary>One entry of a qcow2 bitmap directory (docs/interop/qcow2.txt, "Bitmap directory"). Immutable.</summary>
/// <param name="Name">The bitmap's name (UTF-8 in the file, at most <see cref="Qcow2Bitmaps.NameBytesMax"/> bytes).</param>
/// <param name="TableOffset">Host offset of the bitmap table (cluster-aligned).</param>
/// <param name="TableSize">Entries in the bitmap table.</param>
/// <param name="Flags"><see cref="Qcow2Bitmaps.FlagInUse"/> and <see cref="Qcow2Bitmaps.FlagAuto"/>.</param>
/// <param name="GranularityBits">log2 of the bytes one bit covers.</param>
public sealed record Qcow2BitmapEntry(string Name, long TableOffset, int TableSize, uint Flags, int GranularityBits)
{
    /// <summary>Marked in use: a writer holds the bitmap in memory, or crashed holding it (its data is stale).</summary>
    public bool InUse => (Flags & Qcow2Bitmaps.FlagInUse) != 0;
}

/// <summary>
/// The qcow2 bitmaps extension's on-disk structures, as QEMU's block/qcow2-bitmap.c reads and writes them:
/// the directory (parsed with QEMU's checks and error texts, serialized byte for byte), bitmap sizes, and
/// the header cluster rewritten with the extension (QEMU's qcow2_update_header order). Pure functions.
/// </summary>
public static class Qcow2Bitmaps
{
    /// <summary>Most bitmaps in one image (QCOW2_MAX_BITMAPS).</summary>
    public const int BitmapsMax = 65535;

    /// <summary>Largest bitmap directory (QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1 KiB per bitmap).</summary>
    public const int DirectoryBytesMax = 1024 * BitmapsMax;

    /// <summary>Longest name in bytes (BME_MAX_NAME_SIZE).</summary>
    public const int NameBytesMax = 1023;

    /// <summary>Granularity bounds as exponents (BME_MIN/MAX_GRANULARITY_BITS).</summary>
    public const int GranularityBitsMin = 9, GranularityBitsMax = 31;

    /// <summary>Most bitmap table entries, and most bytes of bitmap data (BME_MAX_TABLE_SIZE, BME_MAX_PHYS_SIZE).</summary>
    public const long TableSizeMax = 0x8000000, PhysBytesMax = 0x20000000;

    /// <summary>Directory entry flags (the others are reserved).</summary>
    public const uint FlagInUse = 1, FlagAuto = 2, FlagsReserved = 0xfffffffc;

    /// <summary>Bitmap table entry: the data cluster's offset mask, reserved bits, and the all-ones flag of an entry without a cluster.</summary>
    public const ulong TableOffsetMask = 0x00fffffffffffe00, TableReservedMask = 0xff000000000001fe, TableAllOnes = 1;

    /// <summary>Length of a directory entry's fixed part.</summary>
    public const int EntryHeaderBytes = 24;

    /// <summary>The only bitmap type: dirty tracking.</summary>
    private const byte TypeDirtyTracking = 1;

    /// <summary>A directory entry's length: fixed part, name, padded to 8 bytes.</summary>
    public static int EntryBytes(int nameBytes) => (EntryHeaderBytes + nameBytes + 7) & ~7;

    /// <summary>Bytes of serialized bitmap for <paramref name="bits"/> bits: whole 64-bit words (QEMU's hbitmap_serialization_size).</summary>
    public static long SerializedBytes(long bits) => (bits + 63) / 64 * 8;

    /// <summary>Bits a bitmap of <paramref name="granularity"/> has over <paramref name="length"/> bytes.</summary>
    public static long BitsFor(long length, long granularity) => (length + granularity - 1) / granularity;

    /// <summary>Bitmap table entries for a bitmap: clusters of serialized data.</summary>
    public static long TableSizeFor(long length, long granularity, int clusterSize) =>
        (SerializedBytes(BitsFor(length, granularity)) + clusterSize - 1) / clusterSize;

    /// <summary>
    /// QEMU's check_constraints_on_bitmap, for a bitmap that is to be stored: granularity bounds, the data's size,
    /// the name's length. Returns QEMU's text, or null.
    /// </summary>
    public static string? Constraints(string name, long granularity, long length, int clusterSize)
    {
        ArgumentNullException.ThrowIfNull(name);
        int bits = System.Numerics.BitOperations.TrailingZeroCount(granularity);
        if (bits > GranularityBitsMax) return $"Granularity exceeds maximum ({(1L << GranularityBitsMax).ToString(CultureInfo.InvariantCulture)} bytes)";
        if (bits < GranularityBitsMin) return $"Granularity is under minimum ({(1L << GranularityBitsMin).ToString(CultureInfo.InvariantCulture)} bytes)";
        long bytes = (BitsFor(length, granularity) + 7) / 8;
        if (bytes > PhysBytesMax || bytes > TableSizeMax * clusterSize) return "Too much space will be occupied by the bitmap. Use larger granularity";
        if (Encoding.UTF8.GetByteCount(name) > NameBytesMax) return $"Name length exceeds maximum ({NameBytesMax.ToString(CultureInfo.InvariantCulture)} characters)";
        return null;
    }

    /// <summary>QEMU's check_dir_entry: whether an entry is well-formed for an image of <paramref name="length"/> bytes.</summary>
    private static bool EntryValid(long tableOffset, uint tableSize, uint flags, byte type, int granularityBits, int nameBytes, int clusterSize, long length)
    {
        if (tableSize == 0 || tableOffset == 0 || tableOffset % clusterSize != 0 || tableSize > TableSizeMax) return false;
        if (granularityBits is > GranularityBitsMax or < GranularityBitsMin) return false;
        if ((flags & FlagsReserved) != 0 || nameBytes > NameBytesMax || type != TypeDirtyTracking) return false;
        long phys = (long)tableSize * clusterSize;
        if (phys > PhysBytesMax) return false;
        // A valid bitmap must cover the image; an in-use one may be stale after a resize.
        return (flags & FlagInUse) != 0 || length <= (phys * 8) << granularityBits;
    }

    /// <summary>
    /// Parses a bitmap directory read from the image (QEMU's bitmap_list_load): <paramref name="count"/> entries
    /// from the header extension, each checked. Returns the entries in directory order, or QEMU's error text.
    /// </summary>
    public static (List<Qcow2BitmapEntry>? Entries, string? Error) ParseDirectory(ReadOnlySpan<byte> dir, int count, int clusterSize, long length)
    {
        var list = new List<Qcow2BitmapEntry>();
        int pos = 0;
        while (pos < dir.Length)
        {
            if (pos + EntryHeaderBytes > dir.Length) return (null, "Broken bitmap directory");
            if (list.Count + 1 > count) return (null, "More bitmaps found than specified in header extension");
            var e = dir[pos..];
            long tableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(e);
            uint tableSize = BinaryPrimitives.ReadUInt32BigEndian(e[8..]);
            uint flags = BinaryPrimitives.ReadUInt32BigEndian(e[12..]);
            byte type = e[16];
            int granularityBits = e[17];
            int nameBytes = BinaryPrimitives.ReadUInt16BigEndian(e[18..]);
            uint extra = BinaryPrimitives.ReadUInt32BigEndian(e[20..]);
            if (extra > int.MaxValue || pos + (long)EntryBytes(nameBytes + (int)extra) > dir.Length) return (null, "Broken bitmap directory");
            if (extra != 0) return (null, "Bitmap extra data is not supported");
            string name = Encoding.UTF8.GetString(e.Slice(EntryHeaderBytes, nameBytes));
            if (!EntryValid(tableOffset, tableSize, flags, type, granularityBits, nameBytes, clusterSize, length))
                return (null, $"Bitmap '{name}' doesn't satisfy the constraints");
            list.Add(new Qcow2BitmapEntry(name, tableOffset, (int)tableSize, flags, granularityBits));
            pos += EntryBytes(nameBytes);
        }
        if (list.Count != count) return (null, "Less bitmaps found than specified in header extension");
        return (list, null);
    }

    /// <summary>The directory's bytes for <paramref name="entries"/>, in order (QEMU's bitmap_list_store).</summary>
    public static byte[] SerializeDirectory(IReadOnlyList<Qcow2BitmapEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        int size = entries.Sum(x => EntryBytes(Encoding.UTF8.GetByteCount(x.Name)));
        var dir = new byte[size];
        int pos = 0;
        foreach (var x in entries)
        {
            var name = Encoding.UTF8.GetBytes(x.Name);
            var e = dir.AsSpan(pos);
            BinaryPrimitives.WriteUInt64BigEndian(e, (ulong)x.TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[8..], (uint)x.TableSize);
            BinaryPrimitives.WriteUInt32BigEndian(e[12..], x.Flags);
            e[16] = TypeDirtyTracking;
            e[17] = (byte)x.GranularityBits;
            BinaryPrimitives.WriteUInt16BigEndian(e[18..], (ushort)name.Length);
            name.CopyTo(e[EntryHeaderBytes..]);
            pos += EntryBytes(name.Length);
        }
        return dir;
    }

    /// <summary>Bounds a walk over a header's extensions (a corrupt image's loop).</summary>
    private const int ExtensionsMax = 1024;

    /// <summary>
    /// The image's first cluster rewritten as QEMU's qcow2_update_header writes it: the fixed header from
    /// <paramref name="cluster0"/> with <paramref name="autoclear"/>, then the backing format extension, the feature
    /// table, the bitmaps extension (when <paramref name="count"/> is not 0), the other extensions as they were, the
    /// end marker, and the backing file name.
    /// </summary>
    public static byte[] RewriteHeader(ReadOnlySpan<byte> cluster0, int clusterSize, ulong autoclear, int count, long dirOffset, long dirSize)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0[100..]);
        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(cluster0[8..]);
        int backingSize = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0[16..]);
        var backingName = backingOffset == 0 ? [] : cluster0.Slice((int)backingOffset, backingSize).ToArray();
        byte[]? backingFormat = null;
        var others = new List<(uint Type, byte[] Data)>();
        int end = backingOffset == 0 ? clusterSize : (int)backingOffset;
        for (int i = 0, pos = headerLength; i < ExtensionsMax && pos + 8 <= end; i++)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster0[pos..]);
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster0[(pos + 4)..]);
            if (type == Qcow2Header.ExtEnd) break;
            var data = cluster0.Slice(pos + 8, len).ToArray();
            if (type == Qcow2Header.ExtBackingFormat) backingFormat = data;
            else if (type is not (Qcow2Header.ExtFeatureTable or Qcow2Header.ExtBitmaps)) others.Add((type, data));
            pos += 8 + ((len + 7) & ~7);
        }

        var h = new byte[clusterSize];
        cluster0[..headerLength].CopyTo(h);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(Qcow2Header.AutoclearField), autoclear);
        int at = headerLength;
        if (backingFormat is not null) at = AddExtension(h, at, Qcow2Header.ExtBackingFormat, backingFormat);
        at = Qcow2Image.WriteFeatureTable(h, at, clusterSize);
        if (count > 0)
        {
            var ext = new byte[Qcow2Header.BitmapsExtLength];
            BinaryPrimitives.WriteUInt32BigEndian(ext, (uint)count);
            BinaryPrimitives.WriteUInt64BigEndian(ext.AsSpan(8), (ulong)dirSize);
            BinaryPrimitives.WriteUInt64BigEndian(ext.AsSpan(16), (ulong)dirOffset);
            at = AddExtension(h, at, Qcow2Header.ExtBitmaps, ext);
        }
        foreach (var (type, data) in others) at = AddExtension(h, at, type, data);
        at += 8; // the end marker: type 0, length 0
        if (backingName.Length > 0)
        {
            if (at + backingName.Length > clusterSize) throw new InvalidOperationException("qcow2 header does not fit its cluster");
            BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), (ulong)at);
            backingName.CopyTo(h, at);
        }
        return h;
    }

    private static int AddExtension(byte[] h, int at, uint type, byte[] data)
    {
        int padded = (data.Length + 7) & ~7;
        if (at + 8 + padded + 8 > h.Length) throw new InvalidOperationException("qcow2 header extensions do not fit the header cluster");
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(at), type);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(at + 4), (uint)data.Length);
        data.CopyTo(h, at + 8);
        return at + 8 + padded;
    }
}
