namespace Verified.Cli.Bench;

/// <summary>
/// <c>qemu-img bench</c>'s options, with QEMU 7.2's defaults: 75,000 read requests of 4 KiB, 64 in
/// flight, from offset 0 with a step equal to the buffer size, cache=writeback, no flushes.
/// </summary>
public sealed record BenchOptions
{
    /// <summary>QEMU's default request count (<c>-c</c>).</summary>
    public const int DefaultCount = 75000;

    /// <summary>QEMU's default queue depth (<c>-d</c>).</summary>
    public const int DefaultDepth = 64;

    /// <summary>QEMU's default buffer size (<c>-s</c>).</summary>
    public const int DefaultBufferSize = 4096;

    /// <summary>Number of requests (<c>-c</c>).</summary>
    public int Count { get; init; } = DefaultCount;

    /// <summary>Requests kept in flight (<c>-d</c>).</summary>
    public int Depth { get; init; } = DefaultDepth;

    /// <summary>Image format or protocol driver (<c>-f</c>), null to probe.</summary>
    public string? Format { get; init; }

    /// <summary>AIO mode (<c>-i</c> threads/native/io_uring; <c>-n</c> is native), null for the default.</summary>
    public string? Aio { get; init; }

    /// <summary>First request's offset (<c>-o</c>).</summary>
    public long Offset { get; init; }

    /// <summary>Bytes per request (<c>-s</c>).</summary>
    public int BufferSize { get; init; } = DefaultBufferSize;

    /// <summary>Offset step (<c>-S</c>); 0 means the buffer size.</summary>
    public int Step { get; init; }

    /// <summary>Cache mode (<c>-t</c>) as QEMU names it.</summary>
    public string CacheMode { get; init; } = "writeback";

    /// <summary>Write instead of read (<c>-w</c>).</summary>
    public bool Write { get; init; }

    /// <summary>Byte the buffer is filled with (<c>--pattern</c>).</summary>
    public byte Pattern { get; init; }

    /// <summary>Flush after every N requests (<c>--flush-interval</c>), 0 for never.</summary>
    public int FlushInterval { get; init; }

    /// <summary>Wait for in-flight requests before each flush (cleared by <c>--no-drain</c>).</summary>
    public bool DrainOnFlush { get; init; } = true;

    /// <summary>The file name is a key=value option string (<c>--image-opts</c>).</summary>
    public bool ImageOpts { get; init; }

    /// <summary>Quiet (<c>-q</c>): as in qemu-img, the bench lines are printed all the same.</summary>
    public bool Quiet { get; init; }

    /// <summary>Share every permission with other users of the image (<c>-U</c>).</summary>
    public bool ForceShare { get; init; }

    /// <summary>The image (or its option string).</summary>
    public string Filename { get; init; } = "";

    /// <summary>The effective step: the buffer size when none was given.</summary>
    public int EffectiveStep => Step != 0 ? Step : BufferSize;

    /// <summary>O_DIRECT (cache modes none/off and directsync).</summary>
    public bool CacheDirect => CacheMode is "none" or "off" or "directsync";

    /// <summary>Flushes do nothing (cache mode unsafe).</summary>
    public bool CacheNoFlush => CacheMode == "unsafe";

    /// <summary>Writes complete only when stable (writethrough and directsync: the write cache is off).</summary>
    public bool WriteThrough => CacheMode is "writethrough" or "directsync";

    /// <summary>The cache modes QEMU's bdrv_parse_cache_mode accepts.</summary>
    public static readonly IReadOnlyList<string> CacheModes = ["none", "off", "directsync", "writeback", "unsafe", "writethrough"];
}

/// <summary>
/// A refusal with qemu-img's text and exit code. <see cref="Lines"/> are printed to stderr each behind the
/// program's name; <see cref="TryHelp"/> adds qemu-img's "Try ... --help" line (its error_exit).
/// </summary>
public sealed class BenchError : Exception
{
    /// <summary>Creates a refusal of one or more lines.</summary>
    public BenchError(int exitCode, bool tryHelp, params string[] lines) : base(string.Join("\n", lines))
    {
        ExitCode = exitCode;
        TryHelp = tryHelp;
        Lines = lines;
    }

    /// <summary>Creates a refusal with exit code 1.</summary>
    public BenchError() : this(1, false, "error") { }

    /// <summary>Creates a refusal with exit code 1.</summary>
    public BenchError(string message) : this(1, false, message) { }

    /// <summary>Creates a refusal with exit code 1 and a cause.</summary>
    public BenchError(string message, Exception inner) : base(message, inner)
    {
        ExitCode = 1;
        Lines = [message];
    }

    /// <summary>The process's exit code (qemu-img exits 1 on every refusal).</summary>
    public int ExitCode { get; }

    /// <summary>Whether qemu-img adds "Try 'qemu-img --help' for more information".</summary>
    public bool TryHelp { get; }

    /// <summary>The error lines, without the program name.</summary>
    public IReadOnlyList<string> Lines { get; }
}
