using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Proofs;

/// <summary>
/// The SMT-LIB2 statement of the permission rules (<c>Smt2/rules.smt2</c>, written from QEMU's rules
/// apart from the C# model) and the table saying which rule governs an edge. Together with the solver
/// they are what a Z3 verdict trusts.
/// </summary>
public static class SmtRules
{
    private static readonly Lazy<string> PreludeText = new(() =>
    {
        using var s = typeof(SmtRules).Assembly.GetManifestResourceStream("Verified.Proofs.rules.smt2")
            ?? throw new InvalidOperationException("rules.smt2 is not embedded");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    });

    /// <summary>The definitions every query starts with.</summary>
    public static string Prelude => PreludeText.Value;

    /// <summary>A permission set as an SMT bit-vector literal.</summary>
    public static string Literal(Perm p) => $"#x{(int)p:x1}";

    /// <summary>An SMT boolean literal.</summary>
    public static string Literal(bool b) => b ? "true" : "false";

    /// <summary>
    /// The SMT terms for the perm and shared perm that <paramref name="parent"/> takes on <paramref name="edge"/>,
    /// given terms for its cumulative perms and for "has a parent" (before the child's force-share).
    /// </summary>
    public static (string Perm, string Shared) ChildRule(Node parent, Edge edge, string p, string s, string hasParents)
    {
        ArgumentNullException.ThrowIfNull(parent);
        ArgumentNullException.ThrowIfNull(edge);
        string Call(string rule) => $"({rule}-perm {p} {s})";
        string CallS(string rule) => $"({rule}-shared {p} {s})";
        var role = edge.Role;
        switch (parent.Driver)
        {
            case "snapshot-access":
                return (Call("snapacc"), CallS("snapacc"));
            case "copy-on-read":
                return (Call("cor"), CallS("cor"));
            case "preallocate":
                return (Call("prealloc"), CallS("prealloc"));
            case "blkdebug":
                return ($"(blkdebug-perm {p} {s} {Literal(PermOption(parent, "take-child-perms"))})",
                        $"(blkdebug-shared {p} {s} {Literal(PermOption(parent, "unshare-child-perms"))})");
            case "copy-before-write" when (role & Role.Filtered) == 0:
                return (Call("cbw-target"), CallS("cbw-target"));
            case "copy-before-write" when parent.Str("x-perm-scheme") == "upstream":
                return ($"(cbw-upstream-perm {p} {s} {hasParents})", $"(cbw-upstream-shared {p} {s} {hasParents})");
            case "copy-before-write":
                return (Call("cbw-strict"), CallS("cbw-strict"));
        }
        if ((role & Role.Filtered) != 0) return (Call("filter"), CallS("filter"));
        if ((role & Role.Cow) != 0) return (Call("backing"), CallS("backing"));
        if (parent.Driver == "raw") return (Call("raw-data"), CallS("raw-data"));
        if ((role & Role.Metadata) != 0 && (role & Role.Data) != 0)
            return ($"(image-perm {p} {s} {Literal(parent.Writable)})", $"(image-shared {p} {s})");
        if ((role & Role.Data) != 0) return (Call("data"), CallS("data"));
        throw new NotSupportedException($"no SMT rule for {parent.Driver} child '{edge.Name}' ({Roles.Short(role)})");
    }

    private static Perm PermOption(Node n, string key)
    {
        if (!n.Options.TryGetValue(key, out var json)) return Perm.None;
        return System.Text.Json.Nodes.JsonNode.Parse(json)!.AsArray()
            .Aggregate(Perm.None, (acc, x) => acc | (Perms.ParseQapi(x!.GetValue<string>()) ?? Perm.None));
    }
}
