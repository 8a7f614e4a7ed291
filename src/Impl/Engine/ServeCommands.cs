using Verified.Impl.Graph;
using Verified.Impl.IO;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>
/// Commands a QMP daemon needs beyond the graph commands the model knows: <c>block_resize</c> and
/// <c>x-blockdev-set-iothread</c>. Neither changes the graph (block_resize's temporary parent is gone
/// when it returns), so the model need not learn them.
/// </summary>
public sealed partial class BlockEngine
{
    /// <summary>
    /// <c>block_resize</c> as QEMU 7.2 runs it: look the node up, refuse an op-blocked node (a backing
    /// file), check the size, attach a temporary anonymous parent taking <c>resize</c> and sharing all
    /// (so a parent that does not share resize refuses, with QEMU's conflict text), truncate, detach.
    /// </summary>
    /// <param name="device">A BlockBackend name (Verified has none by that name, as with -blockdev).</param>
    /// <param name="nodeName">The node to resize.</param>
    /// <param name="size">The new size in bytes.</param>
    public Reply BlockResize(string? device, string? nodeName, long size)
    {
        lock (graphLock)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (nodeName is null || !nodes.TryGetValue(nodeName, out var node))
                return Fail($"Cannot find device='{device ?? ""}' nor node-name='{nodeName ?? ""}'");
            // QEMU asks the op blocker without an error object and prints the (absent) device name.
            if (node.Parents.Any(e => e.Name == "backing" && e.Parent is BlockNode)) return Fail($"Device '{device ?? "(null)"}' is in use");
            if (size < 0) return Fail("Parameter 'size' expects a >0 size");
            using var drained = Io.Drain();
            var tran = new UndoLog();
            var parent = new ResizeParent(NextSeq(), Io);
            AttachRootEdge(tran, parent, node, Perm.Resize, Perm.All);
            var err = Rules.Refresher.Refresh([node], tran) ?? Truncate(node, size);
            // The temporary parent goes away whatever happened: undo its edge and its perms.
            tran.Abort();
            return err is null ? Reply.Ok() : new Reply(null, err);
        }
    }

    /// <summary>bdrv_co_truncate per driver: files truncate, raw passes through (unless fixed-size), others refuse as QEMU 7.2 does.</summary>
    private static QmpError? Truncate(BlockNode node, long size) => node.Driver switch
    {
        FileDriver f => f.Truncate(size),
        RawDriver when node.Options.ContainsKey("size") => QmpError.Generic("Cannot resize fixed-size raw disks"),
        RawDriver r when node.Child("file") is { } file => size > long.MaxValue - r.Offset
            ? QmpError.Generic("Disk size too large for the chosen offset")
            : Truncate(file.Node, size + r.Offset),
        _ => QmpError.Generic("Image format driver does not support resize"),
    };

    /// <summary>
    /// <c>x-blockdev-set-iothread</c>: QEMU's checks (node, BlockBackend without force, iothread
    /// object). Verified runs every node in one context, so an accepted move changes nothing visible.
    /// </summary>
    public Reply SetIothread(string nodeName, string? iothread, bool force)
    {
        ArgumentNullException.ThrowIfNull(nodeName);
        lock (graphLock)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (!nodes.TryGetValue(nodeName, out var node)) return Fail($"Failed to find node with node-name='{nodeName}'");
            if (!force && node.Parents.Any(e => e.Parent is RootParent))
                return Fail($"Node {nodeName} is associated with a BlockBackend and could be in use (use force=true to override this check)");
            if (iothread is not null && !(objects.TryGetValue(iothread, out var o) && o.Type == "iothread"))
                return Fail($"Cannot find iothread {iothread}");
            return Reply.Ok();
        }
    }

    private static Reply Fail(string desc) => new(null, QmpError.Generic(desc));

    /// <summary>block_resize's temporary BlockBackend: anonymous, takes resize, shares everything.</summary>
    private sealed class ResizeParent(long seq, IO.IoGate gate) : RootParent("", seq, gate)
    {
        public override string Description => "an unnamed block device";

        public override string GraphName => "";

        public override (Perm Perm, Perm Shared) Wants => (Perm.Resize, Perm.All);
    }
}
