using System.Text.Json.Nodes;
using System.Collections.Immutable;
using Verified.Impl.Engine;
using Verified.Impl.IO;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Runs the same commands on the model and the implementation and reports the first divergence:
/// replies (ok or error, class, exact text), states (the canonical abstraction), the model's
/// invariants, that a refused command changed neither state, query answers byte for byte, and data.
/// The model is the judge.
/// </summary>
public sealed class Judge : IDisposable
{
    /// <summary>Size of each image file of the pool.</summary>
    public const int PoolFileSize = 1 << 20;

    /// <summary>
    /// The canonical states, the replies and the data are compared after every step. Query answers (a
    /// projection of the state) and the model's invariants (a check of the model itself) are costlier; a
    /// campaign checks them every this many steps, and a replay (which is what shrinking runs) after every
    /// step, so whatever a campaign finds this way shrinks like anything else.
    /// </summary>
    public const int SampleEvery = 32;

    /// <summary>Most sleeps of rate-limited jobs one run skips (a 1 MiB pool node is at most 16 chunks of 64 KiB per job).</summary>
    public const int MaxJobWakesPerRun = 4096;

    /// <summary>The implementation's clock: real time, skipped ahead past rate-limited jobs' sleeps.</summary>
    private readonly AdvancingClock clock = new();

    private static readonly string[] Queries = ["x-debug-query-block-graph", "query-named-block-nodes", "query-block-exports", "query-jobs", "query-block-jobs"];

    private readonly string dir;
    private string modelText, implText;
    private int steps;
    private readonly bool thorough;
    private readonly int sampleAt;

    /// <summary>
    /// Creates a judge with a fresh folder of pool files. Commands name them relatively (<c>a.img</c>), and
    /// the implementation resolves names against the folder, so a command log means the same on any judge.
    /// </summary>
    /// <param name="mutation">A deliberate bug planted in the implementation (tests of the campaign's teeth); none by default.</param>
    /// <param name="thorough">Replays: canonical texts after every step, queries and invariants after every step that changed the state, rather than every <see cref="SampleEvery"/> steps.</param>
    /// <param name="sampleAt">Which step modulo <see cref="SampleEvery"/> is sampled (campaigns vary it by seed, so samples fall everywhere in runs).</param>
    public Judge(EngineMutation mutation = EngineMutation.None, bool thorough = true, int sampleAt = 0)
    {
        this.thorough = thorough;
        this.sampleAt = ((sampleAt % SampleEvery) + SampleEvery) % SampleEvery;
        dir = Directory.CreateTempSubdirectory("verified-judge-").FullName;
        foreach (var f in Files)
        {
            if (PoolFormat(f) == Images.Qcow2)
            {
                Verified.Impl.Formats.Qcow2Image.Create(Path.Combine(dir, f), PoolFileSize);
                continue;
            }
            using var s = File.Create(Path.Combine(dir, f));
            s.SetLength(PoolFileSize);
        }
        Verified.Impl.Formats.Qcow2Image.Create(Path.Combine(dir, CommandGen.ChainFile), PoolFileSize, Files[^1], Images.Qcow2);
        Impl = new BlockEngine(new EngineServices { Storage = new HostStorage { BaseDirectory = dir }, Mutation = mutation, Clock = clock });
        // The model knows every pool file's format; it predicts the bytes of the raw ones only (a qcow2 file's are metadata).
        var formats = Files.Aggregate(ValueMap<string>.Empty, (m, f) => m.SetItem(f, PoolFormat(f)));
        Model = ModelState.Initial with
        {
            Graph = ModelState.Initial.Graph with
            {
                ImageFormats = formats.SetItem(CommandGen.ChainFile, Images.Qcow2),
                HeaderBackings = ValueMap<HeaderBacking>.Empty.SetItem(CommandGen.ChainFile, new HeaderBacking(Files[^1], Images.Qcow2)),
            },
            Data = DataState.Empty with
            {
                Files = DataState.NoFiles.AddRange(Files.Where(f => PoolFormat(f) != Images.Qcow2).Select(f => KeyValuePair.Create(f, FileData.Zeroed(PoolFileSize)))),
            } with
            {
                // A qcow2 pool file's bytes are metadata the model does not follow, but its size is known.
                OpaqueSizes = Files.Where(f => PoolFormat(f) == Images.Qcow2).Append(CommandGen.ChainFile).ToImmutableDictionary(f => f, f => new FileInfo(Path.Combine(dir, f)).Length),
            },
        };
        modelText = Canonical.Of(Model);
        implText = Canonical.Of(Impl);
    }

