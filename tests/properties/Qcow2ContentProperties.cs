// The content property of the qcow2 driver: any sequence of writes, zero writes (with and without
// unmap) and discards, applied to a qcow2 node (over a qcow2 backing image holding data, so partial
// writes copy backing bytes) and to a raw file as a second witness, reads back from both exactly as a
// reference content map says, after every step and again after the qcow2 image is closed and reopened.
// Discards leave a range either as it was or zeroed, so the map marks such bytes "old or zero": whole
// qcow2 clusters must then read zero (version 3), the rest may be either. FsCheck draws the cluster size
// and the operations from an int array it can shrink; a failure prints one replay string, which
// Replay_strings_rerun_a_sequence runs again.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using FsCheck.Xunit;
using Verified.Impl.Engine;
using Verified.Impl.Formats;
using Verified.Impl.Graph;
using Verified.Impl.IO;
using Xunit;

namespace Verified.Tests.Properties;

public class Qcow2ContentProperties
{
    /// <summary>Virtual size of the images (small, so a case stays fast yet spans several L2 tables at 512-byte clusters).</summary>
    private const int ImageSize = 1 << 20;

    /// <summary>Most operations in one case.</summary>
    private const int OpsMax = 40;

    /// <summary>Cluster size exponents drawn from.</summary>
    private static readonly int[] ClusterBits = [9, 12, 16];

