using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// Option lookups shared by the real-I/O drivers, with QEMU's inheritance rules
/// (<c>bdrv_inherited_options</c>): a child created inline under a parent inherits the parent's
/// <c>cache.direct</c> and <c>cache.no-flush</c> unless it sets them, and defaults to
/// <c>discard=unmap</c> (the parent already applies its own policy); a node added on its own defaults
/// to <c>discard=ignore</c>.
/// </summary>
internal static class DriverOptions
{
    /// <summary>QEMU's sector: the unit of blkdebug's <c>sector</c> and of raw's size alignment.</summary>
    public const int SectorSize = 512;

    /// <summary>A <c>cache</c> member (<c>direct</c> or <c>no-flush</c>): own, else inherited, else false.</summary>
    public static bool CacheFlag(BlockNode node, string member)
    {
        for (var n = node; n is not null; n = n.InheritsFrom)
        {
            if (n.Options.TryGetValue("cache", out var json) && JsonNode.Parse(json) is JsonObject o
                && o.TryGetPropertyValue(member, out var v) && v is not null)
                return v.GetValue<bool>();
        }
        return false;
    }

    /// <summary>Whether discard requests reach this node's storage (BDRV_O_UNMAP).</summary>
    public static bool UnmapAllowed(BlockNode node) => node.Str("discard") switch
    {
        "unmap" or "on" => true,
        "ignore" or "off" => false,
        _ => node.InheritsFrom is not null,
    };

    /// <summary>An integer option, or null if absent.</summary>
    public static long? Int(BlockNode node, string key) =>
        node.Options.TryGetValue(key, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : null;

    /// <summary>A boolean option, or <paramref name="fallback"/> if absent.</summary>
    public static bool Bool(BlockNode node, string key, bool fallback) =>
        node.Options.TryGetValue(key, out var v) ? v == "true" : fallback;

    /// <summary>The I/O error a failed system call or .NET I/O exception stands for.</summary>
    public static BlockIOException IOError(int errno, string what) =>
        new(errno, $"{what}: {LinuxNative.ErrnoText(errno)}");

    /// <summary>Maps a .NET I/O exception to an errno (.NET on Unix carries the raw errno in HResult).</summary>
    public static int ErrnoOf(IOException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        const int maxErrno = 4095;
        return e is BlockIOException b ? b.Errno : e.HResult is > 0 and <= maxErrno ? e.HResult : Errnos.EIO;
    }

    /// <summary>Whether the edge holds a write-type permission (QEMU flushes only such children).</summary>
    public static bool Writes(BdrvChild c) => (c.Perm & (Perm.Write | Perm.WriteUnchanged)) != 0;
}
