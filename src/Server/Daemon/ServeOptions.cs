using System.Globalization;
using System.Text.Json.Nodes;

namespace Verified.Server.Daemon;

/// <summary>Where a QMP monitor listens.</summary>
/// <param name="UnixPath">The socket path, or null for standard input and output.</param>
public sealed record QmpEndpoint(string? UnixPath)
{
    /// <summary>True for the stdio monitor.</summary>
    public bool IsStdio => UnixPath is null;
}

/// <summary>A command to run at startup, from a qemu-storage-daemon option, in option order.</summary>
/// <param name="Option">The option it came from, for error messages.</param>
/// <param name="Command">The QMP command.</param>
/// <param name="Arguments">Its arguments.</param>
public sealed record StartupCommand(string Option, string Command, JsonObject Arguments);

/// <summary>
/// The options of <c>verified serve</c>: <c>--qmp stdio|unix:PATH</c> plus qemu-storage-daemon's
/// <c>--blockdev</c>, <c>--object</c>, <c>--nbd-server</c>, <c>--export</c> (JSON, or key=value with
/// dotted keys), and <c>--chardev socket,…,id=X</c> with <c>--monitor chardev=X</c>.
/// </summary>
public sealed class ServeOptions
{
    /// <summary>Options accepted on one command line (a bound against runaway argument lists).</summary>
    public const int OptionsMax = 4096;

    /// <summary>Monitors to open.</summary>
    public IReadOnlyList<QmpEndpoint> Monitors => monitors;

    /// <summary>Where to write the daemon's pid once it serves (qemu-storage-daemon's --pidfile), or null.</summary>
    public string? PidFile { get; private set; }

    /// <summary>Detach once serving, the parent exiting 0 then (qemu-storage-daemon's --daemonize).</summary>
    public bool Daemonize { get; private set; }

    /// <summary>Commands to run before serving, in order.</summary>
    public IReadOnlyList<StartupCommand> Startup => startup;

    private readonly List<QmpEndpoint> monitors = [];
    private readonly List<StartupCommand> startup = [];
    private readonly Dictionary<string, string> chardevs = new(StringComparer.Ordinal);

