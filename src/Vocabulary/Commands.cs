namespace Verified.Vocabulary;

/// <summary>
/// A parsed QMP command of the block layer. The same records are executed by the model and by the
/// implementation; <see cref="CommandParser"/> builds them from QMP JSON and <c>ToQmp</c>
/// writes them back, so any sequence can be replayed against real QEMU.
/// </summary>
public abstract record Command
{
    /// <summary>The QMP command name (or transaction action type).</summary>
    public abstract string Name { get; }
}

/// <summary><c>blockdev-add</c>: open a node tree without a permission update until the refresh.</summary>
public sealed record BlockdevAdd(BlockdevOptions Options) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-add";
}

/// <summary><c>blockdev-del</c>: drop the monitor's reference to a node.</summary>
public sealed record BlockdevDel(string NodeName) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-del";
}

/// <summary>Which parent's child <c>x-blockdev-replace</c> moves.</summary>
public abstract record ReplaceParent;

/// <summary>The child named <paramref name="Child"/> of node <paramref name="NodeName"/> (parent-type <c>driver</c>).</summary>
public sealed record ReplaceDriverParent(string NodeName, string Child) : ReplaceParent;

/// <summary>The root child of a device, by id or QOM path (parent-type <c>qdev</c>).</summary>
public sealed record ReplaceQdevParent(string QdevId) : ReplaceParent;

/// <summary>The root child of a block export (parent-type <c>export</c>).</summary>
public sealed record ReplaceExportParent(string ExportId) : ReplaceParent;

/// <summary><c>x-blockdev-replace</c> (the series): point one parent's child edge at another node.</summary>
public sealed record BlockdevReplace(ReplaceParent Parent, string NewChild) : Command
{
    /// <inheritdoc/>
    public override string Name => "x-blockdev-replace";
}

/// <summary><c>blockdev-reopen</c>: change options (read-only, file, backing) of nodes atomically.</summary>
public sealed record BlockdevReopen(ValueList<BlockdevOptions> Options) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-reopen";
}

/// <summary><c>transaction</c>: actions run atomically.</summary>
public sealed record Transaction(ValueList<Command> Actions, string CompletionMode) : Command
{
    /// <inheritdoc/>
    public override string Name => "transaction";
}

/// <summary><c>abort</c> transaction action: always fails.</summary>
public sealed record AbortAction : Command
{
    /// <inheritdoc/>
    public override string Name => "abort";
}

/// <summary><c>device_add</c> of a block device (virtio-blk-pci, scsi-hd) or a SCSI controller.</summary>
public sealed record DeviceAdd(string Driver, string Id, string? Drive, bool ShareRw) : Command
{
    /// <inheritdoc/>
    public override string Name => "device_add";
}

/// <summary><c>device_del</c>.</summary>
public sealed record DeviceDel(string Id) : Command
{
    /// <inheritdoc/>
    public override string Name => "device_del";
}

/// <summary><c>qom-set</c> (Verified supports a device's <c>drive</c> property).</summary>
public sealed record QomSet(string Path, string Property, string ValueJson) : Command
{
    /// <inheritdoc/>
    public override string Name => "qom-set";
}

/// <summary><c>qom-get</c> (a device's <c>drive</c>).</summary>
public sealed record QomGet(string Path, string Property) : Command
{
    /// <inheritdoc/>
    public override string Name => "qom-get";
}

/// <summary><c>nbd-server-start</c>; the address is kept as given.</summary>
public sealed record NbdServerStart(string AddrJson) : Command
{
    /// <inheritdoc/>
    public override string Name => "nbd-server-start";
}

/// <summary><c>nbd-server-stop</c>.</summary>
public sealed record NbdServerStop : Command
{
    /// <inheritdoc/>
    public override string Name => "nbd-server-stop";
}

/// <summary><c>block-export-add</c> of type nbd (and <c>nbd-server-add</c>, which maps to it).</summary>
public sealed record BlockExportAdd(string Id, string NodeName, string? ExportName, bool Writable, string? Description,
    ValueList<string> Bitmaps, bool AllocationDepth) : Command
{
    /// <inheritdoc/>
    public override string Name => "block-export-add";
}

/// <summary><c>block-export-del</c>.</summary>
public sealed record BlockExportDel(string Id, string Mode) : Command
{
    /// <inheritdoc/>
    public override string Name => "block-export-del";
}

/// <summary><c>object-add</c> (throttle-group, iothread); properties kept as canonical JSON.</summary>
public sealed record ObjectAdd(string QomType, string Id, ValueMap<string> Props) : Command
{
    /// <inheritdoc/>
    public override string Name => "object-add";
}

/// <summary><c>object-del</c>.</summary>
public sealed record ObjectDel(string Id) : Command
{
    /// <inheritdoc/>
    public override string Name => "object-del";
}

/// <summary><c>blockdev-snapshot</c>: make <paramref name="Overlay"/> the new top over <paramref name="Node"/>.</summary>
public sealed record BlockdevSnapshot(string Node, string Overlay) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-snapshot";
}

/// <summary><c>blockdev-snapshot-sync</c>: create an overlay image file and append it.</summary>
public sealed record BlockdevSnapshotSync(string? Device, string? NodeName, string SnapshotFile, string? SnapshotNodeName,
    string Format, string Mode) : Command
{
    /// <inheritdoc/>
    public override string Name => "blockdev-snapshot-sync";
}

/// <summary>A bitmap named in a merge: <c>name</c> on the target's node, or <c>{node, name}</c>.</summary>
public sealed record BitmapRef(string? Node, string Name);

/// <summary>The block-dirty-bitmap commands and actions.</summary>
public enum BitmapOp
{
    /// <summary>block-dirty-bitmap-add</summary>
    Add,
    /// <summary>block-dirty-bitmap-remove</summary>
    Remove,
    /// <summary>block-dirty-bitmap-clear</summary>
    Clear,
    /// <summary>block-dirty-bitmap-enable</summary>
    Enable,
    /// <summary>block-dirty-bitmap-disable</summary>
    Disable,
    /// <summary>block-dirty-bitmap-merge</summary>
    Merge,
}

/// <summary>A block-dirty-bitmap command: <c>Bitmap</c> is the bitmap named (for merge, the target); unused fields keep defaults.</summary>
public sealed record BitmapCommand(BitmapOp Op, string Node, string Bitmap, long? Granularity = null, bool Persistent = false,
    bool Disabled = false, ValueList<BitmapRef>? Sources = null) : Command
{
    /// <inheritdoc/>
    public override string Name => "block-dirty-bitmap-" + Op.ToString().ToLowerInvariant();
}

/// <summary><c>x-blockdev-change</c>: add or remove a child of a quorum node (<paramref name="Child"/> xor <paramref name="Node"/>).</summary>
public sealed record BlockdevChange(string Parent, string? Child, string? Node) : Command
{
    /// <inheritdoc/>
    public override string Name => "x-blockdev-change";
}

/// <summary>The query commands the model answers; <paramref name="Flat"/> is query-named-block-nodes' <c>flat</c> (no backing-image chains).</summary>
public sealed record Query(string Command, bool Flat = false) : Command
{
    /// <inheritdoc/>
    public override string Name => Command;
}
