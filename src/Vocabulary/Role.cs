namespace Verified.Vocabulary;

/// <summary>Child roles (QEMU's <c>BDRV_CHILD_*</c>): what a child edge is for.</summary>
[Flags]
public enum Role : byte
{
    /// <summary>No role (invalid on a real edge).</summary>
    None = 0,
    /// <summary>The child holds guest-visible data.</summary>
    Data = 1,
    /// <summary>The child holds the parent's metadata.</summary>
    Metadata = 2,
    /// <summary>The parent is a filter over this child.</summary>
    Filtered = 4,
    /// <summary>The child is a copy-on-write backing image.</summary>
    Cow = 8,
    /// <summary>The parent's primary child.</summary>
    Primary = 16,
    /// <summary>A format driver's image file: DATA | METADATA | PRIMARY.</summary>
    Image = Data | Metadata | Primary,
}

/// <summary>Role helpers.</summary>
public static class Roles
{
    /// <summary>
    /// QEMU's structural rule for a role: at least one of DATA/METADATA/FILTERED/COW; FILTERED excludes
    /// DATA, METADATA and COW; COW excludes DATA, METADATA, FILTERED and PRIMARY.
    /// </summary>
    public static bool IsWellFormed(Role r)
    {
        if ((r & (Role.Data | Role.Metadata | Role.Filtered | Role.Cow)) == 0) return false;
        if ((r & Role.Filtered) != 0 && (r & (Role.Data | Role.Metadata | Role.Cow)) != 0) return false;
        if ((r & Role.Cow) != 0 && (r & (Role.Data | Role.Metadata | Role.Filtered | Role.Primary)) != 0) return false;
        return true;
    }

    /// <summary>Compact form, e.g. <c>DATA|PRIMARY</c>.</summary>
    public static string Short(Role r) => (int)r is >= 0 and < 32 ? ShortNames[(int)r] : ShortOf(r);

    /// <summary>Every combination's short name, computed once.</summary>
    private static readonly string[] ShortNames = [.. Enumerable.Range(0, 32).Select(i => ShortOf((Role)i))];

    private static string ShortOf(Role r)
    {
        var parts = new List<string>(5);
        if ((r & Role.Data) != 0) parts.Add("DATA");
        if ((r & Role.Metadata) != 0) parts.Add("METADATA");
        if ((r & Role.Filtered) != 0) parts.Add("FILTERED");
        if ((r & Role.Cow) != 0) parts.Add("COW");
        if ((r & Role.Primary) != 0) parts.Add("PRIMARY");
        return parts.Count == 0 ? "-" : string.Join("|", parts);
    }
}
