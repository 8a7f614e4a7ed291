using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Every accepted difference between the implementation and the model, each with its reason and
/// issue. The target is an empty list; the oracle consults it before reporting a divergence.
/// </summary>
public static class KnownDivergences
{
    /// <summary>An accepted difference: which command it concerns and why it is accepted.</summary>
    public sealed record Divergence(string Command, string Reason, string Issue, Func<Command, Reply, Reply, bool> Applies);

    /// <summary>The list (empty: the implementation agrees with the model everywhere the oracle looks).</summary>
    public static IReadOnlyList<Divergence> All { get; } = [];

    /// <summary>The accepted divergence covering this step, if any.</summary>
    public static Divergence? Find(Command c, Reply model, Reply impl) => All.FirstOrDefault(d => d.Applies(c, model, impl));
}
