using Verified.Vocabulary;

namespace Verified.Impl.Graph;

/// <summary>
/// A root parent: a device, an export or a job, holding at most one edge to a node. Its I/O methods
/// are the way requests enter the graph: each is admitted by the engine's gate (so graph changes can
/// drain them) and refused with EPERM when the parent has not taken the permission it needs.
/// </summary>
public abstract class RootParent : IBlockParent
{
    private protected readonly IO.IoGate gate;

    internal RootParent(string id, long seq, IO.IoGate gate)
    {
        Id = id;
        Seq = seq;
        this.gate = gate;
    }

    /// <summary>The size of the node attached (0 when empty).</summary>
    public long Length => Root?.Node.Length ?? 0;

    /// <summary>Reads through the attached node.</summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            await Attached(Perm.None).ReadAsync(offset, buffer).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>Writes through the attached node (needs the write permission).</summary>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, IO.WriteFlags flags = IO.WriteFlags.None)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            await Attached(Perm.Write).WriteAsync(offset, data, flags).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>Writes zeroes through the attached node (needs the write permission).</summary>
    public async ValueTask WriteZeroesAsync(long offset, long length, IO.WriteFlags flags = IO.WriteFlags.None)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            await Attached(Perm.Write).WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>Discards through the attached node (needs the write permission).</summary>
    public async ValueTask DiscardAsync(long offset, long length)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            await Attached(Perm.Write).DiscardAsync(offset, length).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>What the attached node holds at a range (hole, zeroes) and for how many bytes.</summary>
    public async ValueTask<IO.RangeStatus> StatusAsync(long offset, long length)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            return await Attached(Perm.None).StatusAsync(offset, length).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>How deep in the attached node's backing chain a range is allocated, and for how many bytes.</summary>
    public async ValueTask<(int Depth, long Bytes)> AllocationDepthAsync(long offset, long length)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            return await Attached(Perm.None).AllocationDepthAsync(offset, length).ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>Flushes the attached node.</summary>
    public async ValueTask FlushAsync()
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            if (Root is { } r) await r.Node.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            gate.Exit();
        }
    }

    private BlockNode Attached(Perm needed)
    {
        var root = Root ?? throw new IO.BlockIOException(IO.Errnos.EIO, $"'{Id}' has no medium");
        if ((root.Perm & needed) != needed) throw new IO.BlockIOException(IO.Errnos.EPERM, $"'{Id}' may not {Perms.DisplayText(needed)}");
        return root.Node;
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
    internal DeviceParent(string id, string model, bool shareRw, bool readOnly, long seq, IO.IoGate gate) : base(id, seq, gate)
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
    internal ExportParent(string id, string exportName, bool writable, string? description, ValueList<string> bitmaps, long seq, IO.IoGate gate) : base(id, seq, gate)
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

    /// <summary>
    /// The size clients are told, fixed when the export is added (as QEMU's exp->size): an export never
    /// shares resize, and a replace that moves it onto another node does not change what clients were told.
    /// Read without the graph's lock, unlike <see cref="RootParent.Length"/>, which may be caught mid-change.
    /// </summary>
    public long Size { get; init; }

    /// <summary>The node whose bitmaps <see cref="Bitmaps"/> name (the node exported, when it was added); they are busy while the export lives.</summary>
    public BlockNode? BitmapNode { get; init; }

    /// <summary>Whether clients may ask for the <c>qemu:allocation-depth</c> meta context.</summary>
    public bool AllocationDepth { get; init; }

    /// <summary>
    /// Whether the range is dirty in exported bitmap <paramref name="bitmap"/> of <see cref="BitmapNode"/>,
    /// and for how many bytes; admitted like I/O, so a clear or merge (run drained) is never seen half done.
    /// </summary>
    public async ValueTask<(bool Dirty, long Bytes)> DirtyStatusAsync(string bitmap, long offset, long length)
    {
        await gate.EnterAsync().ConfigureAwait(false);
        try
        {
            var bits = BitmapNode?.Bitmaps.FirstOrDefault(b => b.Name == bitmap)?.Bits
                ?? throw new IO.BlockIOException(IO.Errnos.EINVAL, $"bitmap '{bitmap}' is gone");
            return bits.Status(offset, length);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <inheritdoc/>
    public override string GraphName => Id;

    /// <inheritdoc/>
    public override string Description => "an unnamed block device";

    /// <inheritdoc/>
    public override (Perm Perm, Perm Shared) Wants =>
        (Writable ? Perm.ConsistentRead | Perm.Write : Perm.ConsistentRead, Perm.ConsistentRead | Perm.Write | Perm.WriteUnchanged);
}
