using Verified.Vocabulary;

namespace Verified.Impl.Graph;

/// <summary>Who holds edges: a node, a device, an export or a job.</summary>
public interface IBlockParent
{
    /// <summary>How conflict messages describe this parent.</summary>
    string Description { get; }

    /// <summary>The name x-debug-query-block-graph gives this parent.</summary>
    string GraphName { get; }

    /// <summary>Whether node replacement leaves this parent's edges where they are (jobs).</summary>
    bool StaysAtNode { get; }
}

/// <summary>
/// A child edge (QEMU's BdrvChild). Mutable: replacement moves it to another node and refreshes
/// rewrite its perms, each change recorded in the running transaction so an abort restores it.
/// </summary>
public sealed class BdrvChild
{
    internal BdrvChild(long id, IBlockParent parent, string name, BlockNode node, Role role)
    {
        Id = id;
        Parent = parent;
        Name = name;
        Node = node;
        Role = role;
        Perm = Perm.None;
        Shared = Perm.All;
    }

    /// <summary>Creation stamp: orders a parent's children (newest first).</summary>
    public long Id { get; }

    /// <summary>The holder of the edge.</summary>
    public IBlockParent Parent { get; }

    /// <summary>The edge's name (<c>file</c>, <c>backing</c>, <c>root</c>, …).</summary>
    public string Name { get; }

    /// <summary>The child node (changes on replacement).</summary>
    public BlockNode Node { get; internal set; }

    /// <summary>What the child is for.</summary>
    public Role Role { get; }

    /// <summary>Permissions taken on the child.</summary>
    public Perm Perm { get; internal set; }

    /// <summary>Permissions left to the child's other parents.</summary>
    public Perm Shared { get; internal set; }

    /// <inheritdoc/>
    public override string ToString() => $"{Parent.GraphName} -{Name}-> {Node.Name} ({Perms.Short(Perm)}/{Perms.Short(Shared)})";
}
