namespace Verified.Cli.Bench;

/// <summary>
/// Parses <c>qemu-img bench</c>'s command line the way QEMU 7.2 does: glibc getopt_long with the option
/// string <c>":hc:d:f:ni:o:qs:S:t:wU"</c> (options and operands in any order, clustered short options,
/// <c>-cVALUE</c>, <c>--long=VALUE</c>, unambiguous long-option prefixes, <c>--</c> ending options), each
/// value checked as it is met, with qemu-img's error texts; then exactly one image name.
/// </summary>
public static class BenchArgs
{
    /// <summary>Short options that take a value.</summary>
    private const string ShortWithValue = "cdfiosSt";

    /// <summary>Short options without a value.</summary>
    private const string ShortFlags = "hnqwU";

    /// <summary>Long options and whether each takes a value.</summary>
    private static readonly (string Name, bool HasValue)[] LongOptions =
    [
        ("help", false), ("flush-interval", true), ("image-opts", false), ("pattern", true), ("no-drain", false), ("force-share", false),
    ];

    /// <summary>Largest value of a C int: the bound of every count qemu-img takes.</summary>
    private const ulong IntMax = int.MaxValue;

    /// <summary>Largest pattern byte.</summary>
    private const ulong ByteMax = 0xff;

    /// <summary>
    /// Parses the arguments after <c>bench</c>. Returns null for <c>-h</c>/<c>--help</c>; throws
    /// <see cref="BenchError"/> with qemu-img's message and exit code for bad input. <paramref name="warn"/>
    /// receives the warnings qemu-img prints and carries on after (a suffix on a hex size).
    /// </summary>
    public static BenchOptions? Parse(IReadOnlyList<string> args, Action<string>? warn = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        var o = new BenchOptions();
        var operands = new List<string>();
        bool nativeFlag = false, uringFlag = false;
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a == "--")
            {
                operands.AddRange(args.Skip(i + 1));
                break;
            }
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                int eq = a.IndexOf('=', StringComparison.Ordinal);
                string name = eq < 0 ? a[2..] : a[2..eq];
                var matches = LongOptions.Where(l => l.Name == name).ToArray();
                if (matches.Length == 0) matches = LongOptions.Where(l => l.Name.StartsWith(name, StringComparison.Ordinal)).ToArray();
                if (matches.Length != 1 || (!matches[0].HasValue && eq >= 0)) throw Unrecognized(a);
                string? value = null;
                if (matches[0].HasValue)
                {
                    if (eq >= 0) value = a[(eq + 1)..];
                    else if (i + 1 < args.Count) value = args[++i];
                    else throw Missing(a);
                }
                switch (matches[0].Name)
                {
                    case "help": return null;
                    case "flush-interval": o = o with { FlushInterval = (int)UL(value!, IntMax, "Invalid flush interval specified") }; break;
                    case "image-opts": o = o with { ImageOpts = true }; break;
                    case "pattern": o = o with { Pattern = (byte)UL(value!, ByteMax, "Invalid pattern byte specified") }; break;
                    case "no-drain": o = o with { DrainOnFlush = false }; break;
                    default: o = o with { ForceShare = true }; break;
                }
                continue;
            }
            if (a.Length < 2 || a[0] != '-')
            {
                operands.Add(a);
                continue;
            }
            for (int k = 1; k < a.Length; k++)
            {
                char c = a[k];
                if (ShortFlags.Contains(c, StringComparison.Ordinal))
                {
                    switch (c)
                    {
                        case 'h': return null;
                        case 'n': nativeFlag = true; break;
                        case 'q': o = o with { Quiet = true }; break;
                        case 'w': o = o with { Write = true }; break;
                        default: o = o with { ForceShare = true }; break;
                    }
                    continue;
                }
                if (!ShortWithValue.Contains(c, StringComparison.Ordinal)) throw Unrecognized(a);
                string value;
                if (k + 1 < a.Length) value = a[(k + 1)..];
                else if (i + 1 < args.Count) value = args[++i];
                else throw Missing(a);
                o = c switch
                {
                    'c' => o with { Count = (int)UL(value, IntMax, "Invalid request count specified") },
                    'd' => o with { Depth = (int)UL(value, IntMax, "Invalid queue depth specified") },
                    'f' => o with { Format = value },
                    'i' => value switch
                    {
                        "threads" => o,
                        "native" => Set(ref nativeFlag, o),
                        "io_uring" => Set(ref uringFlag, o),
                        _ => throw new BenchError(1, false, $"Invalid aio option: {value}"),
                    },
                    'o' => o with { Offset = (long)Size("offset", value, long.MaxValue, warn) },
                    's' => o with { BufferSize = (int)Size("buffer size", value, IntMax, warn) },
                    'S' => o with { Step = (int)Size("step_size", value, IntMax, warn) },
                    _ => BenchOptions.CacheModes.Contains(value) ? o with { CacheMode = value == "off" ? "none" : value } : throw new BenchError(1, false, "Invalid cache mode"),
                };
                break;
            }
        }

        // getopt moves operands to the end; qemu-img then wants exactly one.
        if (operands.Count != 1) throw new BenchError(1, true, "Expecting one image file name");
        o = o with { Filename = operands[0], Aio = nativeFlag ? "native" : uringFlag ? "io_uring" : null };
        if (!o.Write && o.FlushInterval != 0) throw new BenchError(1, false, "--flush-interval is only available in write tests");
        if (o.FlushInterval != 0 && o.FlushInterval < o.Depth) throw new BenchError(1, false, "Flush interval can't be smaller than depth");
        // QEMU 7.2 accepts depth 0 and then waits forever for requests it never sends: refuse it instead.
        if (o.Depth == 0 && o.Count > 0) throw new BenchError(1, false, "Invalid queue depth specified");
        return o;
    }

    private static BenchOptions Set(ref bool flag, BenchOptions o)
    {
        flag = true;
        return o;
    }

    private static BenchError Unrecognized(string arg) => new(1, true, $"unrecognized option '{arg}'");

    private static BenchError Missing(string arg) => new(1, true, $"missing argument for option '{arg}'");

    /// <summary>qemu_strtoul with base 0, refused above <paramref name="max"/>.</summary>
    private static ulong UL(string value, ulong max, string error) =>
        QemuNumbers.StrToUL(value) is { } v && v <= max ? v : throw new BenchError(1, false, error);

    /// <summary>qemu-img's cvtnum_full(name, value, 0, max).</summary>
    private static ulong Size(string name, string value, ulong max, Action<string>? warn)
    {
        var r = QemuNumbers.StrToSz(value);
        if (r.Error == QemuNumbers.SizeError.Invalid)
            throw new BenchError(1, false, $"Invalid {name} specified. You may use k, M, G, T, P or E suffixes for",
                "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        if (r.Error == QemuNumbers.SizeError.Range || r.Value > max)
            throw new BenchError(1, false, $"Invalid {name} specified. Must be between 0 and {max}.");
        if (r.HexSuffixWarning) warn?.Invoke($"warning: Using a multiplier suffix on hex numbers is deprecated: {value}");
        return r.Value;
    }
}
