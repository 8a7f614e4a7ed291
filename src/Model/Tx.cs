using System.Collections.Immutable;

namespace Verified.Model;

/// <summary>
/// The state inside a transaction: the graph as changed so far, the series' refresh list (nodes whose
/// perms must be recomputed, newest first as QEMU prepends), the generated-name counter (never rolled
/// back, as in QEMU) and the nodes to reopen read-only at commit (external snapshots).
/// </summary>
public sealed record Tx(Graph Graph, ImmutableList<string> RefreshList, long NameCounter, ImmutableList<string> ReadOnlyAtCommit)
{
    /// <summary>The graph the transaction started on: the committed state, whose file locks are held.</summary>
    public Graph Start { get; init; } = Graph;

    /// <summary>A transaction starting on <paramref name="g"/>.</summary>
    public static Tx Begin(Graph g, long nameCounter) => new(g, [], nameCounter, []) { Start = g };

    /// <summary>Adds a node to the refresh list (prepended; duplicates are harmless).</summary>
    public Tx NeedsRefresh(string node) => this with { RefreshList = RefreshList.Insert(0, node) };

    /// <summary>Replaces the graph.</summary>
    public Tx On(Graph g) => this with { Graph = g };
}
