using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>The graph as QMP queries show it.</summary>
public static class Queries
{
    /// <summary>The return value of a query command.</summary>
    public static JsonNode Answer(Graph g, string command)
    {
        ArgumentNullException.ThrowIfNull(g);
        return command switch
        {
            "x-debug-query-block-graph" => BlockGraph(g),
            // Newest first, as QEMU lists them.
            "query-named-block-nodes" => new JsonArray([.. g.Nodes.Values.OrderByDescending(n => n.Seq)
                .Select(n => (JsonNode)new JsonObject { ["node-name"] = n.Name, ["drv"] = n.Driver, ["ro"] = n.ReadOnly })]),
            "query-block-exports" => new JsonArray([.. g.Exports.Values.OrderByDescending(e => e.Seq).Select(e => (JsonNode)new JsonObject
            {
                ["type"] = "nbd", ["id"] = e.Id, ["node-name"] = g.RootEdge(new ExportParent(e.Id))?.Child ?? "", ["shutting-down"] = false,
            })]),
            "query-jobs" => new JsonArray([.. JobsNewestFirst(g).Select(j => (JsonNode)JobInfo(j))]),
            "query-block-jobs" => new JsonArray([.. JobsNewestFirst(g).Where(j => j.Type is "backup" or "mirror").Select(j => (JsonNode)BlockJobInfo(j))]),
            _ => new JsonArray(),
        };
    }

    private static IEnumerable<Job> JobsNewestFirst(Graph g) => g.Jobs.Values.OrderByDescending(j => j.Seq);

    /// <summary>What the model defines of a <c>query-jobs</c> entry (progress figures are the implementation's), in QEMU's member order.</summary>
    public static JsonObject JobInfo(Job j)
    {
        ArgumentNullException.ThrowIfNull(j);
        return new() { ["status"] = Vocabulary.Jobs.JobTables.Name(j.Status), ["type"] = j.Type, ["id"] = j.Id };
    }

    /// <summary>What the model defines of a <c>query-block-jobs</c> entry (not io-status, busy, len, offset), in QEMU's member order.</summary>
    public static JsonObject BlockJobInfo(Job j)
    {
        ArgumentNullException.ThrowIfNull(j);
        return new()
        {
            ["auto-finalize"] = j.AutoFinalize, ["device"] = j.Id, ["auto-dismiss"] = j.AutoDismiss,
            ["status"] = Vocabulary.Jobs.JobTables.Name(j.Status), ["paused"] = j.Status is Vocabulary.Jobs.JobStatus.Paused or Vocabulary.Jobs.JobStatus.Standby,
            ["speed"] = j.Speed, ["ready"] = Vocabulary.Jobs.JobTables.IsReady(j.Status), ["type"] = j.Type,
        };
    }

    /// <summary>
    /// x-debug-query-block-graph in QEMU's shape: BlockBackends (devices and exports, in creation order),
    /// then jobs, then every node; ids given on first sight; both arrays come out reversed, as QEMU prepends.
    /// </summary>
    public static JsonObject BlockGraph(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        var ids = new Dictionary<object, int>();
        var nodes = new List<JsonNode>();
        var edges = new List<JsonNode>();
        int Id(object key) => ids.TryGetValue(key, out var i) ? i : ids[key] = ids.Count + 1;
        void AddNode(object key, string type, string name) =>
            nodes.Add(new JsonObject { ["id"] = Id(key), ["type"] = type, ["name"] = name });
        void AddEdges(object key, Parent p)
        {
            foreach (var e in g.ChildrenOf(p))
            {
                edges.Add(new JsonObject
                {
                    ["parent"] = Id(key), ["child"] = Id(e.Child), ["name"] = e.Name,
                    ["perm"] = new JsonArray([.. Perms.ToQapiList(e.Perm).Select(x => (JsonNode)x)]),
                    ["shared-perm"] = new JsonArray([.. Perms.ToQapiList(e.Shared).Select(x => (JsonNode)x)]),
                });
            }
        }
        var backends = g.Devices.Values.Where(d => d.IsBlock).Select(d => (Seq: d.Seq, Parent: (Parent)new DeviceParent(d.Id)))
            .Concat(g.Exports.Values.Select(e => (Seq: e.Seq, Parent: (Parent)new ExportParent(e.Id)))).OrderBy(x => x.Seq);
        foreach (var (_, p) in backends)
        {
            AddNode(p, "block-backend", g.GraphName(p));
            AddEdges(p, p);
        }
        // QEMU keeps jobs newest first.
        foreach (var j in g.Jobs.Values.OrderByDescending(j => j.Seq))
        {
            var p = new JobParent(j.Id);
            AddNode(p, "block-job", j.Id);
            AddEdges(p, p);
        }
        foreach (var n in g.Nodes.Values.OrderBy(n => n.Seq))
        {
            AddNode(n.Name, "block-driver", n.Name);
            AddEdges(n.Name, new NodeParent(n.Name));
        }
        nodes.Reverse();
        edges.Reverse();
        return new JsonObject { ["nodes"] = new JsonArray([.. nodes]), ["edges"] = new JsonArray([.. edges]) };
    }

    /// <summary>Every edge as (parent name, child name, child node), the form the seed's iotests compare.</summary>
    public static IReadOnlyList<(string Parent, string Name, string Child)> EdgeTriples(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        return [.. g.Edges.Select(e => (g.GraphName(e.Parent), e.Name, e.Child)).Order()];
    }
}
