// The qcow2 bitmaps extension without QEMU in the loop: the directory's bytes (entries padded to 8 bytes,
// read back equal; every malformed directory refused with QEMU's text), the header cluster rewritten with
// and without the extension (a rewrite without bitmaps gives back exactly what Qcow2Image laid out, the
// backing name and format kept), the extension's checks at open, the serialized bit order, and a qcow2
// node's persistent bitmaps surviving a close and a reopen with their counts, flags and order, flagged in
// use on disk while open (read straight from the file) and clean (qemu-img check) after.
using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Verified.Impl.Formats;
using Verified.Impl.Graph;
using Xunit;

namespace Verified.Tests.IO;

public sealed class Qcow2BitmapTests : IDisposable
{
    private const int ClusterSize = 65536;
    private const long ImageSize = 64L << 20;
    private readonly string dir = Directory.CreateTempSubdirectory("verified-qcow2bm-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    private static readonly Qcow2BitmapEntry[] Sample =
    [
        new("b3", 0x70000, 1, 0, 17),
        new("a-longer-name", 0x80000, 1, Qcow2Bitmaps.FlagAuto | Qcow2Bitmaps.FlagInUse, 9),
        new("b1", 0x90000, 1, Qcow2Bitmaps.FlagAuto, 16),
    ];

    /// <summary>A directory reads back as written; each entry takes its fixed part and name, padded to 8 bytes.</summary>
    [Fact]
    public void Directory_reads_back_as_written()
    {
        var bytes = Qcow2Bitmaps.SerializeDirectory(Sample);
        Assert.Equal(Qcow2Bitmaps.EntryBytes(2) * 2 + Qcow2Bitmaps.EntryBytes(13), bytes.Length);
        Assert.Equal(32, Qcow2Bitmaps.EntryBytes(2));
        Assert.Equal(40, Qcow2Bitmaps.EntryBytes(13));
        var (entries, err) = Qcow2Bitmaps.ParseDirectory(bytes, Sample.Length, ClusterSize, ImageSize);
        Assert.Null(err);
        Assert.Equal(Sample, entries);
    }

    /// <summary>Malformed directories are refused with QEMU's bitmap_list_load texts.</summary>
    [Fact]
    public void Malformed_directories_are_refused_with_QEMU_texts()
    {
        var bytes = Qcow2Bitmaps.SerializeDirectory(Sample);
        Assert.Equal("More bitmaps found than specified in header extension", Qcow2Bitmaps.ParseDirectory(bytes, 2, ClusterSize, ImageSize).Error);
        Assert.Equal("Less bitmaps found than specified in header extension", Qcow2Bitmaps.ParseDirectory(bytes, 4, ClusterSize, ImageSize).Error);
        Assert.Equal("Broken bitmap directory", Qcow2Bitmaps.ParseDirectory(bytes.AsSpan(0, bytes.Length - 4), 3, ClusterSize, ImageSize).Error);
        var extra = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(extra.AsSpan(20), 8);
        Assert.Equal("Bitmap extra data is not supported", Qcow2Bitmaps.ParseDirectory(extra, 3, ClusterSize, ImageSize).Error);
        var fine = Qcow2Bitmaps.SerializeDirectory([Sample[0] with { GranularityBits = 8 }]);
        Assert.Equal("Bitmap 'b3' doesn't satisfy the constraints", Qcow2Bitmaps.ParseDirectory(fine, 1, ClusterSize, ImageSize).Error);
        // A table too small for the image is refused unless the bitmap is in use (stale after a resize).
        var small = Qcow2Bitmaps.SerializeDirectory([Sample[0] with { GranularityBits = 9 }]);
        Assert.NotNull(Qcow2Bitmaps.ParseDirectory(small, 1, ClusterSize, 1L << 40).Error);
        var inUse = Qcow2Bitmaps.SerializeDirectory([Sample[0] with { GranularityBits = 9, Flags = Qcow2Bitmaps.FlagInUse }]);
        Assert.Null(Qcow2Bitmaps.ParseDirectory(inUse, 1, ClusterSize, 1L << 40).Error);
    }

    /// <summary>A header rewritten without bitmaps is the one Qcow2Image laid out, byte for byte; with them it parses back with the extension, the backing name and format kept.</summary>
    [Fact]
    public void Header_rewrite_keeps_everything_but_the_extension()
    {
        var image = Qcow2Image.Layout(ImageSize, "base.qcow2", "qcow2", 16);
        var cluster0 = image.AsSpan(0, ClusterSize);
        Assert.Equal(cluster0.ToArray(), Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, 0, 0, 0, 0));
        var with = Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, Qcow2Header.AutoclearBitmaps, 3, 0x50000, 96);
        var (h, err) = Qcow2Header.Parse(with, writable: true);
        Assert.Null(err);
        Assert.Equal((3, 0x50000L, 96L, false), (h!.BitmapCount, h.BitmapDirectoryOffset, h.BitmapDirectorySize, h.BitmapsExtensionStale));
        Assert.Equal(("base.qcow2", "qcow2"), (h.BackingFile, h.BackingFormat));
        Assert.Equal(cluster0.ToArray(), Qcow2Bitmaps.RewriteHeader(with, ClusterSize, 0, 0, 0, 0));
    }

    /// <summary>The extension's checks at open: ignored (stale) without its autoclear bit, else QEMU's texts.</summary>
    [Fact]
    public void Bitmaps_extension_is_checked_at_open()
    {
        var cluster0 = Qcow2Image.Layout(ImageSize, null, null, 16).AsSpan(0, ClusterSize).ToArray();
        var stale = Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, 0, 2, 0x50000, 64);
        var (h, err) = Qcow2Header.Parse(stale, writable: true);
        Assert.Null(err);
        Assert.Equal((0, true), (h!.BitmapCount, h.BitmapsExtensionStale));
        var valid = Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, Qcow2Header.AutoclearBitmaps, 1, 0x50000, 64);
        Assert.Null(Qcow2Header.Parse(valid, true).Error);
        // The extension's data follows its 8-byte type and length: count, reserved, size, offset.
        int ext = valid.AsSpan().IndexOf(new byte[] { 0x23, 0x85, 0x28, 0x75 }) + 8;
        var zero = (byte[])valid.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(zero.AsSpan(ext), 0);
        Assert.Equal("found bitmaps extension with zero bitmaps", Qcow2Header.Parse(zero, true).Error);
        var reserved = (byte[])valid.Clone();
        reserved[ext + 7] = 1;
        Assert.Equal("bitmaps_ext: Reserved field is not zero", Qcow2Header.Parse(reserved, true).Error);
        Assert.Equal("bitmaps_ext: invalid dir offset",
            Qcow2Header.Parse(Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, Qcow2Header.AutoclearBitmaps, 1, 0x50008, 64), true).Error);
        Assert.Equal($"bitmaps_ext: Image has 65536 bitmaps, exceeding the QEMU supported maximum of {Qcow2Bitmaps.BitmapsMax}",
            Qcow2Header.Parse(Qcow2Bitmaps.RewriteHeader(cluster0, ClusterSize, Qcow2Header.AutoclearBitmaps, 65536, 0x50000, 64), true).Error);
    }

    /// <summary>Serialized bits are little-endian within bytes, and bits past the bitmap's end never come back.</summary>
    [Fact]
    public void Serialized_bits_are_little_endian_and_trimmed()
    {
        var bits = new DirtyBits(512, 70 * 512);
        bits.Mark(0, 1);
        bits.Mark(9 * 512, 1);
        bits.Mark(69 * 512, 1);
        var buf = new byte[16];
        bits.Serialize(0, buf);
        Assert.Equal(new byte[] { 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0 }, buf);
        var back = new DirtyBits(512, 70 * 512);
        buf[15] = 0xff; // bits 120-127: past the bitmap's 70 bits
        back.Deserialize(0, buf);
        Assert.Equal(3 * 512, back.DirtyBytes);
        var again = new byte[16];
        back.Serialize(0, again);
        buf[15] = 0;
        Assert.Equal(buf, again);
    }

    /// <summary>Persistent bitmaps survive a close and a reopen: counts, granularity, recording and order; on disk they are in use while the node is open.</summary>
    [Fact]
    public void Persistent_bitmaps_survive_close_and_reopen()
    {
        var image = P("a.qcow2");
        Qcow2Image.Create(image, ImageSize);
        Dictionary<string, (long Count, bool Recording)> before;
        using (var q = new Qcow2Node(image))
        {
            Ok(q, """{"execute":"block-dirty-bitmap-add","arguments":{"node":"q","name":"b1","persistent":true}}""");
            Ok(q, """{"execute":"block-dirty-bitmap-add","arguments":{"node":"q","name":"b2","persistent":true,"granularity":512}}""");
            Ok(q, """{"execute":"block-dirty-bitmap-add","arguments":{"node":"q","name":"b3","persistent":true,"disabled":true}}""");
            Ok(q, """{"execute":"block-dirty-bitmap-add","arguments":{"node":"q","name":"t"}}""");
            q.Write(0, new byte[100 << 10]);
            q.Write(40L << 20, new byte[70 << 10]);
            q.Write(ImageSize - 4096, new byte[4096]);
            before = Bitmaps(q);
            Assert.Equal(4, before.Count);
        }
        Qemu.CheckClean(image);
        using (var q = new Qcow2Node(image))
        {
            var after = Bitmaps(q);
            before.Remove("t");
            Assert.Equal(before, after);
            Assert.Equal(["b1", "b2", "b3"], Names(q));
            // While open, every stored bitmap is flagged in use in the file itself.
            var raw = File.ReadAllBytes(image);
            var (h, _) = Qcow2Header.Parse(raw, writable: false);
            var (entries, err) = Qcow2Bitmaps.ParseDirectory(raw.AsSpan((int)h!.BitmapDirectoryOffset, (int)h.BitmapDirectorySize), h.BitmapCount, ClusterSize, ImageSize);
            Assert.Null(err);
            Assert.All(entries!, e => Assert.True(e.InUse));
            Assert.Equal(["b3", "b2", "b1"], entries!.Select(e => e.Name));
        }
        Qemu.CheckClean(image);
    }

    private static void Ok(Qcow2Node q, string json)
    {
        var r = q.Run(json);
        Assert.True(r.IsOk, $"{json} -> {r}");
    }

    private static JsonArray DirtyBitmapsOf(Qcow2Node q) =>
        q.Run("""{"execute":"query-named-block-nodes","arguments":{"flat":true}}""").Return!.AsArray()
            .Single(n => n!["node-name"]!.GetValue<string>() == "q")!["dirty-bitmaps"]!.AsArray();

    private static Dictionary<string, (long, bool)> Bitmaps(Qcow2Node q) =>
        DirtyBitmapsOf(q).ToDictionary(b => b!["name"]!.GetValue<string>(), b => (b!["count"]!.GetValue<long>(), b["recording"]!.GetValue<bool>()));

    private static List<string> Names(Qcow2Node q) => [.. DirtyBitmapsOf(q).Select(b => b!["name"]!.GetValue<string>())];
}
