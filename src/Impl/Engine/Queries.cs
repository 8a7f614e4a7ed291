using System.Text.Json.Nodes;
using Verified.Impl.Graph;
using Verified.Vocabulary;

namespace Verified.Impl.Engine;

/// <summary>Query replies in QEMU's shapes.</summary>
public sealed partial class BlockEngine
{
    private JsonNode Query(Query q) => q.Command switch
    {
        "x-debug-query-block-graph" => BlockGraph(),
        "query-named-block-nodes" => NamedBlockNodes(q.Flat),
        "query-block-exports" => new JsonArray([.. exports.Values.OrderByDescending(e => e.Seq).Select(e => (JsonNode)new JsonObject
        {
            ["type"] = "nbd", ["id"] = e.Id, ["node-name"] = e.Root?.Node.Name ?? "", ["shutting-down"] = false,
        })]),
        "query-jobs" or "query-block-jobs" => JobQuery(q.Command),
        _ => new JsonArray(),
    };

    /// <summary>x-debug-query-block-graph: backends, then jobs, then nodes; ids on first sight; arrays reversed (QEMU prepends).</summary>
    private JsonObject BlockGraph()
    {
        var ids = new Dictionary<object, int>(ReferenceEqualityComparer.Instance);
        var nodeList = new List<JsonNode>();
        var edgeList = new List<JsonNode>();
        int Id(object o)
        {
            if (!ids.TryGetValue(o, out var i)) ids[o] = i = ids.Count + 1;
            return i;
        }
        void Edge(object parent, BdrvChild c) => edgeList.Add(new JsonObject
        {
            ["parent"] = Id(parent), ["child"] = Id(c.Node), ["name"] = c.Name,
            ["perm"] = new JsonArray([.. Perms.ToQapiList(c.Perm).Select(x => (JsonNode)x)]),
            ["shared-perm"] = new JsonArray([.. Perms.ToQapiList(c.Shared).Select(x => (JsonNode)x)]),
        });
        IEnumerable<RootParent> backends = devices.Values.Where(d => d.IsBlock).Cast<RootParent>().Concat(exports.Values).Concat(JobBackends()).OrderBy(r => r.Seq);
        foreach (var r in backends)
        {
            nodeList.Add(new JsonObject { ["id"] = Id(r), ["type"] = "block-backend", ["name"] = r.GraphName });
            if (r.Root is { } root) Edge(r, root);
        }
        // Only block jobs are graph nodes; a create job's BlockBackend is listed with the backends.
        foreach (var j in jobs.Values.Where(j => j.IsBlockJob).OrderByDescending(j => j.Seq))
        {
            nodeList.Add(new JsonObject { ["id"] = Id(j), ["type"] = "block-job", ["name"] = j.Id });
            foreach (var c in j.Edges) Edge(j, c);
        }
        foreach (var n in nodes.Values.OrderBy(n => n.Seq))
        {
            nodeList.Add(new JsonObject { ["id"] = Id(n), ["type"] = "block-driver", ["name"] = n.Name });
            foreach (var c in n.Children) Edge(n, c);
        }
        nodeList.Reverse();
        edgeList.Reverse();
        return new JsonObject { ["nodes"] = new JsonArray([.. nodeList]), ["edges"] = new JsonArray([.. edgeList]) };
    }

    /// <summary>Every edge (node and root parents), for inspection and the oracle.</summary>
    public IReadOnlyList<BdrvChild> Edges()
    {
        lock (graphLock)
        {
            var list = new List<BdrvChild>();
            foreach (var n in nodes.Values) list.AddRange(n.ChildList);
            foreach (var d in devices.Values) if (d.Root is { } r) list.Add(r);
            foreach (var e in exports.Values) if (e.Root is { } r) list.Add(r);
            return list;
        }
    }
}
