using System.Collections.Immutable;
using System.Text.Json.Nodes;
using Verified.Impl.Engine;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// Runs the same commands on the model and the implementation and reports the first divergence:
/// replies (ok or error, class, exact text, and query results byte for byte) and states (the canonical
/// abstraction). The model is the judge.
/// </summary>
public sealed class Judge : IDisposable
{
    /// <summary>Size of each image file of the pool.</summary>
    public const int PoolFileSize = 1 << 20;

    private readonly string dir;

    /// <summary>Creates a judge with a fresh folder of image files for commands to name.</summary>
    public Judge()
    {
        dir = Directory.CreateTempSubdirectory("verified-judge-").FullName;
        Files = [.. CommandGen.DefaultFiles.Select(f => Path.Combine(dir, f))];
        foreach (var f in Files)
        {
            using var s = File.Create(f);
            s.SetLength(PoolFileSize);
        }
        Model = ModelState.Initial with
        {
            Data = DataState.Empty with { Files = Files.ToImmutableDictionary(f => f, _ => FileData.Zeroed(PoolFileSize), StringComparer.Ordinal) },
        };
    }

    /// <summary>The image files that exist for this judge (absolute paths).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>The model's state; it knows the pool files as zero-filled.</summary>
    public ModelState Model { get; private set; }

    /// <summary>The implementation.</summary>
    public BlockEngine Impl { get; } = new();

    /// <summary>The model's reply to the last step.</summary>
    public Reply? LastReply { get; private set; }

    /// <summary>Applies one command to both; returns a description of the divergence, or null when they agree.</summary>
    public string? Step(Command c)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c is IoStep io)
        {
            var predicted = io.Predict(Model);
            Model = predicted.State;
            LastReply = predicted.Errno == 0 ? Reply.Ok() : new Reply(null, QmpError.Generic($"errno {predicted.Errno}"));
            return io.Compare((predicted.Errno, predicted.Data), io.Run(Impl));
        }
        var (next, modelReply) = Machine.Apply(Model, c);
        Model = next;
        var implReply = Impl.Execute(c);
        LastReply = modelReply;
        var replyDiff = CompareReplies(modelReply, implReply);
        if (replyDiff is not null && KnownDivergences.Find(c, modelReply, implReply) is null) return replyDiff;
        var stateDiff = Canonical.Diff(Canonical.Of(Model), Canonical.Of(Impl));
        if (stateDiff.Length > 0) return "states differ after " + c.Name + ":\n" + stateDiff;
        foreach (var q in new[] { "x-debug-query-block-graph", "query-named-block-nodes", "query-block-exports" })
        {
            var d = CompareReplies(Machine.Apply(Model, new Query(q)).Reply, Impl.Execute(new Query(q)));
            if (d is not null) return $"{q} differs after {c.Name}: {d}";
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
