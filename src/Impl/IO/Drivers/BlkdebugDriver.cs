using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.IO;

/// <summary>
/// The <c>blkdebug</c> filter (QEMU's block/blkdebug.c): forwards to its <c>image</c> child and injects
/// errors by rule.
/// </summary>
/// <remarks>
/// <para>As in QEMU, a rule does nothing until its <em>event</em> happens: an event (announced by the
/// parent through <see cref="DebugEvent"/>; raw announces <c>read_aio</c> before each read and
/// <c>write_aio</c> before each write, and this node announces <c>pwritev</c>, <c>pwritev_zero</c> and
/// <c>pwritev_done</c> around its own writes) makes the inject-error rules listed for it, in the current
/// state, the active set, replacing the previous one. Every later request on this node is then checked
/// against the active rules: the first whose <c>iotype</c> matches (default: read, write, write-zeroes,
/// discard and flush) and whose <c>sector</c> lies in the request (any request without a sector) fails
/// with its <c>errno</c> (default EIO). A <c>once</c> rule is deleted when it fires. <c>set-state</c>
/// rules move the state machine (initial state 1; a rule with <c>state</c> 0 or absent applies in every
/// state). <c>immediately</c> only changes when QEMU completes the failure, which is unobservable here.</para>
/// <para><c>align</c>: QEMU raises the node's request alignment and its block layer pads requests. Here
/// this driver pads them itself: reads are widened to aligned bounds (clamped at the end of the node)
/// and copied out; writes do read-modify-write (the padding reads are checked as reads), serialised
/// with overlapping writes; discards shrink to the aligned range inside the request, as the block layer does;
/// write-zeroes pass through unpadded. <c>max-transfer</c> splits reads and writes into chunks, each
/// checked against the rules. <c>config</c> reads rules from a QEMU config file ([inject-error] and
/// [set-state] groups). <c>take-child-perms</c>/<c>unshare-child-perms</c> are permission rules, applied
/// by the engine's permission rules, not here.</para>
/// </remarks>
[BlockDriverName("blkdebug")]
public sealed class BlkdebugDriver : BlockDriver
{
    /// <summary>Event: a format driver reads guest data.</summary>
    public const string ReadAio = "read_aio";
    /// <summary>Event: a format driver writes guest data.</summary>
    public const string WriteAio = "write_aio";
    /// <summary>Event: a parent flushes to the OS.</summary>
    public const string FlushToOs = "flush_to_os";
    /// <summary>Event: a parent flushes to the disk.</summary>
    public const string FlushToDisk = "flush_to_disk";
    /// <summary>Event: a write reaches this node.</summary>
    public const string Pwritev = "pwritev";
    /// <summary>Event: a write-zeroes reaches this node.</summary>
    public const string PwritevZero = "pwritev_zero";
    /// <summary>Event: a write on this node completed.</summary>
    public const string PwritevDone = "pwritev_done";

    /// <summary>The state a blkdebug node starts in.</summary>
    public const int InitialState = 1;

    /// <summary>"Any sector" / "any state".</summary>
    private const long AnySector = -1;

    /// <summary>Upper bound (exclusive) of align and max-transfer, QEMU's INT_MAX.</summary>
    private const long LimitMax = int.MaxValue;

    /// <summary>QAPI's BlkdebugEvent values in QEMU 7.2.</summary>
    private static readonly HashSet<string> EventNames = new(StringComparer.Ordinal)
    {
        "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table", "l2_load", "l2_update",
        "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write", "read_aio", "read_backing_aio", "read_compressed",
        "write_aio", "write_compressed", "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load",
        "reftable_grow", "reftable_update", "refblock_load", "refblock_update", "refblock_update_part", "refblock_alloc",
        "refblock_alloc_hookup", "refblock_alloc_write", "refblock_alloc_write_blocks", "refblock_alloc_write_table",
        "refblock_alloc_switch_table", "cluster_alloc", "cluster_alloc_bytes", "cluster_free", "flush_to_os",
        "flush_to_disk", "pwritev_rmw_head", "pwritev_rmw_after_head", "pwritev_rmw_tail", "pwritev_rmw_after_tail",
        "pwritev", "pwritev_zero", "pwritev_done", "empty_image_prepare", "l1_shrink_write_table",
        "l1_shrink_free_l2_clusters", "cor_write", "cluster_alloc_space", "none",
    };

