using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Verified.Proofs.Smt;

/// <summary>The answer of a satisfiability check.</summary>
public enum SmtVerdict
{
    /// <summary>The assertions have a model.</summary>
    Sat,
    /// <summary>The assertions have no model.</summary>
    Unsat,
    /// <summary>Z3 gave up: timeout, resource limit or an incomplete theory.</summary>
    Unknown,
}

/// <summary>The outcome of <see cref="SmtSolver.Check(string, bool)"/>.</summary>
/// <param name="Verdict">Sat, unsat or unknown.</param>
/// <param name="Model">
/// The text Z3 printed for <c>(get-model)</c> when the verdict is <see cref="SmtVerdict.Sat"/> and a
/// model was asked for; otherwise <see langword="null"/>. Read it with <see cref="SmtModelParser.Parse"/>.
/// </param>
/// <param name="Elapsed">Wall time of the whole check, including push, pop and model printing.</param>
public sealed record SmtResult(SmtVerdict Verdict, string? Model, TimeSpan Elapsed);

/// <summary>Z3 rejected SMT-LIB2 text: a syntax error, an unknown symbol, a sort mismatch and so on.</summary>
public class SmtException : Exception
{
    /// <summary>How many characters of the offending query <see cref="QueryExcerpt"/> keeps.</summary>
    public const int QueryExcerptLength = 200;

    /// <summary>Creates an exception with a default message.</summary>
    public SmtException()
        : this("Z3 rejected the query.")
    {
    }

    /// <summary>Creates an exception with the given message.</summary>
    /// <param name="message">What went wrong.</param>
    public SmtException(string message)
        : base(message)
    {
        Z3Message = message;
        QueryExcerpt = string.Empty;
    }

    /// <summary>Creates an exception with the given message and cause.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The underlying cause.</param>
    public SmtException(string message, Exception innerException)
        : base(message, innerException)
    {
        Z3Message = message;
        QueryExcerpt = string.Empty;
    }

    /// <summary>Creates an exception carrying Z3's own message and the start of the query it rejected.</summary>
    /// <param name="z3Message">Z3's error text, e.g. <c>(error "line 1 column 18: unknown constant q")</c>.</param>
    /// <param name="query">The SMT-LIB2 text Z3 rejected; only its first <see cref="QueryExcerptLength"/> characters are kept.</param>
    public SmtException(string z3Message, string query)
        : base(FormatMessage(z3Message, query))
    {
        ArgumentNullException.ThrowIfNull(z3Message);
        ArgumentNullException.ThrowIfNull(query);
        Z3Message = z3Message;
        QueryExcerpt = Excerpt(query);
    }

    /// <summary>Z3's error text, as it printed it.</summary>
    public string Z3Message { get; }

    /// <summary>The first <see cref="QueryExcerptLength"/> characters of the rejected query (empty if none).</summary>
    public string QueryExcerpt { get; }

    private static string Excerpt(string query) =>
        query.Length <= QueryExcerptLength ? query : query[..QueryExcerptLength];

    private static string FormatMessage(string z3Message, string query)
    {
        ArgumentNullException.ThrowIfNull(z3Message);
        ArgumentNullException.ThrowIfNull(query);
        string excerpt = Excerpt(query);
        string ellipsis = excerpt.Length < query.Length ? " …" : string.Empty;
        return $"Z3 rejected the query: {z3Message.Trim()}{Environment.NewLine}Query: {excerpt}{ellipsis}";
    }
}