    /// <summary>Parses the arguments after <c>serve</c>; throws <see cref="ArgumentException"/> with a message for the user.</summary>
    public static ServeOptions Parse(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Count > OptionsMax) throw new ArgumentException($"too many arguments (at most {OptionsMax})");
        var o = new ServeOptions();
        for (int i = 0; i < args.Count; i++)
        {
            var (name, inlineValue) = SplitOption(args[i]);
            string Value() => inlineValue ?? (++i < args.Count ? args[i] : throw new ArgumentException($"option '{name}' needs a value"));
            switch (name)
            {
                case "--qmp": o.AddQmp(Value()); break;
                case "--blockdev": o.startup.Add(new(name, "blockdev-add", Typed(Structured(Value(), null), BlockdevBools, BlockdevInts))); break;
                case "--object": o.startup.Add(new(name, "object-add", Typed(Structured(Value(), "qom-type"), [], ObjectInts))); break;
                case "--nbd-server": o.startup.Add(new(name, "nbd-server-start", NbdServer(Structured(Value(), null)))); break;
                case "--export": o.startup.Add(new(name, "block-export-add", Typed(Structured(Value(), null), ExportBools, []))); break;
                case "--chardev": o.AddChardev(Value()); break;
                case "--monitor": o.AddMonitor(Value()); break;
                case "--pidfile": o.PidFile = Value(); break;
                case "--daemonize": o.Daemonize = true; break;
                default: throw new ArgumentException($"unknown option '{args[i]}'");
            }
        }
        if (o.monitors.Count == 0) throw new ArgumentException("no monitor: give --qmp stdio, --qmp unix:PATH, or --chardev with --monitor");
        if (o.monitors.Count(m => m.IsStdio) > 1) throw new ArgumentException("only one monitor can use stdio");
        if (o.Daemonize && o.monitors.Any(m => m.IsStdio)) throw new ArgumentException("cannot use stdio with --daemonize");
        return o;
    }

    private static (string Name, string? Value) SplitOption(string arg)
    {
        int eq = arg.IndexOf('=', StringComparison.Ordinal);
        return arg.StartsWith("--", StringComparison.Ordinal) && eq > 2 ? (arg[..eq], arg[(eq + 1)..]) : (arg, null);
    }

    private void AddQmp(string value)
    {
        if (value == "stdio") monitors.Add(new QmpEndpoint(null));
        else if (value.StartsWith("unix:", StringComparison.Ordinal))
        {
            // QEMU's -qmp unix:PATH,server=on,wait=off: the options after the path mean what Verified always does.
            var path = value["unix:".Length..].Split(',')[0];
            if (path.Length == 0) throw new ArgumentException("--qmp unix: needs a path");
            monitors.Add(new QmpEndpoint(path));
        }
        else throw new ArgumentException($"--qmp takes 'stdio' or 'unix:PATH', not '{value}'");
    }

    private void AddChardev(string value)
    {
        var kv = KeyValues(value, "backend");
        string Get(string k) => kv.TryGetValue(k, out var v) ? v : throw new ArgumentException($"--chardev: '{k}' is missing");
        if (Get("backend") != "socket") throw new ArgumentException($"--chardev: only the 'socket' backend is supported, not '{Get("backend")}'");
        if (!IsOn(kv.GetValueOrDefault("server", "off"))) throw new ArgumentException("--chardev: only server=on sockets are supported");
        if (IsOn(kv.GetValueOrDefault("wait", "on"))) throw new ArgumentException("--chardev: only wait=off is supported");
        foreach (var k in kv.Keys)
        {
            if (k is not ("backend" or "id" or "path" or "server" or "wait")) throw new ArgumentException($"--chardev: option '{k}' is not supported");
        }
        var id = Get("id");
        if (!chardevs.TryAdd(id, Get("path"))) throw new ArgumentException($"attempt to add duplicate property '{id}' to object (type 'container')");
    }

    private void AddMonitor(string value)
    {
        var kv = KeyValues(value, "chardev");
        if (kv.GetValueOrDefault("mode", "control") != "control") throw new ArgumentException("--monitor: only mode=control (QMP) is supported");
        if (IsOn(kv.GetValueOrDefault("pretty", "off"))) throw new ArgumentException("--monitor: pretty=on is not supported");
        var id = kv.TryGetValue("chardev", out var c) ? c : throw new ArgumentException("--monitor: 'chardev' is missing");
        if (!chardevs.TryGetValue(id, out var path)) throw new ArgumentException($"chardev \"{id}\" not found");
        monitors.Add(new QmpEndpoint(path));
    }

    private static bool IsOn(string v) => v switch
    {
        "on" or "yes" or "true" => true,
        "off" or "no" or "false" => false,
        _ => throw new ArgumentException($"'{v}' is not on or off"),
    };

    /// <summary>A JSON object as given, or key=value pairs with dotted keys made into nested objects (values stay strings).</summary>
    internal static JsonObject Structured(string value, string? impliedKey)
    {
        if (value.TrimStart().StartsWith('{'))
        {
            try
            {
                return JsonNode.Parse(value) as JsonObject ?? throw new ArgumentException($"not a JSON object: {value}");
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new ArgumentException($"bad JSON: {e.Message}");
            }
        }
        var root = new JsonObject();
        foreach (var (key, v) in KeyValues(value, impliedKey))
        {
            var parts = key.Split('.');
            var at = root;
            foreach (var p in parts[..^1])
            {
                if (at[p] is not JsonObject next)
                {
                    if (at.ContainsKey(p)) throw new ArgumentException($"Parameter '{key}' conflicts with '{p}'");
                    at[p] = next = [];
                }
                at = next;
            }
            if (at.ContainsKey(parts[^1])) throw new ArgumentException($"Parameter '{key}' is given twice");
            at[parts[^1]] = v;
        }
        return root;
    }

    /// <summary>QEMU's key=value syntax: comma-separated, ",," for a literal comma, an implied key for a first item without '='.</summary>
    internal static Dictionary<string, string> KeyValues(string value, string? impliedKey)
    {
        var items = new List<string>();
        var cur = new System.Text.StringBuilder();
        for (int i = 0; i < value.Length; i++)
        {
            if (value[i] == ',' && i + 1 < value.Length && value[i + 1] == ',')
            {
                cur.Append(',');
                i++;
            }
            else if (value[i] == ',')
            {
                items.Add(cur.ToString());
                cur.Clear();
            }
            else cur.Append(value[i]);
        }
        items.Add(cur.ToString());
        var kv = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < items.Count; i++)
        {
            int eq = items[i].IndexOf('=', StringComparison.Ordinal);
            var (k, v) = eq >= 0 ? (items[i][..eq], items[i][(eq + 1)..])
                : i == 0 && impliedKey is not null ? (impliedKey, items[i])
                : throw new ArgumentException($"expected key=value, got '{items[i]}'");
            if (k.Length == 0) throw new ArgumentException($"empty key in '{value}'");
            if (!kv.TryAdd(k, v)) throw new ArgumentException($"Parameter '{k}' is given twice");
        }
        return kv;
    }

    // key=value gives strings; QEMU's keyval visitor types them by the schema. These are the members
    // of the options Verified accepts that are not strings (JSON input is taken as typed).
    private static readonly string[] BlockdevBools = ["read-only", "auto-read-only", "force-share", "cache.direct", "cache.no-flush", "writable"];
    private static readonly string[] BlockdevInts = ["offset", "size", "granularity"];
    private static readonly string[] ExportBools = ["writable", "writethrough", "allocation-depth", "fixed-iothread"];
    private static readonly string[] ObjectInts = ["poll-max-ns", "poll-grow", "poll-shrink", "aio-max-batch"];

    private static JsonObject Typed(JsonObject o, string[] bools, string[] ints, string prefix = "")
    {
        foreach (var (k, v) in o.ToList())
        {
            var path = prefix + k;
            if (v is JsonObject child) Typed(child, bools, ints, path + ".");
            else if (v is JsonValue jv && jv.TryGetValue<string>(out var s))
            {
                if (bools.Contains(path)) o[k] = IsOn(s);
                else if (ints.Contains(path) || path.StartsWith("limits.", StringComparison.Ordinal))
                    o[k] = long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n : throw new ArgumentException($"Parameter '{path}' expects a number");
            }
        }
        return o;
    }

    /// <summary>
    /// qemu-storage-daemon's <c>--nbd-server</c> takes a flat SocketAddress (<c>addr.type=unix,addr.path=…</c>);
    /// nbd-server-start takes the legacy form (<c>{"type": "unix", "data": {"path": …}}</c>).
    /// </summary>
    private static JsonObject NbdServer(JsonObject o)
    {
        if (o["addr"] is JsonObject addr && addr["type"] is JsonValue t && !addr.ContainsKey("data"))
        {
            var data = new JsonObject();
            foreach (var (k, v) in addr.ToList().Where(kv => kv.Key != "type")) data[k] = v?.DeepClone();
            o["addr"] = new JsonObject { ["type"] = t.DeepClone(), ["data"] = data };
        }
        if (o["max-connections"] is JsonValue mc && mc.TryGetValue<string>(out var s))
            o["max-connections"] = long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new ArgumentException("Parameter 'max-connections' expects a number");
        return o;
    }
}
