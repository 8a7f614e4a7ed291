using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Verified.Server.Graph;

/// <summary>
/// Renders an <c>x-debug-query-block-graph</c> reply as Graphviz DOT, in the spirit of QEMU's
/// scripts/render_block_graph.py: driver nodes labelled with driver and node-name, backends (devices,
/// exports) and jobs as boxes, every edge labelled with its child name and its perm / shared perm.
/// </summary>
/// <remarks>Stateless and thread-safe. Output is deterministic: nodes by id, edges in reply order.</remarks>
public static class GraphDot
{
    /// <summary>Perm abbreviations used in edge labels (QEMU's four BlockPermission names).</summary>
    private static readonly Dictionary<string, string> PermLetters = new(StringComparer.Ordinal)
    {
        ["consistent-read"] = "R", ["write"] = "W", ["write-unchanged"] = "U", ["resize"] = "S",
    };

    /// <summary>The DOT text of <paramref name="graph"/>; <paramref name="drivers"/> maps node-names to driver names (from query-named-block-nodes).</summary>
    public static string Render(JsonObject graph, IReadOnlyDictionary<string, string> drivers)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(drivers);
        if (graph["nodes"] is not JsonArray nodes || graph["edges"] is not JsonArray edges)
            throw new ArgumentException("not an x-debug-query-block-graph reply: 'nodes' and 'edges' arrays are needed", nameof(graph));
        var sb = new StringBuilder();
        sb.Append("digraph block_graph {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n  edge [fontname=\"monospace\", fontsize=10];\n");
        foreach (var n in nodes.Select(x => x!.AsObject()).OrderBy(x => x["id"]!.GetValue<int>()))
        {
            int id = n["id"]!.GetValue<int>();
            var name = n["name"]?.GetValue<string>() ?? "";
            var type = n["type"]?.GetValue<string>() ?? "";
            var (shape, label) = type switch
            {
                "block-driver" => ("ellipse", $"{(drivers.TryGetValue(name, out var d) ? d : "?")}\n{name}"),
                "block-backend" => ("box", name.Length == 0 ? "(unnamed backend)" : name),
                "block-job" => ("octagon", $"job\n{name}"),
                _ => ("box", $"{type}\n{name}"),
            };
            sb.Append(CultureInfo.InvariantCulture, $"  n{id} [shape={shape}, label={Quote(label)}];\n");
        }
        foreach (var e in edges.Select(x => x!.AsObject()))
        {
            var label = $"{e["name"]?.GetValue<string>()}\n{Perms(e["perm"])} / {Perms(e["shared-perm"])}";
            sb.Append(CultureInfo.InvariantCulture, $"  n{e["parent"]!.GetValue<int>()} -> n{e["child"]!.GetValue<int>()} [label={Quote(label)}];\n");
        }
        sb.Append("}\n");
        return sb.ToString();
    }

    /// <summary>Perms as letters in bit order (R W U S), or "-" for none.</summary>
    private static string Perms(JsonNode? list)
    {
        var set = (list as JsonArray)?.Select(x => x!.GetValue<string>()).ToHashSet(StringComparer.Ordinal) ?? [];
        var letters = string.Concat(PermLetters.Where(kv => set.Contains(kv.Key)).Select(kv => kv.Value));
        return letters.Length == 0 ? "-" : letters;
    }

    private static string Quote(string s) =>
        "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "\"";
}