/// <summary>
/// One Z3 context spoken to in SMT-LIB2 text (<c>Z3_eval_smtlib2_string</c> on Debian's libz3).
/// </summary>
/// <remarks>
/// <para>
/// A Z3 context is single-threaded; every call here takes the instance's lock, so one solver may be
/// shared by many threads (their checks run one at a time). For parallel solving use one solver per
/// thread.
/// </para>
/// <para>
/// <see cref="Check(string, bool)"/> wraps the query in <c>(push)</c> … <c>(pop)</c>, so its declarations and
/// assertions do not outlive it, even when Z3 rejects the query or the query leaves scopes open.
/// Whatever is declared through <see cref="Eval"/> outside a scope stays for later checks.
/// </para>
/// <para>
/// The timeout is set with <c>(set-option :timeout N)</c>. Z3 4.8 keeps that option in its global
/// parameter table, read by each context when its command interpreter starts or an option is set,
/// so it is applied while holding a process-wide lock at construction; a later
/// <c>(set-option ...)</c> sent through <see cref="Eval"/> re-reads the global table, whose timeout
/// is that of the most recently constructed solver.
/// </para>
/// </remarks>
public sealed class SmtSolver : IDisposable
{
    /// <summary>The default per-check timeout: 10 s.</summary>
    public const int DefaultTimeoutMs = 10_000;

    /// <summary>What <see cref="IsAvailable"/> reports when libz3 cannot be loaded.</summary>
    public const string LibraryNotFoundMessage = "libz3 not found: install Debian package libz3-4";

    // Z3's global parameter table is shared by all contexts of the process; see the remarks.
    private static readonly Lock GlobalOptionsGate = new();

