namespace Verified.Proofs;

/// <summary>
/// A claim about the permission rules, checked by Z3 for every input. A universal theorem is proved
/// when its negation is unsatisfiable; an existential one (a witness that something can happen) when
/// its claim is satisfiable.
/// </summary>
/// <param name="Name">The claim as an identifier.</param>
/// <param name="Statement">The claim in English (as spec/theorems.md states it).</param>
/// <param name="Declarations">SMT declarations of the claim's variables.</param>
/// <param name="Claim">The SMT formula claimed.</param>
/// <param name="Universal">True: holds for all values; false: some values make it true.</param>
public sealed record Theorem(string Name, string Statement, string Declarations, string Claim, bool Universal = true)
{
    /// <summary>The query sent to Z3 (after the rule prelude).</summary>
    public string Query => Declarations + "\n" + (Universal ? $"(assert (not {Claim}))" : $"(assert {Claim})");

    /// <summary>The declared variables, whose values make a counterexample or witness.</summary>
    public IReadOnlyList<string> Variables =>
        [.. System.Text.RegularExpressions.Regex.Matches(Declarations, @"\(declare-const (\S+)").Select(m => m.Groups[1].Value)];
}

/// <summary>The theorems <c>verified prove</c> checks, one or more per driver rule.</summary>
public static class Theorems
{
    private const string PS = "(declare-const p Perm)(declare-const s Perm)";
    private const string Two = "(declare-const p1 Perm)(declare-const s1 Perm)(declare-const p2 Perm)(declare-const s2 Perm)";
    private const string Other = "(declare-const px Perm)(declare-const sx Perm)";

    /// <summary>A rule as SMT terms over parent perms <c>P</c>, <c>S</c> (placeholders) and its extra parameters.</summary>
    private sealed record Rule(string Name, string Perm, string Shared, string Extra = "");

    private static readonly Rule[] Rules =
    [
        new("filter", "(filter-perm P S)", "(filter-shared P S)"),
        new("backing", "(backing-perm P S)", "(backing-shared P S)"),
        new("image", "(image-perm P S w)", "(image-shared P S)", "(declare-const w Bool)"),
        new("data", "(data-perm P S)", "(data-shared P S)"),
        new("raw-data", "(raw-data-perm P S)", "(raw-data-shared P S)"),
        new("copy-on-read", "(cor-perm P S)", "(cor-shared P S)"),
        new("preallocate", "(prealloc-perm P S)", "(prealloc-shared P S)"),
        new("blkdebug", "(blkdebug-perm P S t)", "(blkdebug-shared P S u)", "(declare-const t Perm)(declare-const u Perm)"),
        new("snapshot-access", "(snapacc-perm P S)", "(snapacc-shared P S)"),
        new("cbw-target", "(cbw-target-perm P S)", "(cbw-target-shared P S)"),
        new("cbw-strict", "(cbw-strict-perm P S)", "(cbw-strict-shared P S)"),
        new("cbw-upstream", "(cbw-upstream-perm P S hp)", "(cbw-upstream-shared P S hp)", "(declare-const hp Bool)"),
    ];

    private static string At(string term, string p, string s) => term.Replace("P", p, StringComparison.Ordinal).Replace("S", s, StringComparison.Ordinal);

    /// <summary>A conflict between two edges into one node: one needs what the other does not share.</summary>
    private static string Conflict(string pa, string sa, string pb, string sb) => $"(or (not (subset {pb} {sa})) (not (subset {pa} {sb})))";

    /// <summary>Every theorem, in the order of spec/theorems.md.</summary>
    public static IReadOnlyList<Theorem> All { get; } = Build();

