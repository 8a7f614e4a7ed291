using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Impl.IO;
using Verified.Model;
using Verified.Vocabulary;

namespace Verified.Oracle;

/// <summary>
/// A campaign step that arms or clears a host-storage fault: from now on every <paramref name="Op"/>
/// ("open", "read", "write") on pool file <paramref name="File"/> fails with <paramref name="Errno"/>;
/// <c>Op = "clear"</c> disarms them all. The model learns it as <see cref="HostFault"/>, the
/// implementation through its <see cref="HostStorage"/> seam. Scenario files carry it as a
/// <c>{"fault": "open", "file": …, "errno": …}</c> line (Verified's own; real QEMU has no such thing).
/// </summary>
public sealed record FaultStep(string Op, string File, int Errno) : Command
{
    /// <summary>Disarms every fault.</summary>
    public static readonly FaultStep Clear = new("clear", "", 0);

    /// <inheritdoc/>
    public override string Name => Op == "clear" ? "x-fault-clear" : "x-fault-" + Op;

    /// <summary>The scenario-file line.</summary>
    public JsonObject ToJson() => Op == "clear" ? new() { ["fault"] = "clear" } : new() { ["fault"] = Op, ["file"] = File, ["errno"] = Errno };

    /// <summary>Parses a scenario-file line written by <see cref="ToJson"/>.</summary>
    public static FaultStep FromJson(JsonObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var op = o["fault"]!.GetValue<string>();
        if (op == "clear") return Clear;
        if (!HostFaults.Ops.Contains(op)) throw new ArgumentException($"unknown fault '{op}' (open, read, write or clear)");
        return new FaultStep(op, o["file"]!.GetValue<string>(), o["errno"]!.GetValue<int>());
    }

    /// <summary>The model with the fault armed (or all cleared).</summary>
    public ModelState Apply(ModelState s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return s with { Graph = Op == "clear" ? HostFaults.Clear(s.Graph) : HostFaults.Arm(s.Graph, new HostFault(File, Op, Errno)) };
    }

    /// <summary>Arms (or clears) the fault in the implementation's host storage.</summary>
    public void Run(Impl.Engine.BlockEngine e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (Op == "clear") e.Services.Storage.Clear();
        else e.Services.Storage.Arm(File, Op switch { "open" => HostOp.Open, "read" => HostOp.Read, _ => HostOp.Write }, Errno);
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Name} {File} errno {Errno}");
}