    private static readonly Lazy<(bool Available, string Reason)> Availability =
        new(ProbeAvailability, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly Lock gate = new();
    private readonly Z3ContextHandle context;
    private bool disposed;

    /// <summary>Creates a Z3 context with models enabled and the given per-check timeout.</summary>
    /// <param name="timeoutMs">
    /// The time Z3 may spend on one <c>(check-sat)</c> before answering unknown, in milliseconds;
    /// <see cref="Timeout.Infinite"/> for no limit.
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeoutMs"/> is zero or below -1.</exception>
    /// <exception cref="DllNotFoundException">libz3 is not installed (see <see cref="IsAvailable"/>).</exception>
    public SmtSolver(int timeoutMs = DefaultTimeoutMs)
    {
        if (timeoutMs != Timeout.Infinite)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(timeoutMs);
        }

        TimeoutMs = timeoutMs;
        IntPtr raw;
        try
        {
            raw = Z3Native.CreateContext([new("model", "true")]);
            Version = Z3Native.GetVersion();
        }
        catch (DllNotFoundException e)
        {
            throw new DllNotFoundException(LibraryNotFoundMessage, e);
        }

        context = new Z3ContextHandle(raw);
        try
        {
            // Z3 wants a timeout in ms as an unsigned int; 4294967295 means none.
            string timeout = timeoutMs == Timeout.Infinite
                ? uint.MaxValue.ToString(CultureInfo.InvariantCulture)
                : timeoutMs.ToString(CultureInfo.InvariantCulture);
            lock (GlobalOptionsGate)
            {
                Run($"(set-option :produce-models true)(set-option :timeout {timeout})");
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>The per-check timeout in milliseconds (<see cref="Timeout.Infinite"/> for none).</summary>
    public int TimeoutMs { get; }

    /// <summary>The version of the loaded libz3, e.g. 4.8.12.0.</summary>
    public Version Version { get; }

    /// <summary>
    /// Tells whether libz3 can be loaded and a context made, without throwing. The probe runs once
    /// per process.
    /// </summary>
    /// <param name="reason">
    /// When unavailable, why (e.g. <see cref="LibraryNotFoundMessage"/>); when available, the version found.
    /// </param>
    /// <returns><see langword="true"/> if <see cref="SmtSolver"/> can be constructed.</returns>
    public static bool IsAvailable(out string reason)
    {
        (bool available, reason) = Availability.Value;
        return available;
    }

    /// <summary>
    /// Sends SMT-LIB2 commands to the context as they are and returns Z3's printed output.
    /// State changes (declarations, assertions, options, scopes) persist.
    /// </summary>
    /// <param name="smtlib">One or more SMT-LIB2 commands.</param>
    /// <returns>What Z3 printed, e.g. <c>sat</c> for <c>(check-sat)</c>; empty for declarations.</returns>
    /// <exception cref="SmtException">Z3 reported an error for some command in <paramref name="smtlib"/>
    /// (the commands before and after it still ran).</exception>
    /// <exception cref="ObjectDisposedException">The solver was disposed.</exception>
    public string Eval(string smtlib)
    {
        ArgumentNullException.ThrowIfNull(smtlib);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return Run(smtlib);
        }
    }

    /// <summary>
    /// Checks the satisfiability of declarations and assertions in a scope of their own:
    /// <c>(push)</c>, the query, <c>(check-sat)</c>, <c>(get-model)</c> if sat and asked for, <c>(pop)</c>.
    /// </summary>
    /// <param name="declarationsAndAssertions">
    /// SMT-LIB2 declarations, definitions and assertions, without <c>(check-sat)</c>.
    /// </param>
    /// <param name="produceModel">Whether to fetch the model when the verdict is sat.</param>
    /// <returns>The verdict, the model text if requested and sat, and the time taken.</returns>
    /// <exception cref="SmtException">Z3 rejected the query; the context is left as it was before.</exception>
    /// <exception cref="ObjectDisposedException">The solver was disposed.</exception>
    public SmtResult Check(string declarationsAndAssertions, bool produceModel = true) =>
        Check(declarationsAndAssertions, produceModel ? null : Array.Empty<string>());

    /// <summary>
    /// Like <see cref="Check(string, bool)"/>, but when sat fetches only the values of
    /// <paramref name="valuesOf"/> with <c>(get-value …)</c> and returns them in model form
    /// (<c>(define-fun x () T v)</c> lines), so <see cref="SmtModelParser"/> reads both alike.
    /// </summary>
    /// <remarks>
    /// Z3 4.8.12 fails to print a full model when the context defines functions with boolean
    /// parameters (<c>Sort mismatch … fold-rec</c>); asking for values avoids that path. A null list
    /// fetches the full model; an empty one fetches nothing.
    /// </remarks>
    public SmtResult Check(string declarationsAndAssertions, IReadOnlyList<string>? valuesOf)
    {
        ArgumentNullException.ThrowIfNull(declarationsAndAssertions);
        bool produceModel = valuesOf is null || valuesOf.Count > 0;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            long start = Stopwatch.GetTimestamp();
            int baseLevel = StackLevel();
            Run("(push)");
            SmtVerdict verdict;
            string? model = null;
            try
            {
                Run(declarationsAndAssertions);
                string answer = Run("(check-sat)");
                verdict = ParseVerdict(answer, declarationsAndAssertions);
                if (verdict == SmtVerdict.Sat && produceModel)
                {
                    model = valuesOf is null ? Run("(get-model)").Trim() : ValuesAsModel(Run($"(get-value ({string.Join(' ', valuesOf)}))"));
                }
            }
            finally
            {
                RestoreLevel(baseLevel);
            }

            return new SmtResult(verdict, model, Stopwatch.GetElapsedTime(start));
        }
    }

    /// <summary>Turns <c>((x v) (y w))</c> into <c>(define-fun x () _ v)</c> lines.</summary>
    private static string ValuesAsModel(string getValue)
    {
        var sb = new StringBuilder("(\n");
        int depth = 0, start = -1;
        for (int i = 0; i < getValue.Length; i++)
        {
            char c = getValue[i];
            if (c == '(')
            {
                depth++;
                if (depth == 2) start = i + 1;
            }
            else if (c == ')')
            {
                if (depth == 2 && start >= 0)
                {
                    var pair = getValue[start..i].Trim();
                    int sp = pair.IndexOfAny([' ', '\n', '\t']);
                    if (sp > 0) sb.Append(CultureInfo.InvariantCulture, $"  (define-fun {pair[..sp]} () _ {pair[(sp + 1)..].Trim()})\n");
                    start = -1;
                }
                depth--;
            }
        }
        return sb.Append(')').ToString();
    }

    /// <summary>Releases the Z3 context. Waits for a check in progress on another thread.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed)
            {
                return;
            }

            disposed = true;
            context.Dispose();
        }
    }

    /// <summary>Evaluates text and throws <see cref="SmtException"/> if Z3 reported an error. Caller holds the lock.</summary>
    private string Run(string smtlib)
    {
        IntPtr ctx = context.DangerousGetHandle();
        Z3Native.Z3_set_error(ctx, Z3Native.Z3Ok);
        string output = Z3Native.EvalSmtlib2(ctx, smtlib);
        int code = Z3Native.Z3_get_error_code(ctx);
        string? errors = ErrorLines(output);
        if (errors is not null || code != Z3Native.Z3Ok)
        {
            Z3Native.Z3_set_error(ctx, Z3Native.Z3Ok);
            throw new SmtException(errors ?? $"Z3 error code {code}: {output.Trim()}", smtlib);
        }

        return output;
    }

    /// <summary>The current depth of the assertion stack. Caller holds the lock.</summary>
    private int StackLevel()
    {
        // Z3 prints "(:assertion-stack-levels N)".
        string text = Run("(get-info :assertion-stack-levels)");
        int end = text.LastIndexOf(')');
        int begin = text.LastIndexOf(' ', end < 0 ? text.Length - 1 : end) + 1;
        if (end > begin
            && int.TryParse(text.AsSpan(begin, end - begin), NumberStyles.None, CultureInfo.InvariantCulture, out int level))
        {
            return level;
        }

        throw new SmtException($"unexpected reply to (get-info :assertion-stack-levels): {text.Trim()}");
    }

    /// <summary>Pops back to <paramref name="baseLevel"/>; never throws (it runs in a finally). Caller holds the lock.</summary>
    private void RestoreLevel(int baseLevel)
    {
        IntPtr ctx = context.DangerousGetHandle();
        try
        {
            int level = StackLevel();
            if (level > baseLevel)
            {
                Run(string.Create(CultureInfo.InvariantCulture, $"(pop {level - baseLevel})"));
            }
        }
        catch (SmtException)
        {
            // Nothing better to do than leave the error code clear for the next call.
            Z3Native.Z3_set_error(ctx, Z3Native.Z3Ok);
        }
    }

    private static SmtVerdict ParseVerdict(string answer, string query)
    {
        // The reply is one line; anything else Z3 printed (warnings) comes before it.
        string[] lines = answer.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string last = lines.Length == 0 ? string.Empty : lines[^1];
        return last switch
        {
            "sat" => SmtVerdict.Sat,
            "unsat" => SmtVerdict.Unsat,
            "unknown" => SmtVerdict.Unknown,
            _ => throw new SmtException($"unexpected reply to (check-sat): {answer.Trim()}", query),
        };
    }

    /// <summary>The <c>(error "...")</c> lines of Z3's output, joined; null if there are none.</summary>
    private static string? ErrorLines(string output)
    {
        if (!output.Contains("(error ", StringComparison.Ordinal))
        {
            return null;
        }

        var errors = new StringBuilder();
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith("(error ", StringComparison.Ordinal))
            {
                if (errors.Length > 0)
                {
                    errors.Append('\n');
                }

                errors.Append(line);
            }
        }

        return errors.Length > 0 ? errors.ToString() : null;
    }

    private static (bool Available, string Reason) ProbeAvailability()
    {
        try
        {
            IntPtr raw = Z3Native.CreateContext([]);
            Z3Native.Z3_del_context(raw);
            return (true, $"libz3 {Z3Native.GetVersion()} loaded");
        }
        catch (DllNotFoundException)
        {
            return (false, LibraryNotFoundMessage);
        }
        catch (EntryPointNotFoundException e)
        {
            return (false, $"libz3 found but not usable: {e.Message}");
        }
        catch (BadImageFormatException e)
        {
            return (false, $"libz3 found but not loadable: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            return (false, $"libz3 loaded but no context could be made: {e.Message}");
        }
    }
}
