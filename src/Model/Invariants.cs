using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// The invariants every committed graph satisfies, numbered as in <c>spec/invariants.md</c>. Returns the
/// violations as readable lines; an empty list means the graph is consistent.
/// </summary>
public static class Invariants
{
    /// <summary>Checks I1…I12 on <paramref name="g"/>.</summary>
    public static IReadOnlyList<string> Check(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        var v = new List<string>();
        foreach (var n in g.Nodes.Values)
        {
            if (g.ChildrenOf(n.Name).Any(e => g.Reaches(e.Child, n.Name))) v.Add($"I1 acyclic: '{n.Name}' reaches itself");
            if (n.AutoNamed ? !n.Name.StartsWith("#block", StringComparison.Ordinal)
                : !Names.IsWellFormed(n.Name) || n.Name.Length > Names.NodeNameLengthMax) v.Add($"I2 names: bad node-name '{n.Name}'");
            if (g.RefCount(n.Name) < 1) v.Add($"I7 ownership: '{n.Name}' is unreferenced");
            if (n.AutoNamed && n.MonitorOwned) v.Add($"I8 inline: generated '{n.Name}' is monitor-owned");
            if (n.Driver == "throttle" && !g.Objects.ContainsKey(n.Str("throttle-group") ?? "")) v.Add($"I9 throttle: '{n.Name}' has no group");
            if (n.Bitmaps.Select(b => b.Name).Distinct().Count() != n.Bitmaps.Count) v.Add($"I12 bitmaps: duplicate on '{n.Name}'");
            CheckChildren(g, n, v);
            var conflict = Permissions.Conflict(g, n.Name);
            if (conflict is not null) v.Add($"I5 sharing: {conflict.Desc}");
            var (perm, shared) = Permissions.Cumulative(g, n.Name);
            if (!n.Writable && (perm & (Perm.Write | Perm.WriteUnchanged)) != 0) v.Add($"I6 read-only: '{n.Name}' has writers");
        }
        if (FileLocks.CheckAll(g) is { } lockErr) v.Add($"I10 locks: {lockErr.Desc}");
        foreach (var e in g.Edges) CheckEdge(g, e, v);
        return v;
    }

    private static void CheckChildren(Graph g, Node n, List<string> v)
    {
        var children = g.ChildrenOf(n.Name).ToList();
        if (children.Select(e => e.Name).Distinct().Count() != children.Count) v.Add($"I3 edges: '{n.Name}' has two children of one name");
        foreach (var role in new[] { Role.Filtered, Role.Cow, Role.Primary })
        {
            if (children.Count(e => (e.Role & role) != 0) > 1) v.Add($"I11 roles: '{n.Name}' has two {Roles.Short(role)} children");
        }
    }

    private static void CheckEdge(Graph g, Edge e, List<string> v)
    {
        if (g.Find(e.Child) is null) { v.Add($"I3 edges: edge {e.Id} points to missing '{e.Child}'"); return; }
        // A job's edges have no role (QEMU's child_job attaches with role 0); every other edge has a well-formed one.
        if (e.Parent is JobParent ? e.Role != Role.None : !Roles.IsWellFormed(e.Role)) v.Add($"I3 edges: edge {e.Id} has role {Roles.Short(e.Role)}");
        (Perm, Perm)? expected = e.Parent switch
        {
            NodeParent np when g.Find(np.Node) is { } p => Drivers.ChildPerm(g, p, e, Permissions.Cumulative(g, np.Node).Perm, Permissions.Cumulative(g, np.Node).Shared),
            DeviceParent dp when g.Devices.TryGetValue(dp.Id, out var d) => Devices.Perms(d),
            ExportParent ep when g.Exports.TryGetValue(ep.Id, out var x) => Exports.Perms(x.Writable),
            JobParent jp when g.Jobs.ContainsKey(jp.Id) => (e.Perm, e.Shared),
            _ => null,
        };
        if (expected is null) { v.Add($"I3 edges: edge {e.Id} has a missing parent {e.Parent}"); return; }
        if (e.Parent is DeviceParent or ExportParent && (e.Name != "root" || g.ChildrenOf(e.Parent).Count() != 1))
            v.Add($"I3 edges: root parent {e.Parent} must have exactly one 'root' edge");
        // A backup job holds its filter as 'main node' and its target as 'target', taking nothing and sharing all.
        if (e.Parent is JobParent && (e.Name is not ("main node" or "target") || e.Perm != Perm.None || e.Shared != Perm.All))
            v.Add($"I3 edges: job edge {e.Id} '{e.Name}' must be 'main node' or 'target' with -/ALL");
        var (p2, s2) = expected.Value;
        if (p2 != e.Perm || s2 != e.Shared)
            v.Add($"I4 rule: {g.GraphName(e.Parent)} -{e.Name}-> {e.Child} holds {Perms.Short(e.Perm)}/{Perms.Short(e.Shared)}, rule says {Perms.Short(p2)}/{Perms.Short(s2)}");
    }
}
