using System.Collections.Immutable;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>What a transaction does when it commits, in QEMU's commit or clean phase.</summary>
public abstract record Finish;

/// <summary>Delete the node if nothing references it any more (<c>bdrv_unref_tran</c>'s commit, or a clean-phase unref).</summary>
public sealed record DeleteIfUnreferenced(string Node) : Finish;

/// <summary>Reopen the node read-only, ignoring failure (external snapshot's commit on the old top).</summary>
public sealed record ReopenReadOnly(string Node) : Finish;

/// <summary>
/// The state inside a transaction: the graph as changed so far, the series' refresh list (nodes whose
/// perms must be recomputed, newest first as QEMU prepends), the generated-name counter (never rolled
/// back, as in QEMU), and what to do at commit: <paramref name="Commits"/> then <paramref name="Cleans"/>,
/// each list run newest first as QEMU's tran_commit runs its actions.
/// </summary>
public sealed record Tx(Graph Graph, ImmutableList<string> RefreshList, long NameCounter, ImmutableList<Finish> Commits, ImmutableList<Finish> Cleans)
{
    /// <summary>The graph the transaction started on: the committed state, whose file locks are held.</summary>
    public Graph Start { get; init; } = Graph;

    /// <summary>
    /// The lock bytes file nodes hold during this transaction: the starting graph's, plus every refresh
    /// point's new ones (QEMU keeps both until commit or abort). Null until the first refresh point.
    /// </summary>
    public ImmutableDictionary<string, (Perm Perm, Perm Unshared)>? Held { get; init; }

    /// <summary>The held lock bytes as a working copy for a refresh.</summary>
    public Dictionary<string, (Perm Perm, Perm Unshared)> HeldLocks() =>
        Held is null ? FileLocks.Held(Start) : new Dictionary<string, (Perm, Perm)>(Held, StringComparer.Ordinal);

    /// <summary>What the transaction knows of node lengths (blockdev-backup's size check); null when unknown.</summary>
    public Func<string, long?> Lengths { get; init; } = _ => null;

    /// <summary>Whether snapshot reads of cluster N of the copy-before-write node stamped S come from its target (a guest write went through it; data, outside the graph).</summary>
    public Func<long, long, bool> Copied { get; init; } = (_, _) => false;

    /// <summary>A transaction starting on <paramref name="g"/>.</summary>
    public static Tx Begin(Graph g, long nameCounter) => new(g, [], nameCounter, [], []) { Start = g };

    /// <summary>Adds a node to the refresh list (prepended; duplicates are harmless).</summary>
    public Tx NeedsRefresh(string node) => this with { RefreshList = RefreshList.Insert(0, node) };

    /// <summary>Replaces the graph.</summary>
    public Tx On(Graph g) => this with { Graph = g };
}