    /// <summary>
    /// The format of pool file <paramref name="name"/>: the last one holds an empty qcow2 image of
    /// <see cref="PoolFileSize"/> bytes (so qcow2 nodes over it open, as they would in QEMU), the others are raw.
    /// </summary>
    public static string PoolFormat(string name) => name == CommandGen.DefaultFiles[^1] ? Images.Qcow2 : "raw";

    /// <summary>The pool's image files, as commands name them (relative to the judge's folder).</summary>
    public IReadOnlyList<string> Files { get; } = CommandGen.DefaultFiles;

    /// <summary>The host path of pool file <paramref name="name"/>.</summary>
    public string PathOf(string name) => Path.Combine(dir, name);

    /// <summary>The model's state; it knows the pool files as zero-filled.</summary>
    public ModelState Model { get; private set; }

    /// <summary>The implementation.</summary>
    public BlockEngine Impl { get; }

    /// <summary>The model's reply to the last step.</summary>
    public Reply? LastReply { get; private set; }

    /// <summary>
    /// Applies one command to both; returns a description of the divergence, or null when they agree. An
    /// exception from either engine is a divergence too (the engines answer every command with a reply).
    /// </summary>
    public string? Step(Command c)
    {
        ArgumentNullException.ThrowIfNull(c);
        steps++;
        try
        {
            return StepChecked(c);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return $"{c.Name} threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}";
        }
    }

    private string? StepChecked(Command c)
    {
        switch (c)
        {
            case IoStep io when io.RootEdge(Model.Graph) is { } edge && !IoStep.Predictable(Model, edge):
                // Outside what the model predicts (only a shrunk sequence gets here): neither engine runs it,
                // so shrinking cannot drift onto a difference the model never claimed to know.
                LastReply = Reply.Ok();
                return null;
            case IoStep io:
                var predicted = io.Predict(Model);
                Model = predicted.State;
                LastReply = predicted.Errno == 0 ? Reply.Ok() : new Reply(null, QmpError.Generic($"errno {predicted.Errno}"));
                return io.Compare((predicted.Errno, predicted.Data), io.Run(Impl));
            case FaultStep f:
                Model = f.Apply(Model);
                f.Run(Impl);
                LastReply = Reply.Ok();
                return null;
            case JobRunStep:
                var checkedFiles = BackupTargetFiles(Model);
                Model = BlockJobs.Run(Model);
                Impl.RunJobs();
                // Rate-limited jobs sleep between chunks: skip their sleeps until none is left, as the model
                // runs every job to its end in one run (bounded: each wake lets at least one chunk go).
                for (int wakes = 0; wakes < MaxJobWakesPerRun && Impl.JobWakeDelayNs is { } delay; wakes++)
                {
                    clock.Advance(Math.Max(1, delay));
                    Impl.RunJobs();
                }
                LastReply = Reply.Ok();
                modelText = implText = "";
                if (!Canonical.Same(Model, Impl)) return "states differ after running jobs:\n" + Canonical.Diff(Canonical.Of(Model), Canonical.Of(Impl));
                return checkedFiles.Select(CompareFile).FirstOrDefault(d => d is not null);
        }
        var before = Model;
        var (next, modelReply) = Machine.Apply(Model, c);
        Model = next;
        var implReply = Impl.Execute(c);
        LastReply = modelReply;
        var replyDiff = CompareReplies(modelReply, implReply);
        if (replyDiff is not null && KnownDivergences.Find(c, modelReply, implReply) is null) return replyDiff;

        bool graphSame = ReferenceEquals(next.Graph, before.Graph);
        bool sample = !thorough && steps % SampleEvery == sampleAt;
        if (!thorough && !sample)
        {
            // The fast path: states compared field by field. A refused command must leave the model's graph
            // as it was; the implementation then is as it was too (it equalled the model before and does now).
            if (!Canonical.Same(next, Impl)) return "states differ after " + c.Name + ":\n" + Canonical.Diff(Canonical.Of(next), Canonical.Of(Impl));
            if (!modelReply.IsOk && !graphSame && !next.Graph.Equals(before.Graph)) return $"the model's graph changed although {c.Name} failed";
            modelText = implText = "";
            return null;
        }
        // A refused command keeps the model's graph object (only the name counter may move): reuse its text.
        string newModel = graphSame && modelText.Length > 0 ? Canonical.WithoutCounter(modelText) + Canonical.CounterLine(next.NameCounter) : Canonical.Of(next);
        string newImpl = Canonical.Of(Impl);
        var stateDiff = Canonical.Diff(newModel, newImpl);
        if (stateDiff.Length > 0) return "states differ after " + c.Name + ":\n" + stateDiff;
        if (!modelReply.IsOk)
        {
            // A refused command (a failed or aborted transaction included) must leave both graphs as they were.
            if (!graphSame && !next.Graph.Equals(before.Graph)) return $"the model's graph changed although {c.Name} failed";
            if (implText.Length > 0 && Canonical.WithoutCounter(newImpl) != Canonical.WithoutCounter(implText))
                return $"the implementation's state changed although {c.Name} failed:\n" + Canonical.Diff(implText, newImpl);
        }
        bool changed = newModel != modelText;
        (modelText, implText) = (newModel, newImpl);
        if (thorough && !changed) return null;
        if (Invariants.Check(next.Graph) is { Count: > 0 } broken)
            return $"the model broke its invariants after {c.Name}: {string.Join("; ", broken)}";
        foreach (var q in Queries)
        {
            var d = CompareReplies(Machine.Apply(Model, new Query(q)).Reply, ModelDefined(q, Impl.Execute(new Query(q))));
            if (d is not null) return $"{q} differs after {c.Name}: {d}";
        }
        return null;
    }