    /// <summary>QAPI's BlkdebugIOType, in bit order.</summary>
    private static readonly string[] IoTypeNames = ["read", "write", "write-zeroes", "discard", "flush", "block-status"];

    private enum IoType { Read, Write, WriteZeroes, Discard, Flush }

    /// <summary>Without an iotype a rule matches every request type except block-status.</summary>
    private const int DefaultIoTypeMask = (1 << (int)IoType.Read) | (1 << (int)IoType.Write) | (1 << (int)IoType.WriteZeroes)
        | (1 << (int)IoType.Discard) | (1 << (int)IoType.Flush);

    private sealed class Rule
    {
        public required string Event { get; init; }
        public bool Inject { get; init; }
        public long State { get; init; }
        public int Errno { get; init; }
        public bool Once { get; init; }
        public long Offset { get; init; } = AnySector;
        public int IoTypeMask { get; init; } = DefaultIoTypeMask;
        public long NewState { get; init; }
    }

    private readonly object ruleLock = new();
    private readonly Dictionary<string, List<Rule>> rules = new(StringComparer.Ordinal);
    private readonly List<Rule> active = [];
    private readonly RangeLock rmw = new();
    private long state = InitialState;
    private long align = 1;
    private long maxTransfer;

    /// <summary>The current state of the rule state machine.</summary>
    public long State
    {
        get
        {
            lock (ruleLock) return state;
        }
    }

    private BdrvChild Image => Node.Child("image") ?? throw new BlockIOException(Errnos.EIO, $"'{Node.Name}' has no image");

    /// <inheritdoc/>
    public override long Length => Node.Child("image")?.Node.Length ?? 0;

    /// <summary>Announces <paramref name="evt"/> to <paramref name="child"/>'s node if it is a blkdebug node (QEMU's BLKDBG_EVENT).</summary>
    public static void DebugEvent(BdrvChild? child, string evt)
    {
        if (child?.Node.Driver is BlkdebugDriver b) b.OnEvent(evt);
    }

    /// <inheritdoc/>
    protected internal override QmpError? Open(EngineServices services)
    {
        var ruleOptions = new List<(string Group, JsonObject Opts)>();
        if (Node.Str("config") is { } config)
        {
            var err = ReadConfig(config, ruleOptions);
            if (err is not null) return err;
        }
        if (Node.Options.TryGetValue("inject-error", out var inject))
            foreach (var o in JsonNode.Parse(inject)!.AsArray()) ruleOptions.Add(("inject-error", o!.AsObject()));
        if (Node.Options.TryGetValue("set-state", out var setState))
            foreach (var o in JsonNode.Parse(setState)!.AsArray()) ruleOptions.Add(("set-state", o!.AsObject()));
        // QEMU adds all inject-error rules, then all set-state rules, each at the head of its event's list.
        foreach (var group in new[] { "inject-error", "set-state" })
        {
            foreach (var (g, o) in ruleOptions)
            {
                if (g != group) continue;
                var (rule, err) = ParseRule(o, g == "inject-error");
                if (err is not null) return err;
                if (!rules.TryGetValue(rule!.Event, out var list)) rules[rule.Event] = list = [];
                list.Insert(0, rule);
            }
        }

        long a = DriverOptions.Int(Node, "align") ?? 0;
        if (a != 0 && (a < 0 || a >= LimitMax || (a & (a - 1)) != 0))
            return QmpError.Generic($"Cannot meet constraints with align {unchecked((ulong)a)}");
        align = Math.Max(a, 1);
        long mt = DriverOptions.Int(Node, "max-transfer") ?? 0;
        if (mt != 0 && (mt < 0 || mt >= LimitMax || mt % align != 0))
            return QmpError.Generic($"Cannot meet constraints with max-transfer {unchecked((ulong)mt)}");
        maxTransfer = mt;
        return null;
    }

