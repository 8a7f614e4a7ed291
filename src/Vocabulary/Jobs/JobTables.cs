namespace Verified.Vocabulary.Jobs;

/// <summary>A job's status (QAPI <c>JobStatus</c>), in QEMU's order.</summary>
public enum JobStatus
{
    /// <summary>Not yet created (never seen by a client).</summary>
    Undefined,
    /// <summary>Created, not yet started.</summary>
    Created,
    /// <summary>Working.</summary>
    Running,
    /// <summary>Paused at a pause point (user pause or drain).</summary>
    Paused,
    /// <summary>Work done, waiting for <c>complete</c> (mirror).</summary>
    Ready,
    /// <summary>Paused while ready.</summary>
    Standby,
    /// <summary>Finished its work; waiting for the other jobs of its transaction.</summary>
    Waiting,
    /// <summary>Its transaction finished; waiting to be finalized.</summary>
    Pending,
    /// <summary>Failed or cancelled; rolling back.</summary>
    Aborting,
    /// <summary>Finalized; waiting to be dismissed.</summary>
    Concluded,
    /// <summary>Gone.</summary>
    Null,
}

/// <summary>A command verb a job may accept (QAPI <c>JobVerb</c>).</summary>
public enum JobVerb
{
    /// <summary>job-cancel, block-job-cancel.</summary>
    Cancel,
    /// <summary>job-pause, block-job-pause.</summary>
    Pause,
    /// <summary>job-resume, block-job-resume.</summary>
    Resume,
    /// <summary>block-job-set-speed.</summary>
    SetSpeed,
    /// <summary>job-complete, block-job-complete.</summary>
    Complete,
    /// <summary>job-finalize, block-job-finalize.</summary>
    Finalize,
    /// <summary>job-dismiss, block-job-dismiss.</summary>
    Dismiss,
    /// <summary>block-job-change (QEMU 8.2; no QEMU 7.2 command applies it).</summary>
    Change,
}

/// <summary>
/// QEMU's two job tables (job.c <c>JobSTT</c> and <c>JobVerbTable</c>), written once, row by row as QEMU
/// writes them. Everything else (the Stateless machine, the model, the implementation, the picture in
/// spec/) is derived from these rows.
/// </summary>
/// <remarks>
/// QEMU 7.2's tables, plus the <c>change</c> row QEMU 8.2 added (the same bits as <c>set-speed</c>), so the
/// verb list is complete; no QEMU 7.2 command applies <c>change</c>.
/// </remarks>
public static class JobTables
{
    /// <summary>The number of statuses (QEMU's JOB_STATUS__MAX).</summary>
    public const int StatusCount = 11;

    /// <summary>The number of verbs (QEMU's JOB_VERB__MAX, with change).</summary>
    public const int VerbCount = 8;

    // Columns: U, C, R, P, Y, S, W, D, X, E, N (undefined … null), as in job.c.
    private static readonly string[] Stt =
    [
        /* U */ "0 1 0 0 0 0 0 0 0 0 0",
        /* C */ "0 0 1 0 0 0 0 0 1 0 1",
        /* R */ "0 0 0 1 1 0 1 0 1 0 0",
        /* P */ "0 0 1 0 0 0 0 0 0 0 0",
        /* Y */ "0 0 0 0 0 1 1 0 1 0 0",
        /* S */ "0 0 0 0 1 0 0 0 0 0 0",
        /* W */ "0 0 0 0 0 0 0 1 1 0 0",
        /* D */ "0 0 0 0 0 0 0 0 1 1 0",
        /* X */ "0 0 0 0 0 0 0 0 1 1 0",
        /* E */ "0 0 0 0 0 0 0 0 0 0 1",
        /* N */ "0 0 0 0 0 0 0 0 0 0 0",
    ];

    private static readonly string[] Verbs =
    [
        /* cancel    */ "0 1 1 1 1 1 1 1 0 0 0",
        /* pause     */ "0 1 1 1 1 1 0 0 0 0 0",
        /* resume    */ "0 1 1 1 1 1 0 0 0 0 0",
        /* set-speed */ "0 1 1 1 1 1 0 0 0 0 0",
        /* complete  */ "0 0 0 0 1 1 0 0 0 0 0",
        /* finalize  */ "0 0 0 0 0 0 0 1 0 0 0",
        /* dismiss   */ "0 0 0 0 0 0 0 0 0 1 0",
        /* change    */ "0 1 1 1 1 1 0 0 0 0 0",
    ];

    private static readonly bool[,] SttBits = Parse(Stt, StatusCount);

    private static readonly bool[,] VerbBits = Parse(Verbs, VerbCount);

    private static bool[,] Parse(string[] rows, int count)
    {
        var bits = new bool[count, StatusCount];
        for (int r = 0; r < count; r++)
        {
            var cells = rows[r].Split(' ');
            if (cells.Length != StatusCount) throw new InvalidOperationException($"row {r} has {cells.Length} cells");
            for (int c = 0; c < StatusCount; c++) bits[r, c] = cells[c] == "1";
        }
        return bits;
    }

    /// <summary>Every status, in QEMU's order.</summary>
    public static IReadOnlyList<JobStatus> Statuses { get; } = Enum.GetValues<JobStatus>();

    /// <summary>Every verb, in QEMU's order.</summary>
    public static IReadOnlyList<JobVerb> AllVerbs { get; } = Enum.GetValues<JobVerb>();

    /// <summary>Whether QEMU allows a job to move from <paramref name="from"/> to <paramref name="to"/> (JobSTT).</summary>
    public static bool Transition(JobStatus from, JobStatus to) => SttBits[(int)from, (int)to];

    /// <summary>Whether a job in <paramref name="status"/> accepts <paramref name="verb"/> (JobVerbTable).</summary>
    public static bool Allows(JobVerb verb, JobStatus status) => VerbBits[(int)verb, (int)status];

    /// <summary>QEMU's refusal of a verb (<c>job_apply_verb</c>); null when the verb is allowed.</summary>
    public static QmpError? ApplyVerb(string id, JobStatus status, JobVerb verb)
    {
        ArgumentNullException.ThrowIfNull(id);
        return Allows(verb, status) ? null
            : QmpError.Generic($"Job '{id}' in state '{Name(status)}' cannot accept command verb '{Name(verb)}'");
    }

    /// <summary>The QAPI name of a status (<c>running</c>, <c>null</c>, …).</summary>
    public static string Name(JobStatus s) => s.ToString().ToLowerInvariant();

    /// <summary>The QAPI name of a verb (<c>set-speed</c>, …).</summary>
    public static string Name(JobVerb v) => v == JobVerb.SetSpeed ? "set-speed" : v.ToString().ToLowerInvariant();

    /// <summary>Whether the job has finished its work (QEMU's <c>job_is_completed</c>).</summary>
    public static bool IsCompleted(JobStatus s) => s is JobStatus.Waiting or JobStatus.Pending or JobStatus.Aborting or JobStatus.Concluded or JobStatus.Null;

    /// <summary>Whether the job is ready (QEMU's <c>job_is_ready</c>).</summary>
    public static bool IsReady(JobStatus s) => s is JobStatus.Ready or JobStatus.Standby;
}
