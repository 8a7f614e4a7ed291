using Stateless;
using Stateless.Graph;

namespace Verified.Vocabulary.Jobs;

/// <summary>
/// What a job's state machine is told: move to a status (QEMU's <c>job_state_transition</c>), or check a
/// command verb (<c>job_apply_verb</c>). Exactly one of the two is set.
/// </summary>
/// <param name="To">The status to move to.</param>
/// <param name="Verb">The verb to check.</param>
public readonly record struct JobTrigger(JobStatus? To, JobVerb? Verb)
{
    /// <summary>Move to <paramref name="s"/>.</summary>
    public static JobTrigger Move(JobStatus s) => new(s, null);

    /// <summary>Check <paramref name="v"/>.</summary>
    public static JobTrigger Apply(JobVerb v) => new(null, v);

    /// <summary>Every trigger: one move per status, one check per verb.</summary>
    public static IReadOnlyList<JobTrigger> All { get; } =
        [.. JobTables.Statuses.Select(Move), .. JobTables.AllVerbs.Select(Apply)];

    /// <summary>The label the picture shows: the verb's QAPI name, or nothing for a move (the arrow says it).</summary>
    public override string ToString() => Verb is { } v ? JobTables.Name(v) : "";
}

/// <summary>
/// One job's status on a Stateless machine configured from <see cref="JobTables"/>: every allowed move
/// is a <c>Permit</c>, every allowed verb an internal transition (it changes no status). Firing a trigger
/// the tables forbid throws, as QEMU asserts on a forbidden move.
/// </summary>
/// <remarks>Not thread-safe: the owner (a job, under the engine's lock) serialises use.</remarks>
public sealed class JobStateMachine
{
    private readonly StateMachine<JobStatus, JobTrigger> machine;

    /// <summary>A machine in <paramref name="initial"/> (a new job starts undefined).</summary>
    public JobStateMachine(JobStatus initial = JobStatus.Undefined)
    {
        Status = initial;
        machine = new StateMachine<JobStatus, JobTrigger>(() => Status, s => Status = s);
        foreach (var from in JobTables.Statuses)
        {
            var config = machine.Configure(from);
            foreach (var to in JobTables.Statuses)
            {
                if (!JobTables.Transition(from, to)) continue;
                // aborting -> aborting is QEMU's one move to the same status (no event); Stateless calls it reentry.
                if (from == to) config.PermitReentry(JobTrigger.Move(to));
                else config.Permit(JobTrigger.Move(to), to);
            }
            foreach (var verb in JobTables.AllVerbs)
            {
                if (JobTables.Allows(verb, from)) config.InternalTransition(JobTrigger.Apply(verb), _ => { });
            }
        }
    }

    /// <summary>The current status.</summary>
    public JobStatus Status { get; private set; }

    /// <summary>Whether the tables allow <paramref name="t"/> now.</summary>
    public bool CanFire(JobTrigger t) => machine.CanFire(t);

    /// <summary>Moves to <paramref name="to"/>.</summary>
    /// <exception cref="InvalidOperationException">JobSTT forbids the move (QEMU asserts).</exception>
    public void Move(JobStatus to) => machine.Fire(JobTrigger.Move(to));

    /// <summary>QEMU's refusal of <paramref name="verb"/> for job <paramref name="id"/>, or null when the verb is allowed now.</summary>
    public QmpError? Apply(string id, JobVerb verb) =>
        machine.CanFire(JobTrigger.Apply(verb)) ? null : JobTables.ApplyVerb(id, Status, verb);

    /// <summary>
    /// The machine in Graphviz DOT, for spec/jobs.dot: Stateless's UML exporter, with each status's verb
    /// loops (internal transitions, which Stateless draws one by one and tags <c>[Function]</c>) merged
    /// into one loop listing the verbs the status accepts, so the picture stays readable.
    /// </summary>
    public static string ToDot()
    {
        var dot = UmlDotGraph.Format(new JobStateMachine().machine.GetInfo());
        var verbs = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var kept = new List<string>();
        string? firstLoop = null;
        foreach (var line in dot.Split('\n'))
        {
            var m = VerbLoop.Match(line);
            if (!m.Success)
            {
                kept.Add(line);
                continue;
            }
            firstLoop ??= line;
            if (!verbs.TryGetValue(m.Groups[1].Value, out var list)) verbs[m.Groups[1].Value] = list = [];
            list.Add(m.Groups[2].Value);
        }
        int at = kept.FindLastIndex(l => l.StartsWith('"') && l.Contains("->", StringComparison.Ordinal)) + 1;
        kept.InsertRange(at, verbs.Select(v => $"\"{v.Key}\" -> \"{v.Key}\" [style=\"dashed\", label=\"{string.Join("\\n", v.Value)}\"];"));
        return string.Join('\n', kept);
    }

    private static readonly System.Text.RegularExpressions.Regex VerbLoop =
        new("^\"(\\w+)\" -> \"\\1\" \\[style=\"solid\", label=\"([a-z-]+) \\[Function\\]\"\\];\\r?$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
}
