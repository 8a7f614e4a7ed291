using System.Text.Json.Nodes;
using Verified.Impl.Graph;

namespace Verified.Impl.IO;

/// <summary>
/// Implemented by drivers that store data on the host (file): the bytes the host has allocated for it,
/// QEMU's <c>actual-size</c> (<c>bdrv_get_allocated_file_size</c>).
/// </summary>
public interface IAllocatedSize
{
    /// <summary>Allocated bytes, or null when the host cannot tell.</summary>
    long? AllocatedBytes { get; }
}

/// <summary>
/// Implemented by format drivers that answer QEMU's <c>bdrv_get_info</c> and <c>bdrv_get_specific_info</c>
/// (qcow2): what <c>query-named-block-nodes</c> shows of the image itself.
/// </summary>
public interface IFormatFacts
{
    /// <summary>The cluster size, or 0 when the format has none.</summary>
    long ClusterSize { get; }

    /// <summary>Whether the image is marked dirty (in use without a clean close).</summary>
    bool Dirty { get; }

    /// <summary>The <c>format-specific</c> member (<c>{"type": …, "data": …}</c>), or null.</summary>
    JsonObject? FormatSpecific { get; }

    /// <summary>The backing file name the image header records, or null.</summary>
    string? HeaderBackingFile { get; }

    /// <summary>The backing format the image header records, or null.</summary>
    string? HeaderBackingFormat { get; }
}

/// <summary>A dirty bitmap a driver keeps for itself (unnamed in QEMU's listings): where it lives and what it counts.</summary>
/// <param name="On">The node the bitmap is attached to.</param>
/// <param name="Granularity">Bytes per bit.</param>
/// <param name="Count">Dirty bytes (set bits times the granularity).</param>
/// <param name="Stamp">Creation order among all bitmaps (<see cref="BitmapStamps"/>).</param>
/// <param name="Recording">Whether it records writes (copy-before-write's do not; a mirror's does).</param>
public sealed record HiddenBitmap(BlockNode On, long Granularity, long Count, long Stamp, bool Recording = false);

/// <summary>Implemented by drivers and jobs that keep internal dirty bitmaps (copy-before-write's copy, done and access bitmaps; a mirror's dirty bitmap).</summary>
public interface IHiddenBitmaps
{
    /// <summary>The driver's bitmaps as they are now.</summary>
    IEnumerable<HiddenBitmap> HiddenBitmaps { get; }
}

/// <summary>Creation stamps shared by named and hidden bitmaps, so listings can interleave them newest first as QEMU does.</summary>
public static class BitmapStamps
{
    private static long next;

    /// <summary>A fresh stamp, larger than every earlier one.</summary>
    public static long Next() => Interlocked.Increment(ref next);
}

/// <summary>
/// Implemented by format drivers that store persistent dirty bitmaps in their image (qcow2): QEMU's
/// <c>bdrv_can_store_new_dirty_bitmap</c> and <c>bdrv_remove_persistent_dirty_bitmap</c>. Loading (at open)
/// and storing (at close) are the driver's own business.
/// </summary>
public interface IPersistentBitmaps
{
    /// <summary>Why a new persistent bitmap of this name and granularity could not be stored, in QEMU's words, or null.</summary>
    string? CanStoreNewBitmap(string name, long granularity);

    /// <summary>Removes the bitmap from the image if it is stored there (absence is no error); QEMU's error text on failure.</summary>
    string? RemoveStoredBitmap(string name);

    /// <summary>The node is about to become read-only: its persistent bitmaps are stored and become read-only.</summary>
    void ReopeningReadOnly();

    /// <summary>The node has become writable again: its stored bitmaps are marked in use and become writable.</summary>
    void ReopenedWritable();
}