    /// <summary>
    /// The part of a query reply the model defines. query-named-block-nodes also carries host facts (file
    /// names, sizes, allocation, cache modes, bitmap counts) that the QEMU comparisons check instead;
    /// the model defines each node's name, driver and read-only flag, in QEMU's order. Of query-jobs and
    /// query-block-jobs it defines all but the progress figures, io-status, busy and a job's error text.
    /// </summary>
    public static Reply ModelDefined(string query, Reply impl)
    {
        ArgumentNullException.ThrowIfNull(impl);
        if (impl.Return is not JsonArray entries) return impl;
        string[]? keep = query switch
        {
            "query-named-block-nodes" => ["node-name", "drv", "ro"],
            "query-jobs" => ["status", "type", "id"],
            "query-block-jobs" => ["auto-finalize", "device", "auto-dismiss", "status", "paused", "speed", "ready", "type"],
            _ => null,
        };
        if (keep is null) return impl;
        return impl with
        {
            Return = new JsonArray([.. entries.Select(n =>
            {
                var o = new JsonObject();
                foreach (var k in keep) o[k] = n![k]?.DeepClone();
                return (JsonNode)o;
            })]),
        };
    }

    /// <summary>
    /// The pool files a run of the jobs is about to fill with a backup's copy the model predicts (sync full or
    /// top, running, its filter's data predictable, the target a file node): checked byte for byte after the run.
    /// </summary>
    private List<string> BackupTargetFiles(ModelState s) =>
        [.. s.Graph.Jobs.Values
            .Where(j => j.Status == Vocabulary.Jobs.JobStatus.Running && !j.UserPaused && j.Sync != "none" && j.Filter is not null && Data.Predictable(s, j.Filter))
            .Select(j => s.Graph.ChildEdge(j.Filter!, "target")?.Child is { } t && s.Graph.Nodes[t] is { Driver: "file" } f ? f.Str("filename") : null)
            .OfType<string>().Where(f => Files.Contains(f)).Distinct()];

    /// <summary>The host file's bytes against the model's prediction (every sector one pattern byte, unwritten zero).</summary>
    private string? CompareFile(string file)
    {
        if (!Model.Data.Files.TryGetValue(file, out var predicted)) return null;
        var actual = File.ReadAllBytes(PathOf(file));
        for (long sector = 0; sector < actual.Length / Data.Sector; sector++)
        {
            byte want = predicted.Sectors.TryGetValue(sector, out var b) ? b : (byte)0;
            for (int i = 0; i < Data.Sector; i++)
            {
                if (actual[sector * Data.Sector + i] != want)
                    return $"backup target {file}: byte {sector * Data.Sector + i} is {actual[sector * Data.Sector + i]}, the model predicts {want} (the source as it was when the job started)";
            }
        }
        return null;
    }

    /// <summary>Null when the replies agree exactly; else what differs.</summary>
    public static string? CompareReplies(Reply model, Reply impl)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(impl);
        var a = model.ToJson().ToJsonString();
        var b = impl.ToJson().ToJsonString();
        return a == b ? null : $"replies differ:\n  model: {a}\n  impl:  {b}";
    }

    /// <summary>Closes the implementation's nodes and removes the image files.</summary>
    public void Dispose()
    {
        Impl.Dispose();
        Directory.Delete(dir, recursive: true);
    }
}
