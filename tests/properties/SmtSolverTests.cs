// These tests check the Z3 binding in Verified.Proofs.Smt against the real libz3 of the machine
// (Debian's libz3-4, loaded by soname): that sat and unsat queries get the right verdict and that a
// sat model, read back with SmtModelParser, really satisfies the query; that malformed SMT-LIB2 text
// raises SmtException carrying Z3's message and the query's start, and leaves the solver usable with
// no leftover scope; that each Check runs in its own push/pop scope so nothing it declares reaches the
// next one; that many threads sharing one solver (and many solvers in parallel) get correct answers;
// that the per-check timeout turns a hard query into Unknown; and that the model parser reads the
// value forms Z3 4.8 prints. They fail, rather than skip, when libz3 is missing, with the reason.

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Verified.Proofs.Smt;
using Xunit;

namespace Verified.Tests.Properties;

public sealed class SmtSolverTests : IDisposable
{
    private readonly SmtSolver solver;

    public SmtSolverTests()
    {
        Assert.True(SmtSolver.IsAvailable(out string reason), reason);
        solver = new SmtSolver();
    }

    public void Dispose() => solver.Dispose();

    private const string BitVectorQuery = """
        (declare-const x (_ BitVec 4))
        (declare-const y (_ BitVec 4))
        (assert (= (bvand x y) #x3))
        (assert (distinct x y))
        """;

    private int StackLevel() =>
        int.Parse(solver.Eval("(get-info :assertion-stack-levels)").Trim().TrimStart('(').TrimEnd(')').Split(' ')[1], CultureInfo.InvariantCulture);

    [Fact]
    public void Z3_is_available_and_reports_its_version()
    {
        Assert.True(SmtSolver.IsAvailable(out string reason), reason);
        Assert.Contains("libz3", reason, StringComparison.Ordinal);
        Assert.True(solver.Version.Major >= 4, $"version {solver.Version}");
    }

    [Fact]
    public void Sat_query_yields_a_model_that_satisfies_it()
    {
        SmtResult result = solver.Check(BitVectorQuery);

        Assert.Equal(SmtVerdict.Sat, result.Verdict);
        Assert.NotNull(result.Model);
        Dictionary<string, string> model = SmtModelParser.Parse(result.Model);
        ulong x = SmtModelParser.ParseBitVector(model["x"]);
        ulong y = SmtModelParser.ParseBitVector(model["y"]);
        Assert.True(x < 16 && y < 16, $"x={x} y={y}");
        Assert.Equal(3UL, x & y);
        Assert.NotEqual(x, y);
    }

    [Fact]
    public void Sat_query_without_model_request_returns_no_model()
    {
        SmtResult result = solver.Check(BitVectorQuery, produceModel: false);

        Assert.Equal(SmtVerdict.Sat, result.Verdict);
        Assert.Null(result.Model);
    }

    [Fact]
    public void Unsat_query_is_reported_unsat()
    {
        SmtResult result = solver.Check("""
            (declare-const x (_ BitVec 4))
            (declare-const y (_ BitVec 4))
            (assert (= (bvand x y) #xF))
            (assert (distinct x y))
            """);

        Assert.Equal(SmtVerdict.Unsat, result.Verdict);
        Assert.Null(result.Model);
        Assert.True(result.Elapsed > TimeSpan.Zero);
    }

    [Theory]
    [InlineData("(declare-const x Int)(assert (= x q))")] // unknown constant
    [InlineData("(declare-const x Int)(assert (bogus x)")] // unbalanced: would swallow a following (pop)
    [InlineData("(declare-const x Int)(assert (= x true))")] // sort mismatch
    [InlineData("(assert")] // truncated
    [InlineData("(check-sat))")] // stray parenthesis
    public void Malformed_query_raises_SmtException_and_the_solver_keeps_working(string malformed)
    {
        int before = StackLevel();

        SmtException e = Assert.Throws<SmtException>(() => solver.Check(malformed));

        Assert.False(string.IsNullOrWhiteSpace(e.Z3Message));
        Assert.Equal(malformed, e.QueryExcerpt);
        Assert.Contains(malformed, e.Message, StringComparison.Ordinal);
        Assert.Equal(before, StackLevel());
        Assert.Equal(SmtVerdict.Sat, solver.Check(BitVectorQuery).Verdict);
        Assert.Equal(SmtVerdict.Unsat, solver.Check("(assert false)").Verdict);
        // x from the failed query did not survive either.
        Assert.Equal(SmtVerdict.Sat, solver.Check("(declare-const x Bool)(assert x)").Verdict);
    }

