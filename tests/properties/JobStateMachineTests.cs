// The job state machine against QEMU's two tables (job.c JobSTT and JobVerbTable, written once in
// JobTables). FsCheck draws random trigger sequences (moves to any status, and verb checks) and drives
// a Stateless JobStateMachine with them: at every step the machine must allow exactly what the tables
// allow, move exactly where a permitted move goes, leave the status alone on a verb, refuse a
// forbidden trigger without changing anything, and word a refused verb as QEMU does. Facts pin the
// tables' well-known rows (so a transcription error in both machine and table cannot hide), the
// error text, and that spec/jobs.dot is the machine's current DOT export. A failure prints the
// trigger sequence as a replay string.
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verified.Vocabulary.Jobs;
using Xunit;

namespace Verified.Tests.Properties;

public class JobStateMachineTests
{
    /// <summary>How many triggers a random walk fires at most.</summary>
    private const int WalkLengthMax = 200;

    /// <summary>
    /// A random walk: each choice, if even, picks among the triggers the tables allow now (so walks get
    /// past created), and if odd among all triggers (so refusals are tried everywhere).
    /// </summary>
    public static Arbitrary<int[]> Walks() =>
        Gen.ArrayOf(Gen.Choose(0, 4 * JobTrigger.All.Count)).Where(a => a.Length <= WalkLengthMax).ToArbitrary();

    private static JobTrigger Pick(JobStatus s, int choice)
    {
        var allowed = JobTrigger.All.Where(t => t.To is { } to ? JobTables.Transition(s, to) : JobTables.Allows(t.Verb!.Value, s)).ToList();
        return choice % 2 == 0 && allowed.Count > 0 ? allowed[choice / 2 % allowed.Count] : JobTrigger.All[choice / 2 % JobTrigger.All.Count];
    }

    // The machine allows, moves and refuses exactly as QEMU's tables say, from any reachable status.
    [Property(MaxTest = 300, Arbitrary = [typeof(JobStateMachineTests)])]
    public bool Machine_agrees_with_the_tables_on_every_trigger(int[] walk)
    {
        var m = new JobStateMachine(JobStatus.Undefined);
        var replay = new List<string>();
        foreach (var i in walk)
        {
            var t = Pick(m.Status, i);
            replay.Add(Describe(t));
            var before = m.Status;
            bool expected = t.To is { } to ? JobTables.Transition(before, to) : JobTables.Allows(t.Verb!.Value, before);
            Assert.True(m.CanFire(t) == expected, $"CanFire({Describe(t)}) in {before}; replay: {string.Join(",", replay)}");
            if (t.Verb is { } v)
            {
                var err = m.Apply("j", v);
                Assert.True((err is null) == expected, $"Apply({v}) in {before}; replay: {string.Join(",", replay)}");
                if (err is not null)
                    Assert.Equal($"Job 'j' in state '{JobTables.Name(before)}' cannot accept command verb '{JobTables.Name(v)}'", err.Desc);
                Assert.Equal(before, m.Status);
                continue;
            }
            if (expected)
            {
                m.Move(t.To!.Value);
                Assert.True(m.Status == t.To, $"moved to {m.Status}, wanted {t.To}; replay: {string.Join(",", replay)}");
            }
            else
            {
                Assert.Throws<InvalidOperationException>(() => m.Move(t.To!.Value));
                Assert.True(m.Status == before, $"a refused move changed the status; replay: {string.Join(",", replay)}");
            }
        }
        return true;
    }

    private static string Describe(JobTrigger t) => t.To is { } s ? "to-" + JobTables.Name(s) : JobTables.Name(t.Verb!.Value);

    // Rows everybody knows from QEMU's documentation: a transcription error would show here.
    [Fact]
    public void Tables_hold_QEMUs_well_known_rows()
    {
        Assert.True(JobTables.Transition(JobStatus.Undefined, JobStatus.Created));
        Assert.True(JobTables.Transition(JobStatus.Running, JobStatus.Ready));
        Assert.True(JobTables.Transition(JobStatus.Ready, JobStatus.Standby));
        Assert.True(JobTables.Transition(JobStatus.Pending, JobStatus.Concluded));
        Assert.False(JobTables.Transition(JobStatus.Paused, JobStatus.Ready));
        Assert.False(JobTables.Transition(JobStatus.Null, JobStatus.Created));
        Assert.DoesNotContain(JobTables.Statuses, s => JobTables.Transition(JobStatus.Null, s));
        Assert.True(JobTables.Allows(JobVerb.Complete, JobStatus.Standby));
        Assert.False(JobTables.Allows(JobVerb.Complete, JobStatus.Running));
        Assert.Equal([JobStatus.Pending], JobTables.Statuses.Where(s => JobTables.Allows(JobVerb.Finalize, s)));
        Assert.Equal([JobStatus.Concluded], JobTables.Statuses.Where(s => JobTables.Allows(JobVerb.Dismiss, s)));
        Assert.Equal(JobTables.StatusCount, JobTables.Statuses.Count);
        Assert.Equal(JobTables.VerbCount, JobTables.AllVerbs.Count);
    }

    // Every status but undefined is reachable from undefined through allowed moves.
    [Fact]
    public void Every_status_is_reachable()
    {
        var seen = new HashSet<JobStatus> { JobStatus.Undefined };
        var todo = new Queue<JobStatus>(seen);
        while (todo.Count > 0)
        {
            var s = todo.Dequeue();
            foreach (var t in JobTables.Statuses.Where(t => JobTables.Transition(s, t) && seen.Add(t))) todo.Enqueue(t);
        }
        Assert.Equal(JobTables.StatusCount, seen.Count);
    }

    // QEMU's text for a verb a state does not take, with QAPI names (set-speed, not SetSpeed).
    [Fact]
    public void Refused_verbs_are_worded_as_QEMU_words_them()
    {
        var m = new JobStateMachine(JobStatus.Undefined);
        m.Move(JobStatus.Created);
        m.Move(JobStatus.Running);
        m.Move(JobStatus.Waiting);
        Assert.Equal("Job 'bk0' in state 'waiting' cannot accept command verb 'set-speed'", m.Apply("bk0", JobVerb.SetSpeed)!.Desc);
        Assert.Null(m.Apply("bk0", JobVerb.Cancel));
    }

    // spec/jobs.dot is the machine's DOT export (regenerate with VERIFIED_WRITE_SPEC=1, then render the SVG).
    [Fact]
    public void Spec_picture_is_the_machines_export()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Verified.sln"))) dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        var path = Path.Combine(dir!, "spec", "jobs.dot");
        var dot = JobStateMachine.ToDot();
        if (Environment.GetEnvironmentVariable("VERIFIED_WRITE_SPEC") == "1") File.WriteAllText(path, dot);
        Assert.Equal(dot, File.ReadAllText(path));
        foreach (var s in JobTables.Statuses) Assert.Contains(s.ToString(), dot, StringComparison.Ordinal);
    }
}
