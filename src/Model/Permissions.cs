using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// Permission arithmetic: cumulative parent perms, QEMU's default child rules (filter, backing,
/// storage), and the pairwise sharing rule with QEMU's exact conflict message.
/// </summary>
public static class Permissions
{
    /// <summary>DEFAULT_PERM_PASSTHROUGH: every bit (4 bits since GRAPH_MOD was dropped).</summary>
    public const Perm Passthrough = Perm.All;

    /// <summary>DEFAULT_PERM_UNCHANGED: ALL minus PASSTHROUGH, i.e. nothing.</summary>
    public const Perm Unchanged = Perm.All & ~Passthrough;

    /// <summary>
    /// OR of the perms and AND of the shared perms over the node's parent edges; (0, ALL) without
    /// parents (<c>bdrv_get_cumulative_perm</c>).
    /// </summary>
    public static (Perm Perm, Perm Shared) Cumulative(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        Perm perm = Perm.None, shared = Perm.All;
        foreach (var e in g.ParentsOf(node))
        {
            perm |= e.Perm;
            shared &= e.Shared;
        }
        return (perm, shared);
    }

    /// <summary>The filter rule: pass the parents' needs straight through.</summary>
    public static (Perm, Perm) Filter(Perm perm, Perm shared) => (perm & Passthrough, (shared & Passthrough) | Unchanged);

    /// <summary>The backing (COW) rule: only consistent read is forwarded; writers are tolerated when the parents tolerate them.</summary>
    public static (Perm, Perm) Backing(Perm perm, Perm shared)
    {
        var nshared = Perm.ConsistentRead | Perm.WriteUnchanged;
        if ((shared & Perm.Write) != 0) nshared |= Perm.Write | Perm.Resize;
        return (perm & Perm.ConsistentRead, nshared);
    }

    /// <summary>The storage rule for DATA and/or METADATA children of a format node.</summary>
    public static (Perm, Perm) Storage(Role role, bool parentWritable, Perm perm, Perm shared)
    {
        var (p, s) = Filter(perm, shared);
        if ((role & Role.Metadata) != 0)
        {
            // A format driver may rewrite metadata even when no parent writes.
            if (parentWritable) p |= Perm.Write | Perm.Resize;
            p |= Perm.ConsistentRead;
            s &= ~(Perm.Write | Perm.Resize);
        }
        if ((role & Role.Data) != 0)
        {
            s &= ~Perm.Resize;
            if ((p & Perm.WriteUnchanged) != 0) p |= Perm.Write;
            if ((p & Perm.Write) != 0) p |= Perm.Resize;
        }
        return (p, s);
    }

    /// <summary><c>bdrv_default_perms</c>: dispatch on the child's role.</summary>
    public static (Perm, Perm) Default(Role role, bool parentWritable, Perm perm, Perm shared)
    {
        if ((role & Role.Filtered) != 0) return Filter(perm, shared);
        if ((role & Role.Cow) != 0) return Backing(perm, shared);
        if ((role & (Role.Data | Role.Metadata)) != 0) return Storage(role, parentWritable, perm, shared);
        throw new ArgumentOutOfRangeException(nameof(role), role, "a child role needs DATA, METADATA, FILTERED or COW");
    }

    /// <summary>
    /// The first pair (a, b) of distinct parent edges of <paramref name="node"/> where b needs something
    /// a does not share, scanning a then b newest first (<c>bdrv_parent_perms_conflict</c>), as QEMU's message.
    /// </summary>
    public static QmpError? Conflict(Graph g, string node)
    {
        ArgumentNullException.ThrowIfNull(g);
        var parents = g.ParentsOf(node).ToList();
        foreach (var a in parents)
        {
            foreach (var b in parents)
            {
                if (ReferenceEquals(a, b) || b.Perm.SubsetOf(a.Shared)) continue;
                return Results.Fail(ConflictText(g, node, a, b));
            }
        }
        return null;
    }

    /// <summary>QEMU's permission-conflict text: b requires what a unshares.</summary>
    public static string ConflictText(Graph g, string node, Edge a, Edge b)
    {
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return $"Permission conflict on node '{node}': permissions '{Perms.DisplayText(b.Perm & ~a.Shared)}' are both required by "
            + $"{g.Describe(b.Parent)} (uses node '{node}' as '{b.Name}' child) and unshared by {g.Describe(a.Parent)} "
            + $"(uses node '{node}' as '{a.Name}' child).";
    }
}