    [Fact]
    public void SmtException_keeps_only_the_first_200_characters_of_the_query()
    {
        string longQuery = "(assert (= nope 1))" + new string(' ', 500) + "; tail";

        SmtException e = Assert.Throws<SmtException>(() => solver.Check(longQuery));

        Assert.Equal(200, e.QueryExcerpt.Length);
        Assert.StartsWith("(assert (= nope 1))", e.QueryExcerpt, StringComparison.Ordinal);
        Assert.Contains("unknown constant nope", e.Z3Message, StringComparison.Ordinal);
        Assert.DoesNotContain("; tail", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_raw_Eval_raises_SmtException()
    {
        Assert.Throws<SmtException>(() => solver.Eval("(assert (= undeclared 1))"));
        Assert.Equal("sat", solver.Eval("(check-sat)").Trim());
    }

    [Fact]
    public void Declarations_of_one_check_do_not_leak_into_the_next()
    {
        Assert.Equal(SmtVerdict.Sat, solver.Check("(declare-const leak Int)(assert (= leak 7))").Verdict);

        // Redeclaring with another sort would be an error if the first declaration had leaked.
        Assert.Equal(SmtVerdict.Sat, solver.Check("(declare-const leak Bool)(assert leak)").Verdict);
        // Using it without declaring it is an error: it is gone.
        Assert.Throws<SmtException>(() => solver.Check("(assert (= leak 7))"));
        // Assertions are scoped too: an earlier (assert false) does not make later checks unsat.
        Assert.Equal(SmtVerdict.Unsat, solver.Check("(assert false)").Verdict);
        Assert.Equal(SmtVerdict.Sat, solver.Check("(declare-const z Int)(assert (> z 0))").Verdict);
        Assert.Equal(0, StackLevel());
    }

    [Fact]
    public void Scopes_left_open_by_a_query_are_closed_by_Check()
    {
        Assert.Equal(SmtVerdict.Sat, solver.Check("(push)(push)(declare-const deep Int)(assert (= deep 1))").Verdict);

        Assert.Equal(0, StackLevel());
        Assert.Equal(SmtVerdict.Sat, solver.Check("(declare-const deep Bool)(assert deep)").Verdict);
    }

    [Fact]
    public void Global_declarations_made_through_Eval_stay_visible_to_Check()
    {
        solver.Eval("(declare-const g Int)(assert (> g 10))");

        Assert.Equal(SmtVerdict.Unsat, solver.Check("(assert (< g 5))").Verdict);
        SmtResult sat = solver.Check("(assert (< g 12))");
        Assert.Equal(SmtVerdict.Sat, sat.Verdict);
        Assert.Equal("11", SmtModelParser.Parse(sat.Model!)["g"]);
    }

    [Fact]
    public void Concurrent_checks_on_one_solver_give_correct_answers()
    {
        var failures = new ConcurrentBag<string>();

        Parallel.For(0, 200, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            // Even i: sat, and the model must give x = 3i + 1. Odd i: unsat.
            string query = i % 2 == 0
                ? $"(declare-const x Int)(assert (= (* 3 {i}) (- x 1)))"
                : $"(declare-const x Int)(assert (> x {i}))(assert (< x {i}))";
            SmtResult r = solver.Check(query);
            if (i % 2 == 0)
            {
                if (r.Verdict != SmtVerdict.Sat || SmtModelParser.Parse(r.Model!)["x"] != (3 * i + 1).ToString(CultureInfo.InvariantCulture))
                {
                    failures.Add($"{i}: {r.Verdict} {r.Model}");
                }
            }
            else if (r.Verdict != SmtVerdict.Unsat)
            {
                failures.Add($"{i}: {r.Verdict}");
            }
        });

        Assert.Empty(failures);
        Assert.Equal(0, StackLevel());
    }

    [Fact]
    public void Separate_solvers_check_in_parallel_with_correct_answers()
    {
        var failures = new ConcurrentBag<string>();

        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            using var own = new SmtSolver();
            for (int i = 0; i < 25; i++)
            {
                ulong expected = (ulong)((t * 25 + i) % 256);
                SmtResult r = own.Check($"(declare-const b (_ BitVec 8))(assert (= (bvxor b #xFF) (bvnot (_ bv{expected} 8))))");
                if (r.Verdict != SmtVerdict.Sat || SmtModelParser.ParseBitVector(SmtModelParser.Parse(r.Model!)["b"]) != expected)
                {
                    failures.Add($"{t}/{i}: {r.Verdict} {r.Model}");
                }
            }
        });