    /// <summary>One operation: kind w (write), z (zeroes), u (zeroes, may unmap), d (discard); a range; a fill byte.</summary>
    public sealed record Op(char Kind, int Offset, int Length, byte Fill)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Kind}:{Offset}+{Length}#{Fill}");
    }

    /// <summary>Any operation sequence reads back as the reference says, on qcow2 and on raw.</summary>
    [Property(MaxTest = 40)]
    public void Writes_zeroes_and_discards_read_back_as_the_content_map_says(int[] choices)
    {
        var (bits, ops) = Decode(choices ?? []);
        var failure = Run(bits, ops);
        Assert.True(failure is null, $"{failure}\nreplay: {ReplayString(bits, ops)}");
    }

    /// <summary>A replay string runs its sequence again (this one exercises COW, zeroing, a discard and a partial discard edge).</summary>
    [Theory]
    [InlineData("c=12;w:1000+5000#7;d:0+8192#0;u:4096+4096#0;w:3+10#9;z:700000+90000#0;d:65537+70000#0")]
    [InlineData("c=9;w:0+1048576#1;d:512+1000#0;w:600+1#2;u:0+1048576#0;w:1048575+1#3")]
    public void Replay_strings_rerun_a_sequence(string replay)
    {
        var (bits, ops) = Parse(replay);
        Assert.Equal(replay, ReplayString(bits, ops));
        var failure = Run(bits, ops);
        Assert.True(failure is null, $"{failure}\nreplay: {replay}");
    }

    private static (int Bits, List<Op> Ops) Decode(int[] c)
    {
        int i = 0;
        int Next(int n) => n <= 1 ? 0 : (int)((uint)(i < c.Length ? c[i++] : 0) % (uint)n);
        int bits = ClusterBits[Next(ClusterBits.Length)];
        var ops = new List<Op>();
        while (i < c.Length && ops.Count < OpsMax)
        {
            char kind = "wwwzud"[Next(6)];
            int len = Next(4) switch { 0 => 1 + Next(1000), 1 => 512 * (1 + Next(32)), 2 => 65536 * (1 + Next(4)), _ => 1 + Next(ImageSize) };
            int off = Next(2) == 0 ? Next(ImageSize - len + 1) / 4096 * 4096 : Next(ImageSize - len + 1);
            ops.Add(new Op(kind, off, len, kind == 'w' ? (byte)(1 + Next(255)) : (byte)0));
        }
        return (bits, ops);
    }

    private static string ReplayString(int bits, List<Op> ops) =>
        string.Join(';', ops.Select(o => o.ToString()).Prepend(string.Create(CultureInfo.InvariantCulture, $"c={bits}")));

    private static (int Bits, List<Op> Ops) Parse(string replay)
    {
        var parts = replay.Split(';');
        int bits = int.Parse(parts[0][2..], CultureInfo.InvariantCulture);
        var ops = parts.Skip(1).Select(p =>
        {
            int plus = p.IndexOf('+', StringComparison.Ordinal), hash = p.IndexOf('#', StringComparison.Ordinal);
            return new Op(p[0], int.Parse(p[2..plus], CultureInfo.InvariantCulture), int.Parse(p[(plus + 1)..hash], CultureInfo.InvariantCulture),
                byte.Parse(p[(hash + 1)..], CultureInfo.InvariantCulture));
        }).ToList();
        return (bits, ops);
    }

    /// <summary>Runs a sequence; returns a description of the first mismatch, or null.</summary>
    private static string? Run(int bits, List<Op> ops)
    {
        var dir = Directory.CreateTempSubdirectory("verified-qcow2prop-").FullName;
        try
        {
            string basePath = Path.Combine(dir, "base.qcow2"), top = Path.Combine(dir, "top.qcow2"), raw = Path.Combine(dir, "w.raw");
            var map = new ContentMap(ImageSize);
            Qcow2Image.Create(basePath, ImageSize, clusterBits: 16);
            using (var e = new BlockEngine())
            {
                // The backing image holds data in its first half: the top's partial writes must copy it.
                Ok(e, $$$"""{"driver":"qcow2","node-name":"b","file":{"driver":"file","filename":{{{J(basePath)}}}}}""");
                var half = new byte[ImageSize / 2];
                for (int i = 0; i < half.Length; i++) half[i] = (byte)(i * 31 >> 9);
                Sync(e.FindNode("b")!.WriteAsync(0, half));
                half.CopyTo(map.Value, 0);
            }
            Qcow2Image.Create(top, ImageSize, basePath, "qcow2", bits);
            File.WriteAllBytes(raw, map.Value);
            using (var e = new BlockEngine())
            {
                var (q, r) = Open(e, top, basePath, raw);
                for (int k = 0; k < ops.Count; k++)
                {
                    Apply(q, r, ops[k], map, 1L << bits);
                    if (map.Mismatch(Read(q)) is { } mq) return $"qcow2 after op {k} ({ops[k]}): {mq}";
                    if (map.Mismatch(Read(r)) is { } mr) return $"raw after op {k} ({ops[k]}): {mr}";
                }
            }
            using (var e = new BlockEngine())
            {
                var (q, _) = Open(e, top, basePath, raw);
                if (map.Mismatch(Read(q)) is { } m) return $"qcow2 after reopening: {m}";
            }
            return null;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (RootParent Q, RootParent R) Open(BlockEngine e, string top, string basePath, string raw)
    {
        Ok(e, $$$$"""
            {"driver":"qcow2","node-name":"q","discard":"unmap","file":{"driver":"file","filename":{{{{J(top)}}}}},
             "backing":{"driver":"qcow2","node-name":"b","file":{"driver":"file","filename":{{{{J(basePath)}}}}}}}
            """);
        Ok(e, $$$"""{"driver":"raw","node-name":"r","discard":"unmap","file":{"driver":"file","filename":{{{J(raw)}}}}}""");
        foreach (var (id, node) in new[] { ("dq", "q"), ("dr", "r") })
        {
            var reply = e.Execute(JsonNode.Parse($$$"""{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"{{{id}}}","drive":"{{{node}}}"}}""")!.AsObject());
            if (!reply.IsOk) throw new InvalidOperationException(reply.Error!.Desc);
        }
        return (e.FindDevice("dq")!, e.FindDevice("dr")!);
    }

    private static void Apply(RootParent q, RootParent r, Op op, ContentMap map, long clusterSize)
    {
        foreach (var dev in new[] { q, r })
        {
            switch (op.Kind)
            {
                case 'w':
                    var data = new byte[op.Length];
                    Array.Fill(data, op.Fill);
                    Sync(dev.WriteAsync(op.Offset, data));
                    break;
                case 'z' or 'u':
                    Sync(dev.WriteZeroesAsync(op.Offset, op.Length, op.Kind == 'u' ? WriteFlags.MayUnmap : WriteFlags.None));
                    break;
                default:
                    Sync(dev.DiscardAsync(op.Offset, op.Length));
                    break;
            }
        }
        if (op.Kind == 'd') map.Discard(op.Offset, op.Length, clusterSize);
        else map.Set(op.Offset, op.Length, op.Fill);
    }

    /// <summary>The reference: each byte's value, and whether it may instead read as zero (a discarded byte outside whole qcow2 clusters).</summary>
    private sealed class ContentMap(int size)
    {
        public byte[] Value { get; } = new byte[size];

        private readonly bool[] mayBeZero = new bool[size];

        public void Set(int offset, int length, byte fill)
        {
            Value.AsSpan(offset, length).Fill(fill);
            mayBeZero.AsSpan(offset, length).Clear();
        }

        /// <summary>Whole clusters of the range read as zeroes on qcow2 v3; every byte of it may read as zero on raw.</summary>
        public void Discard(int offset, int length, long cs)
        {
            long first = (offset + cs - 1) / cs * cs, last = offset + length == Value.Length ? Value.Length : (offset + length) / cs * cs;
            mayBeZero.AsSpan(offset, length).Fill(true);
            if (last > first) Set((int)first, (int)(last - first), 0);
        }

        public string? Mismatch(byte[] actual)
        {
            for (int i = 0; i < actual.Length; i++)
            {
                if (actual[i] != Value[i] && !(mayBeZero[i] && actual[i] == 0))
                    return $"byte {i} reads {actual[i]}, expected {Value[i]}{(mayBeZero[i] ? " or 0" : "")}";
            }
            return null;
        }
    }

    private static byte[] Read(RootParent dev)
    {
        var buf = new byte[ImageSize];
        Sync(dev.ReadAsync(0, buf));
        return buf;
    }

    private static void Sync(ValueTask t) => t.AsTask().GetAwaiter().GetResult();

    private static string J(string s) => JsonSerializer.Serialize(s);

    private static void Ok(BlockEngine e, string options)
    {
        var reply = e.Execute(JsonNode.Parse($$"""{"execute":"blockdev-add","arguments":{{options}}}""")!.AsObject());
        if (!reply.IsOk) throw new InvalidOperationException($"blockdev-add failed: {reply.Error!.Desc}");
    }
}
