using Verified.Vocabulary;

namespace Verified.Impl.Graph;

/// <summary>A root parent: a device, an export or a job, holding at most one edge to a node.</summary>
public abstract class RootParent : IBlockParent
{
    internal RootParent(string id, long seq)
    {
        Id = id;
        Seq = seq;
    }

    /// <summary>The parent's id.</summary>
    public string Id { get; }

    /// <summary>Creation stamp.</summary>
    public long Seq { get; }

    /// <summary>The edge to the node, or null when empty.</summary>
    public BdrvChild? Root { get; internal set; }

    /// <inheritdoc/>
    public abstract string Description { get; }

    /// <inheritdoc/>
    public abstract string GraphName { get; }

    /// <inheritdoc/>
    public virtual bool StaysAtNode => false;

    /// <summary>The perms this parent takes and shares.</summary>
    public abstract (Perm Perm, Perm Shared) Wants { get; }
}

/// <summary>A guest device model: a block device (virtio-blk-pci, scsi-hd) or a SCSI controller.</summary>
public sealed class DeviceParent : RootParent
{
    internal DeviceParent(string id, string model, bool shareRw, bool readOnly, long seq) : base(id, seq)
    {
        Model = model;
        ShareRw = shareRw;
        ReadOnly = readOnly;
    }

    /// <summary>The device model.</summary>
    public string Model { get; }

    /// <summary>The share-rw property.</summary>
    public bool ShareRw { get; }

    /// <summary>Read-only because its node was read-only when it was attached.</summary>
    public bool ReadOnly { get; }

    /// <summary>True for block devices (a controller has no drive).</summary>
    public bool IsBlock => Model is "virtio-blk-pci" or "scsi-hd";

    /// <inheritdoc/>
    public override string GraphName => Model == "virtio-blk-pci" ? $"/machine/peripheral/{Id}/virtio-backend" : Id;

    /// <inheritdoc/>
    public override string Description => $"block device '{GraphName}'";

    /// <inheritdoc/>
    public override (Perm Perm, Perm Shared) Wants =>
        (ReadOnly ? Perm.ConsistentRead : Perm.ConsistentRead | Perm.Write,
         ShareRw ? Perm.All : Perm.ConsistentRead | Perm.WriteUnchanged | Perm.Resize);
}

/// <summary>An NBD export.</summary>
public sealed class ExportParent : RootParent
{
    internal ExportParent(string id, string exportName, bool writable, string? description, ValueList<string> bitmaps, long seq) : base(id, seq)
    {
        ExportName = exportName;
        Writable = writable;
        ExportDescription = description;
        Bitmaps = bitmaps;
    }

    /// <summary>The name NBD clients ask for.</summary>
    public string ExportName { get; }

    /// <summary>Whether clients may write.</summary>
    public bool Writable { get; }

    /// <summary>The description shown to clients.</summary>
    public string? ExportDescription { get; }

    /// <summary>Bitmaps exported as meta contexts.</summary>
    public ValueList<string> Bitmaps { get; }

    /// <inheritdoc/>
    public override string GraphName => Id;

    /// <inheritdoc/>
    public override string Description => "an unnamed block device";

    /// <inheritdoc/>
    public override (Perm Perm, Perm Shared) Wants =>
        (Writable ? Perm.ConsistentRead | Perm.Write : Perm.ConsistentRead, Perm.ConsistentRead | Perm.Write | Perm.WriteUnchanged);
}