        Assert.Empty(failures);
    }

    [Fact]
    public void Timeout_turns_a_hard_query_into_unknown()
    {
        // Factoring a 56-bit number into two 32-bit factors by bit-blasting takes Z3 far longer than 300 ms.
        using var quick = new SmtSolver(timeoutMs: 300);
        var clock = Stopwatch.StartNew();

        SmtResult r = quick.Check("""
            (declare-const x (_ BitVec 64))
            (declare-const y (_ BitVec 64))
            (assert (bvugt x #x0000000000000001))
            (assert (bvugt y #x0000000000000001))
            (assert (bvult x #x00000000ffffffff))
            (assert (bvult y #x00000000ffffffff))
            (assert (= (bvmul x y) #x00d3e5f2a4b7c91b))
            """);

        Assert.Equal(SmtVerdict.Unknown, r.Verdict);
        Assert.Null(r.Model);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        // The solver is still usable after a timeout.
        Assert.Equal(SmtVerdict.Sat, quick.Check(BitVectorQuery).Verdict);
    }

    [Fact]
    public void Disposed_solver_refuses_work()
    {
        var s = new SmtSolver();
        s.Dispose();
        s.Dispose();

        Assert.Throws<ObjectDisposedException>(() => s.Check("(assert true)"));
        Assert.Throws<ObjectDisposedException>(() => s.Eval("(check-sat)"));
    }

    [Fact]
    public void Arguments_are_guarded()
    {
        Assert.Throws<ArgumentNullException>(() => solver.Check(null!));
        Assert.Throws<ArgumentNullException>(() => solver.Eval(null!));
        Assert.Throws<ArgumentNullException>(() => SmtModelParser.Parse(null!));
        Assert.Throws<ArgumentNullException>(() => SmtModelParser.ParseBitVector(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SmtSolver(timeoutMs: 0));
    }

    [Fact]
    public void Model_parser_reads_the_value_forms_Z3_prints()
    {
        const string model = """
            (
              ;; universe for U:
              ;;   U!val!0
              (declare-fun U!val!0 () U)
              (define-fun t () Bool
                true)
              (define-fun f () Bool
                false)
              (define-fun hex () (_ BitVec 8)
                #x0b)
              (define-fun bin () (_ BitVec 4)
                #b0101)
              (define-fun dec () (_ BitVec 4)
                (_ bv11 4))
              (define-fun n () Int
                42)
              (define-fun neg () Int
                (- 3))
              (define-fun |odd name| () Int
                0)
              (define-fun a () (Array Int Int)
                ((as const (Array Int Int)) 0))
              (define-fun g ((x!0 Int)) Int
                4)
            )
            """;

        Dictionary<string, string> values = SmtModelParser.Parse(model);

        Assert.Equal("true", values["t"]);
        Assert.Equal("false", values["f"]);
        Assert.Equal("#x0b", values["hex"]);
        Assert.Equal("#b0101", values["bin"]);
        Assert.Equal("(_ bv11 4)", values["dec"]);
        Assert.Equal("42", values["n"]);
        Assert.Equal("(- 3)", values["neg"]);
        Assert.Equal("0", values["odd name"]);
        Assert.Equal("((as const (Array Int Int)) 0)", values["a"]);
        Assert.False(values.ContainsKey("g"));
        Assert.False(values.ContainsKey("U!val!0"));
        Assert.Equal(9, values.Count);
    }

    [Fact]
    public void Model_parser_accepts_the_older_model_keyword_form()
    {
        Dictionary<string, string> values = SmtModelParser.Parse("(model (define-fun x () Int (- 3)))");

        Assert.Equal("(- 3)", Assert.Single(values).Value);
    }

    [Fact]
    public void Model_parser_rejects_unbalanced_text()
    {
        Assert.Throws<FormatException>(() => SmtModelParser.Parse("((define-fun x () Int 1)"));
        Assert.Throws<FormatException>(() => SmtModelParser.Parse("(define-fun x () Int 1))"));
    }

    [Theory]
    [InlineData("#x0b", 11UL)]
    [InlineData("#xFF", 255UL)]
    [InlineData("#b0101", 5UL)]
    [InlineData("(_ bv11 4)", 11UL)]
    [InlineData("(_  bv0  1)", 0UL)]
    [InlineData("#xffffffffffffffff", ulong.MaxValue)]
    [InlineData("#x0000000000000000000001", 1UL)]
    [InlineData(" #b1 ", 1UL)]
    public void Bit_vector_values_parse_to_their_unsigned_value(string text, ulong expected)
    {
        Assert.Equal(expected, SmtModelParser.ParseBitVector(text));
        Assert.True(SmtModelParser.TryParseBitVector(text, out ulong v));
        Assert.Equal(expected, v);
    }

    [Theory]
    [InlineData("")]
    [InlineData("12")]
    [InlineData("#x")]
    [InlineData("#xg1")]
    [InlineData("#b012")]
    [InlineData("(_ bv 4)")]
    [InlineData("(_ bvx1 4)")]
    [InlineData("(- 3)")]
    [InlineData("(_ bv11 4")]
    public void Non_bit_vector_text_is_rejected(string text)
    {
        Assert.Throws<FormatException>(() => SmtModelParser.ParseBitVector(text));
        Assert.False(SmtModelParser.TryParseBitVector(text, out _));
    }

    [Fact]
    public void Bit_vector_values_beyond_64_bits_overflow()
    {
        Assert.Throws<OverflowException>(() => SmtModelParser.ParseBitVector("#x10000000000000000"));
        Assert.Throws<OverflowException>(() => SmtModelParser.ParseBitVector("(_ bv18446744073709551616 65)"));
        Assert.False(SmtModelParser.TryParseBitVector("#x10000000000000000", out _));
    }
}
