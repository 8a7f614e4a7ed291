using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// A campaign step that runs every runnable job to its next status, on the model (<see cref="Model.BlockJobs.Run"/>)
/// and on the implementation (<c>BlockEngine.RunJobs</c>), the seam by which job progress is deterministic.
/// Scenario files carry it as a <c>{"run-jobs": true}</c> line (Verified's own; QEMU's jobs run by themselves).
/// </summary>
public sealed record JobRunStep : Command
{
    /// <summary>The one instance.</summary>
    public static readonly JobRunStep Instance = new();

    /// <inheritdoc/>
    public override string Name => "x-run-jobs";

    /// <summary>The scenario-file line.</summary>
    public static JsonObject ToJson() => new() { ["run-jobs"] = true };
}