    private static List<Theorem> Build()
    {
        var list = new List<Theorem>();
        foreach (var r in Rules)
        {
            // Stricter parents (more perm, less shared) never make a child edge looser: so removing or
            // weakening a parent can only loosen everything below it, and such a refresh cannot fail.
            list.Add(new($"Rule_{r.Name}_is_monotone",
                $"The {r.Name} rule is monotone: a parent needing more and sharing less never makes its child edge need less or share more.",
                Two + r.Extra,
                $"(=> (and (subset p1 p2) (subset s2 s1)) (and (subset {At(r.Perm, "p1", "s1")} {At(r.Perm, "p2", "s2")}) (subset {At(r.Shared, "p2", "s2")} {At(r.Shared, "p1", "s1")})))"));
        }
        list.Add(new("Filters_pass_perms_through_unchanged",
            "A filter (throttle, compress, raw without offset, blkdebug without extra perms) takes on its child exactly what its parents take and shares exactly what they share.",
            PS, "(and (= (filter-perm p s) p) (= (filter-shared p s) s) (= (blkdebug-perm p s NONE) p) (= (blkdebug-shared p s NONE) s))"));
        list.Add(new("Inserting_a_pass_through_filter_creates_no_conflict",
            "If an edge from a parent into a node is replaced by a pass-through filter between them, the node sees a conflict only where the direct edge already had one.",
            PS + Other, $"(= {Conflict("px", "sx", "(filter-perm p s)", "(filter-shared p s)")} {Conflict("px", "sx", "p", "s")})"));
        list.Add(new("Weakening_a_parent_never_creates_a_conflict_below",
            "For every rule, when a node's parents weaken (need less, share more), its child edge never starts conflicting with another parent of the child that it did not conflict with before.",
            Two + Other + "(declare-const w Bool)(declare-const t Perm)(declare-const u Perm)(declare-const hp Bool)",
            "(=> (and (subset p1 p2) (subset s2 s1)) (and " + string.Join(" ", Rules.Select(r =>
                $"(=> {Conflict("px", "sx", At(r.Perm, "p1", "s1"), At(r.Shared, "p1", "s1"))} {Conflict("px", "sx", At(r.Perm, "p2", "s2"), At(r.Shared, "p2", "s2"))})")) + "))"));
        list.Add(new("Strict_cbw_admits_no_other_writer_of_its_source",
            "Under the strict scheme, whatever copy-before-write's parents need, any other parent of its source that writes conflicts with the filter: the source is written only through the filter.",
            PS + Other, $"(=> (has px W) {Conflict("px", "sx", "(cbw-strict-perm p s)", "(cbw-strict-shared p s)")})"));
        list.Add(new("Upstream_cbw_admits_another_writer_exactly_without_parents",
            "Under upstream's scheme, another writer of the source is admitted exactly when the filter has no parent (its cumulative perms are then nothing / all).",
            PS + "(declare-const hp Bool)",
            "(=> (=> (not hp) (and (= p NONE) (= s ALL))) (= (has (cbw-upstream-shared p s hp) W) (not hp)))"));
        list.Add(new("Cbw_target_is_written_but_never_resized",
            "copy-before-write always takes write on its target and never lets anyone resize it.",
            PS, "(and (has (cbw-target-perm p s) W) (not (has (cbw-target-shared p s) RS)))"));
        list.Add(new("Backing_forwards_at_most_consistent_read",
            "A backing (COW) edge never takes more than consistent read, whatever the overlay's users need.",
            PS, "(subset (backing-perm p s) CR)"));
        list.Add(new("Backing_tolerates_writers_iff_its_parents_do",
            "A backing edge shares write exactly when the overlay's parents all share write.",
            PS, "(= (has (backing-shared p s) W) (has s W))"));
        list.Add(new("Writable_format_writes_its_image_and_shares_neither_write_nor_resize",
            "A writable format node takes write and resize on its image file even with no user, and shares neither.",
            PS, "(and (has (image-perm p s true) W) (has (image-perm p s true) RS) (not (has (image-shared p s) W)) (not (has (image-shared p s) RS)))"));
        list.Add(new("Two_writable_formats_on_one_file_always_conflict",
            "Two writable format nodes on one file node conflict, whatever their users need.",
            Two, Conflict("(image-perm p1 s1 true)", "(image-shared p1 s1)", "(image-perm p2 s2 true)", "(image-shared p2 s2)")));
        list.Add(new("Read_only_format_writes_nothing_unless_written_through",
            "A read-only format node takes no write or write-unchanged on its image unless a parent asks to write through it, and no resize unless a parent asks to write or resize.",
            PS, "(and (=> (not (has p (bvor W WU))) (not (has (image-perm p s false) (bvor W WU)))) (=> (not (has p (bvor W WU RS))) (not (has (image-perm p s false) RS))))"));
        list.Add(new("Copy_on_read_always_needs_write_unchanged",
            "copy-on-read takes write-unchanged on its child even with no user, so it cannot sit on a read-only node.",
            PS, "(has (cor-perm p s) WU)"));
        list.Add(new("Snapshot_access_never_conflicts",
            "snapshot-access takes nothing and shares everything, so its edge never conflicts with another.",
            PS + Other, $"(not {Conflict("px", "sx", "(snapacc-perm p s)", "(snapacc-shared p s)")})"));
        list.Add(new("Raw_asks_write_and_resize_only_when_its_parents_do",
            "raw with an offset or size takes write or resize on its file only when its parents take it.",
            PS, "(and (=> (has (raw-data-perm p s) W) (has p W)) (=> (has (raw-data-perm p s) RS) (has p RS)))"));
        list.Add(new("Exports_conflict_with_any_resizer",
            "An NBD export never shares resize: any other parent needing resize conflicts with it.",
            Other + "(declare-const wr Bool)", $"(=> (has px RS) {Conflict("px", "sx", "(export-perm wr)", "export-shared")})"));
        list.Add(new("Two_devices_without_share_rw_conflict_unless_both_read_only",
            "Two devices without share-rw on one node conflict exactly when at least one of them writes.",
            "(declare-const ro1 Bool)(declare-const ro2 Bool)",
            $"(= {Conflict("(device-perm ro1)", "(device-shared false)", "(device-perm ro2)", "(device-shared false)")} (or (not ro1) (not ro2)))"));
        list.Add(new("Preallocate_insertion_passes_where_a_branch_conflicts",
            "Witness that checking only the final graph accepts more: a preallocate filter beside a writer (a branch) conflicts with the writer's direct edge, while inserted in place of that edge it coexists with a reader of the node.",
            PS, $"(and {Conflict("p", "s", "(prealloc-perm p s)", "(prealloc-shared p s)")} (not {Conflict("CR", "ALL", "(prealloc-perm p s)", "(prealloc-shared p s)")}))", Universal: false));
        return list;
    }
}
