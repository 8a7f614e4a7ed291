// qcow2 interoperability with real QEMU, in both directions. Images Verified writes (random writes,
// zero writes and discards, over a range of cluster sizes, with and without a backing file) must pass
// `qemu-img check` without errors or leaks and equal, by `qemu-img compare`, a raw reference Verified
// kept alongside. Images qemu-img and qemu-io make (backing chains, zero clusters from `write -z`,
// discards, compressed clusters from `convert -c`, version 2) must read through Verified exactly as
// `qemu-img convert -O raw` reads them, and `qemu-img map` must agree with Verified's block status.
// Open errors are compared with the text qemu-img prints for the same file.
using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Verified.Impl.Formats;
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.IO;

public sealed class Qcow2InteropTests : IDisposable
{
    /// <summary>Random operations per write-pattern run.</summary>
    private const int OpsPerRun = 120;

    /// <summary>Virtual size of the test images.</summary>
    private const long ImageSize = 8L << 20;

    private readonly string dir = Directory.CreateTempSubdirectory("verified-qcow2io-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    /// <summary>Images Verified writes pass qemu-img check (no errors, no leaks) and compare equal to the raw reference.</summary>
    [Theory]
    [InlineData(9, false, 1)]
    [InlineData(12, false, 2)]
    [InlineData(16, false, 3)]
    [InlineData(21, false, 4)]
    [InlineData(16, true, 5)]
    [InlineData(12, true, 6)]
    public void Verified_writes_pass_check_and_compare_equal(int clusterBits, bool withBacking, int seed)
    {
        var reference = new byte[ImageSize];
        string? backing = null;
        if (withBacking)
        {
            backing = P("base.qcow2");
            Qemu.Ok("qemu-img", "create", "-f", "qcow2", backing, ImageSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 3M", "-c", "write -P 0x33 5M 1M", backing);
            reference.AsSpan(0, 3 << 20).Fill(0x5a);
            reference.AsSpan(5 << 20, 1 << 20).Fill(0x33);
        }
        var image = P("top.qcow2");
        Qcow2Image.Create(image, ImageSize, backing, withBacking ? "qcow2" : null, clusterBits);
        var rng = new Random(seed);
        using (var q = new Qcow2Node(image, backing))
        {
            for (int i = 0; i < OpsPerRun; i++) RandomOp(q, rng, reference);
            Assert.Equal(reference, q.Read(0, (int)ImageSize));
        }
        Qemu.CheckClean(image);
        var raw = P("ref.raw");
        File.WriteAllBytes(raw, reference);
        Qemu.Ok("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw);
    }

    /// <summary>Filling an image of 512-byte clusters outgrows its first refcount table: the table moves, and qemu-img still finds the image clean and equal.</summary>
    [Fact]
    public void Refcount_table_grows_as_small_clusters_fill_the_image()
    {
        const int size = 12 << 20;
        var image = P("small.qcow2");
        Qcow2Image.Create(image, size, clusterBits: 9);
        var reference = new byte[size];
        new Random(7).NextBytes(reference);
        long tableBefore;
        using (var q = new Qcow2Node(image))
        {
            tableBefore = q.Driver.Header.RefTableOffset;
            for (int off = 0; off < size; off += 1 << 20) q.Write(off, reference.AsSpan(off, 1 << 20).ToArray());
            Assert.NotEqual(tableBefore, q.Driver.Header.RefTableOffset);
        }
        Qemu.CheckClean(image);
        var raw = P("ref.raw");
        File.WriteAllBytes(raw, reference);
        Qemu.Ok("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw);
    }

    /// <summary>
    /// Writes in parallel (64 in flight, disjoint 1–8 KiB ranges in random order, many in the same new cluster,
    /// over a backing image so partial clusters copy it) and lock-free reads meanwhile: the image reads back
    /// as written, passes qemu-img check without leaks and compares equal to the reference.
    /// </summary>
    [Theory]
    [InlineData(16, false)]
    [InlineData(12, false)]
    [InlineData(16, true)]
    [InlineData(12, true)]
    public async Task Parallel_writes_allocate_each_cluster_once(int clusterBits, bool sequential)
    {
        const int size = 4 << 20, inFlight = 64;
        var backing = P("pbase.qcow2");
        Qemu.Ok("qemu-img", "create", "-q", "-f", "qcow2", backing, "4M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 0 4M", backing);
        var reference = new byte[size];
        reference.AsSpan().Fill(0x6b);
        var image = P("par.qcow2");
        Qcow2Image.Create(image, size, backing, "qcow2", clusterBits);
        var rng = new Random(clusterBits);
        var ranges = new List<(int Off, int Len)>();
        for (int off = 0; off < size;)
        {
            int len = Math.Min(size - off, 1024 * (1 + rng.Next(8)));
            if (rng.Next(4) != 0) ranges.Add((off, len)); // some ranges stay backing-only
            off += len;
        }
        // Sequential order puts many requests on each new cluster at once (an allocation finishing while the next waits).
        var order = sequential ? ranges : ranges.OrderBy(_ => rng.Next()).ToList();
        using (var q = new Qcow2Node(image, backing))
        {
            var pending = new List<Task>();
            foreach (var (off, len) in order)
            {
                var data = new byte[len];
                rng.NextBytes(data);
                data.CopyTo(reference, off);
                pending.Add(q.Device!.WriteAsync(off, data).AsTask());
                if (pending.Count % 8 == 0) pending.Add(q.Node.ReadAsync(rng.Next(size - 4096), new byte[4096]).AsTask());
                if (pending.Count >= inFlight)
                {
                    await Task.WhenAny(pending);
                    pending.RemoveAll(t => t.IsCompleted);
                }
            }
            await Task.WhenAll(pending);
            Assert.Equal(reference, q.Read(0, size));
        }
        Qemu.CheckClean(image);
        var raw = P("par.raw");
        File.WriteAllBytes(raw, reference);
        Qemu.Ok("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw);
    }

    /// <summary>One random write, zero write (with or without unmap) or discard, applied to the node and to the reference.</summary>
    internal static void RandomOp(Qcow2Node q, Random rng, byte[] reference)
    {
        long size = reference.Length;
        int len = rng.Next(4) switch { 0 => 1 + rng.Next(600), 1 => 512 * (1 + rng.Next(16)), 2 => 4096 * (1 + rng.Next(64)), _ => 1 + rng.Next(300_000) };
        len = (int)Math.Min(len, size);
        long off = rng.Next(3) == 0 ? rng.NextInt64(size - len + 1) / 4096 * 4096 : rng.NextInt64(size - len + 1);
        switch (rng.Next(10))
        {
            case < 6:
                var data = new byte[len];
                rng.NextBytes(data);
                q.Write(off, data);
                data.CopyTo(reference, off);
                break;
            case < 8:
                q.Zero(off, len, unmap: rng.Next(2) == 0);
                reference.AsSpan((int)off, len).Clear();
                break;
            default:
                // A discard may leave the range as it was or zeroed; on qcow2 v3 whole clusters read as zeroes after it.
                q.Discard(off, len);
                long cs = q.Driver.ClusterSize;
                long first = (off + cs - 1) / cs * cs, last = off + len == size ? size : (off + len) / cs * cs;
                if (last > first) reference.AsSpan((int)first, (int)(last - first)).Clear();
                break;
        }
    }

    /// <summary>A backing chain qemu-img made (with partial writes in the overlay) reads as qemu-img convert reads it; Verified's partial writes copy the backing data around them.</summary>
    [Fact]
    public void Backing_chain_made_by_qemu_reads_back_and_partial_writes_copy_the_backing()
    {
        string b = P("base.qcow2"), o = P("ov.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", b, "4M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 2M", "-c", "write -P 0x22 3M 512k", b);
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-b", b, "-F", "qcow2", o);
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 100k 10k", "-c", "write -z 1M 64k", o);
        var expected = ConvertToRaw(o);
        using (var q = new Qcow2Node(o, b))
        {
            Assert.Equal(expected, q.Read(0, expected.Length));
            // A 100-byte write in the middle of a backing-only cluster: the rest of the cluster keeps the backing's bytes.
            q.Write(3 * (1 << 20) + 1000, Enumerable.Repeat((byte)0xee, 100).ToArray());
            expected.AsSpan(3 * (1 << 20) + 1000, 100).Fill(0xee);
        }
        Qemu.CheckClean(o);
        Assert.Equal(expected, ConvertToRaw(o));
    }

    /// <summary>Zero clusters (qemu-io write -z, with and without -u) and discarded clusters read back as zeroes, the rest as written.</summary>
    [Fact]
    public void Zero_clusters_and_discards_made_by_qemu_read_back()
    {
        var img = P("z.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", img, "4M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 4M", "-c", "write -z 64k 128k", "-c", "write -z -u 1M 256k",
            "-c", "discard 2M 192k", "-c", "write -z 3M 4k", img);
        var expected = ConvertToRaw(img);
        Assert.Equal(0, expected[(1 << 20) + 5]);
        using var q = new Qcow2Node(img);
        Assert.Equal(expected, q.Read(0, expected.Length));
    }

    /// <summary>Compressed clusters from qemu-img convert -c (several cluster sizes) read back as the source, and a write into one re-allocates it cleanly.</summary>
    [Theory]
    [InlineData(4096)]
    [InlineData(65536)]
    public void Compressed_clusters_read_back_and_can_be_overwritten(int clusterSize)
    {
        var raw = P("src.raw");
        var data = new byte[2 << 20];
        var rng = new Random(clusterSize);
        for (int i = 0; i < data.Length; i += 4096) data.AsSpan(i, 2048).Fill((byte)rng.Next(256)); // compressible, not uniform
        File.WriteAllBytes(raw, data);
        var img = P("c.qcow2");
        Qemu.Ok("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", $"cluster_size={clusterSize}", raw, img);
        Assert.Contains("100.00% compressed clusters", Qemu.Ok("qemu-img", "check", img), StringComparison.Ordinal);
        using (var q = new Qcow2Node(img))
        {
            Assert.Equal(data, q.Read(0, data.Length));
            q.Write(clusterSize + 10, [1, 2, 3]);
            data[clusterSize + 10] = 1;
            data[clusterSize + 11] = 2;
            data[clusterSize + 12] = 3;
            Assert.Equal(data, q.Read(0, data.Length));
        }
        Qemu.CheckClean(img);
        File.WriteAllBytes(raw, data);
        Qemu.Ok("qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw);
    }

    /// <summary>A version 2 image (compat=0.10) reads back, and writes to it stay a valid v2 image.</summary>
    [Fact]
    public void Version_2_images_read_and_write()
    {
        var img = P("v2.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", img, "2M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 300k", img);
        var expected = ConvertToRaw(img);
        using (var q = new Qcow2Node(img))
        {
            Assert.Equal(2, q.Driver.Header.Version);
            Assert.Equal(expected, q.Read(0, expected.Length));
            q.Zero(0, 65536);
            expected.AsSpan(0, 65536).Clear();
            q.Write(1 << 20, [9, 9, 9]);
            expected.AsSpan(1 << 20, 3).Fill(9);
        }
        Qemu.CheckClean(img);
        Assert.Equal(expected, ConvertToRaw(img));
    }

    /// <summary>qemu-img map's data / zero / unallocated ranges and host offsets equal Verified's block status, range by range.</summary>
    [Fact]
    public async Task Qemu_img_map_agrees_with_block_status()
    {
        var img = P("m.qcow2");
        Qemu.Ok("qemu-img", "create", "-f", "qcow2", img, "8M");
        Qemu.Ok("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 200k", "-c", "write -z 1M 128k", "-c", "write -P 2 3M 64k",
            "-c", "write -P 3 5M 1M", "-c", "discard 5M 256k", img);
        using var q = new Qcow2Node(img, readOnly: true);
        var map = JsonNode.Parse(Qemu.Ok("qemu-img", "map", "--output=json", "-f", "qcow2", img))!.AsArray();
        foreach (var e in map)
        {
            long start = e!["start"]!.GetValue<long>(), length = e["length"]!.GetValue<long>();
            bool data = e["data"]!.GetValue<bool>(), zero = e["zero"]!.GetValue<bool>(), present = e["present"]!.GetValue<bool>();
            for (long pos = start; pos < start + length;)
            {
                var (kind, bytes, host) = await q.Driver.BlockStatusAsync(pos, start + length - pos);
                var want = data ? Qcow2Driver.ClusterKind.Data : present ? Qcow2Driver.ClusterKind.Zero : Qcow2Driver.ClusterKind.Unallocated;
                Assert.True(kind == want, $"at {pos}: map says data={data} zero={zero} present={present}, Verified says {kind}");
                if (data) Assert.Equal(e["offset"]!.GetValue<long>() + (pos - start), host);
                pos += bytes;
            }
        }
    }

    /// <summary>Files that are not valid qcow2 images fail to open with the text qemu-img prints for them.</summary>
    [Theory]
    [InlineData("raw", "Image is not in qcow2 format")]
    [InlineData("version", "Unsupported qcow2 version 4")]
    [InlineData("cluster", "Unsupported cluster size: 2^22")]
    [InlineData("l1", "L1 table is too small")]
    public void Invalid_images_fail_to_open_as_qemu_says(string damage, string expected)
    {
        var img = P("bad.img");
        if (damage == "raw")
        {
            File.WriteAllBytes(img, new byte[1 << 20]);
        }
        else
        {
            Qcow2Image.Create(img, 1 << 20);
            using var f = new FileStream(img, FileMode.Open, FileAccess.ReadWrite);
            var field = new byte[4];
            (int at, uint value) = damage switch { "version" => (4, 4u), "cluster" => (20, 22u), _ => (36, 0u) };
            BinaryPrimitives.WriteUInt32BigEndian(field, value);
            f.Position = at;
            f.Write(field);
        }
        var (code, qemuSays) = Qemu.Run("qemu-img", "info", "-f", "qcow2", img);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, qemuSays, StringComparison.Ordinal);
        using var io = new IoEngine();
        var r = io.Add($$$"""
            {"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":{{{System.Text.Json.JsonSerializer.Serialize(img)}}}}}
            """);
        Assert.False(r.IsOk);
        Assert.Equal(expected, r.Error!.Desc);
        Assert.Empty(io.NodeNames());
    }

    private byte[] ConvertToRaw(string image)
    {
        var raw = P($"conv-{Guid.NewGuid():N}.raw");
        Qemu.Ok("qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw);
        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }
}