    /// <inheritdoc/>
    public override async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        if (align == 1)
        {
            await ReadChunks(offset, buffer).ConfigureAwait(false);
            return;
        }
        long start = AlignDown(offset), end = Math.Min(AlignUp(offset + buffer.Length), Length);
        if (start == offset && end == offset + buffer.Length)
        {
            await ReadChunks(offset, buffer).ConfigureAwait(false);
            return;
        }
        var padded = new byte[end - start];
        await ReadChunks(start, padded).ConfigureAwait(false);
        padded.AsMemory((int)(offset - start), buffer.Length).CopyTo(buffer);
    }

    /// <inheritdoc/>
    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        long start = AlignDown(offset), end = Math.Min(AlignUp(offset + data.Length), Length);
        if (align == 1)
        {
            OnEvent(Pwritev);
            await WriteChunks(offset, data, flags).ConfigureAwait(false);
            OnEvent(PwritevDone);
            return;
        }
        // Writes over overlapping padded ranges are serialised so a read-modify-write cannot lose a write.
        using (await rmw.AcquireAsync(start, end).ConfigureAwait(false))
        {
            if (start == offset && end == offset + data.Length)
            {
                OnEvent(Pwritev);
                await WriteChunks(offset, data, flags).ConfigureAwait(false);
                OnEvent(PwritevDone);
                return;
            }
            var padded = new byte[end - start];
            bool needHead = start != offset, needTail = end != offset + data.Length;
            if (needHead) await ReadChunks(start, padded.AsMemory(0, (int)Math.Min(align, end - start))).ConfigureAwait(false);
            long tail = AlignDown(end - 1);
            if (needTail && (tail > start || !needHead)) await ReadChunks(tail, padded.AsMemory((int)(tail - start))).ConfigureAwait(false);
            data.CopyTo(padded.AsMemory((int)(offset - start)));
            OnEvent(Pwritev);
            await WriteChunks(start, padded, flags).ConfigureAwait(false);
            OnEvent(PwritevDone);
        }
    }

    /// <inheritdoc/>
    public override async ValueTask WriteZeroesAsync(long offset, long length, WriteFlags flags)
    {
        OnEvent(PwritevZero);
        RuleCheck(offset, length, IoType.WriteZeroes);
        if (!DriverOptions.UnmapAllowed(Node)) flags &= ~WriteFlags.MayUnmap;
        await Image.Node.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
        OnEvent(PwritevDone);
    }

    /// <inheritdoc/>
    public override ValueTask DiscardAsync(long offset, long length)
    {
        if (!DriverOptions.UnmapAllowed(Node)) return ValueTask.CompletedTask;
        // The block layer drops the unaligned head and tail of a discard.
        long start = AlignUp(offset), end = AlignDown(offset + length);
        if (end <= start) return ValueTask.CompletedTask;
        RuleCheck(start, end - start, IoType.Discard);
        return Image.Node.DiscardAsync(start, end - start);
    }

    /// <inheritdoc/>
    public override ValueTask FlushAsync()
    {
        RuleCheck(0, 0, IoType.Flush);
        return Image.Node.FlushAsync();
    }

    private async ValueTask ReadChunks(long offset, Memory<byte> buffer)
    {
        long chunk = maxTransfer > 0 ? maxTransfer : Math.Max(buffer.Length, 1);
        int done = 0;
        do
        {
            var part = buffer.Slice(done, (int)Math.Min(chunk, buffer.Length - done));
            RuleCheck(offset + done, part.Length, IoType.Read);
            await Image.Node.ReadAsync(offset + done, part).ConfigureAwait(false);
            done += part.Length;
        }
        while (done < buffer.Length);
    }

    private async ValueTask WriteChunks(long offset, ReadOnlyMemory<byte> data, WriteFlags flags)
    {
        long chunk = maxTransfer > 0 ? maxTransfer : Math.Max(data.Length, 1);
        int done = 0;
        do
        {
            var part = data.Slice(done, (int)Math.Min(chunk, data.Length - done));
            RuleCheck(offset + done, part.Length, IoType.Write);
            await Image.Node.WriteAsync(offset + done, part, flags).ConfigureAwait(false);
            done += part.Length;
        }
        while (done < data.Length);
    }

    /// <summary>blkdebug_debug_event: the event's rules for the current state act; inject rules become the active set.</summary>
    private void OnEvent(string evt)
    {
        lock (ruleLock)
        {
            if (!rules.TryGetValue(evt, out var list)) return;
            long newState = state;
            int injected = 0;
            foreach (var rule in list.ToList())
            {
                if (rule.State != 0 && rule.State != state) continue;
                if (rule.Inject)
                {
                    if (++injected == 1) active.Clear();
                    active.Insert(0, rule);
                }
                else
                {
                    newState = rule.NewState;
                }
            }
            state = newState;
        }
    }

    /// <summary>rule_check: fails the request if an active rule matches its type and range.</summary>
    private void RuleCheck(long offset, long bytes, IoType type)
    {
        int errno;
        lock (ruleLock)
        {
            var rule = active.Find(r => (r.Offset == AnySector || (bytes > 0 && r.Offset >= offset && r.Offset < offset + bytes))
                && (r.IoTypeMask & (1 << (int)type)) != 0);
            if (rule is null || rule.Errno == 0) return;
            errno = rule.Errno;
            if (rule.Once)
            {
                active.Remove(rule);
                rules[rule.Event].Remove(rule);
            }
        }
        throw new BlockIOException(errno, $"blkdebug '{Node.Name}': injected error: {LinuxNative.ErrnoText(errno)}");
    }

    private static (Rule? Rule, QmpError? Error) ParseRule(JsonObject o, bool inject)
    {
        string evt = Text(o["event"]) ?? "";
        if (!EventNames.Contains(evt)) return (null, QmpError.Generic($"invalid parameter value: {evt}"));
        long st = Number(o["state"]) ?? 0;
        if (!inject) return (new Rule { Event = evt, State = st, NewState = Number(o["new_state"]) ?? 0 }, null);
        int mask = DefaultIoTypeMask;
        if (Text(o["iotype"]) is { } io)
        {
            int i = Array.IndexOf(IoTypeNames, io);
            if (i < 0) return (null, QmpError.Generic($"invalid parameter value: {io}"));
            mask = 1 << i;
        }
        long sector = Number(o["sector"]) ?? AnySector;
        return (new Rule
        {
            Event = evt,
            Inject = true,
            State = st,
            Errno = (int)(Number(o["errno"]) ?? Errnos.EIO),
            Once = Flag(o["once"]),
            Offset = sector == AnySector ? AnySector : sector * DriverOptions.SectorSize,
            IoTypeMask = mask,
        }, null);
    }

    /// <summary>Reads a QEMU config file: <c>[group]</c> lines, <c>key = "value"</c> lines, <c>#</c> comments.</summary>
    private static QmpError? ReadConfig(string path, List<(string, JsonObject)> into)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            int errno = e is FileNotFoundException or DirectoryNotFoundException ? 2 : e is UnauthorizedAccessException ? LinuxNative.EACCES : Errnos.EIO;
            return QmpError.Generic($"Could not read blkdebug config file: {LinuxNative.ErrnoText(errno)}");
        }
        JsonObject? current = null;
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            if (line[0] == '[')
            {
                var name = line.TrimStart('[').TrimEnd(']').Trim();
                if (name is not ("inject-error" or "set-state")) return QmpError.Generic("Could not parse blkdebug config file");
                current = [];
                into.Add((name, current));
                continue;
            }
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (current is null || eq <= 0) return QmpError.Generic("Could not parse blkdebug config file");
            current[line[..eq].Trim()] = line[(eq + 1)..].Trim().Trim('"');
        }
        return null;
    }

    private static string? Text(JsonNode? n) => n?.ToString();

    /// <summary>Numbers come as JSON numbers from QMP and as strings from config files.</summary>
    private static long? Number(JsonNode? n) => n is null ? null : long.Parse(n.ToString(), CultureInfo.InvariantCulture);

    private static bool Flag(JsonNode? n) => n?.ToString() is "true" or "on";

    private long AlignDown(long x) => x - (x % align);

    private long AlignUp(long x) => AlignDown(x + align - 1);
}
