namespace Verified.Vocabulary;

/// <summary>
/// The four block-layer permissions (QEMU's <c>BLK_PERM_*</c>, 7.2: GRAPH_MOD is gone).
/// Bit i corresponds to index i of QAPI's <c>BlockPermission</c> enum.
/// </summary>
[Flags]
public enum Perm : byte
{
    /// <summary>No permission.</summary>
    None = 0,
    /// <summary>The holder sees a complete, self-consistent image.</summary>
    ConsistentRead = 0x01,
    /// <summary>The holder may change visible content.</summary>
    Write = 0x02,
    /// <summary>The holder may write data that does not change visible content.</summary>
    WriteUnchanged = 0x04,
    /// <summary>The holder may change the node's size.</summary>
    Resize = 0x08,
    /// <summary>Every permission.</summary>
    All = 0x0f,
}

/// <summary>Names and set operations for <see cref="Perm"/>; pure and allocation-light.</summary>
public static class Perms
{
    /// <summary>Number of permission bits.</summary>
    public const int BitCount = 4;

    private static readonly string[] QapiNames = ["consistent-read", "write", "write-unchanged", "resize"];
    private static readonly string[] DisplayNames = ["consistent read", "write", "write unchanged", "resize"];

    /// <summary>The single bits in ascending order.</summary>
    public static readonly IReadOnlyList<Perm> Bits = [Perm.ConsistentRead, Perm.Write, Perm.WriteUnchanged, Perm.Resize];

    /// <summary>True if every bit of <paramref name="sub"/> is in <paramref name="super"/>.</summary>
    public static bool SubsetOf(this Perm sub, Perm super) => (sub & ~super) == 0;

    /// <summary>The QAPI name of one bit (<c>consistent-read</c>, …).</summary>
    public static string QapiName(Perm bit) => QapiNames[Index(bit)];

    /// <summary>
    /// The names QEMU's <c>x-debug-query-block-graph</c> prints: QAPI names in descending bit order
    /// (QEMU builds the list by prepending).
    /// </summary>
    public static IReadOnlyList<string> ToQapiList(Perm p)
    {
        var list = new List<string>(BitCount);
        for (int i = BitCount - 1; i >= 0; i--)
        {
            if (((int)p & (1 << i)) != 0) list.Add(QapiNames[i]);
        }
        return list;
    }

    /// <summary>The text QEMU puts in error messages (<c>bdrv_perm_names</c>): display names, ascending, joined with ", ".</summary>
    public static string DisplayText(Perm p)
    {
        var parts = new List<string>(BitCount);
        for (int i = 0; i < BitCount; i++)
        {
            if (((int)p & (1 << i)) != 0) parts.Add(DisplayNames[i]);
        }
        return string.Join(", ", parts);
    }

    /// <summary>Parses one QAPI permission name; null if it is not one.</summary>
    public static Perm? ParseQapi(string name)
    {
        int i = Array.IndexOf(QapiNames, name);
        return i < 0 ? null : (Perm)(1 << i);
    }

    /// <summary>Compact form for diagnostics and test tables, e.g. <c>CR|W|RS</c>; <c>-</c> for none.</summary>
    public static string Short(Perm p) => (int)p is >= 0 and < 16 ? ShortNames[(int)p] : ShortOf(p);

    /// <summary>Every combination's short name, computed once (canonical states print thousands per second).</summary>
    private static readonly string[] ShortNames = [.. Enumerable.Range(0, 16).Select(i => ShortOf((Perm)i))];

    private static string ShortOf(Perm p)
    {
        if (p == Perm.None) return "-";
        var parts = new List<string>(BitCount);
        if ((p & Perm.ConsistentRead) != 0) parts.Add("CR");
        if ((p & Perm.Write) != 0) parts.Add("W");
        if ((p & Perm.WriteUnchanged) != 0) parts.Add("WU");
        if ((p & Perm.Resize) != 0) parts.Add("RS");
        return string.Join("|", parts);
    }

    /// <summary>Parses the compact form of <see cref="Short"/> (also accepts <c>ALL</c>).</summary>
    public static Perm ParseShort(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text is "-" or "") return Perm.None;
        if (text == "ALL") return Perm.All;
        Perm p = Perm.None;
        foreach (var part in text.Split('|'))
        {
            p |= part switch
            {
                "CR" => Perm.ConsistentRead,
                "W" => Perm.Write,
                "WU" => Perm.WriteUnchanged,
                "RS" => Perm.Resize,
                _ => throw new FormatException($"unknown permission '{part}' in '{text}'"),
            };
        }
        return p;
    }

    private static int Index(Perm bit)
    {
        int i = System.Numerics.BitOperations.TrailingZeroCount((int)bit);
        if (bit == Perm.None || ((int)bit & ((int)bit - 1)) != 0 || i >= BitCount)
            throw new ArgumentException($"not a single permission bit: {bit}", nameof(bit));
        return i;
    }
}
