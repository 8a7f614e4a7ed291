using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Impl.IO;
using Verified.Model;
using Verified.Vocabulary;
using ImplGraph = Verified.Impl.Graph;

namespace Verified.Oracle;

/// <summary>
/// A campaign step that is not a QMP command: a read or a write of whole sectors through a device or an
/// export (a write fills every byte with <paramref name="Pattern"/>). Scenario files carry it as an
/// <c>{"io": "write", "root": …, "offset": …, "length": …, "pattern": …}</c> line (Verified's own).
/// </summary>
public sealed record IoStep(string Root, bool IsWrite, long Offset, int Length, byte Pattern) : Command
{
    /// <inheritdoc/>
    public override string Name => IsWrite ? "x-io-write" : "x-io-read";

    /// <summary>The scenario-file line.</summary>
    public JsonObject ToJson() => new()
    {
        ["io"] = IsWrite ? "write" : "read", ["root"] = Root, ["offset"] = Offset, ["length"] = Length, ["pattern"] = (int)Pattern,
    };

    /// <summary>Parses a scenario-file line written by <see cref="ToJson"/>.</summary>
    public static IoStep FromJson(JsonObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        return new IoStep(o["root"]!.GetValue<string>(), o["io"]!.GetValue<string>() == "write", o["offset"]!.GetValue<long>(),
            o["length"]!.GetValue<int>(), (byte)o["pattern"]!.GetValue<int>());
    }

    /// <summary>
    /// Whether the model predicts I/O through <paramref name="root"/>'s stack (the generator makes I/O steps
    /// only there; a shrunk sequence can leave one on a stack an earlier step no longer makes predictable).
    /// </summary>
    public static bool Predictable(ModelState s, Edge root)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(root);
        return Data.Predictable(s, root.Child) && Data.Length(s, root.Child) is > 0;
    }

    /// <summary>The root edge of the device or export this step goes through, or null.</summary>
    public Edge? RootEdge(Graph g)
    {
        ArgumentNullException.ThrowIfNull(g);
        return g.Devices.ContainsKey(Root) ? g.RootEdge(new Model.DeviceParent(Root))
            : g.Exports.ContainsKey(Root) ? g.RootEdge(new Model.ExportParent(Root)) : null;
    }

    /// <summary>What the model predicts: the next state, the errno (0 for success) and, for reads, the bytes per sector.</summary>
    public (ModelState State, int Errno, byte?[]? Data) Predict(ModelState s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var root = RootEdge(s.Graph);
        if (root is null) return (s, Errnos.EIO, null);
        if (IsWrite && (root.Perm & Perm.Write) == 0) return (s, Data.EPERM, null);
        var length = Data.Length(s, root.Child);
        if (Offset < 0 || Length < 0 || length is null || Offset > length - Length) return (s, Data.EINVAL, null);
        long sector = Offset / Data.Sector;
        int count = Length / Data.Sector;
        if (!IsWrite)
        {
            int readErr = Data.ReadErrno(s, root.Child, sector, count);
            return (s, readErr, readErr == 0 ? Data.Read(s, root.Child, sector, count) : null);
        }
        var (next, err) = Data.Write(s, root.Child, sector, count, Pattern);
        return (next, err, null);
    }

    /// <summary>Runs the step on the implementation: the errno (0 for success) and, for reads, the bytes.</summary>
    public (int Errno, byte[]? Data) Run(Impl.Engine.BlockEngine e)
    {
        ArgumentNullException.ThrowIfNull(e);
        ImplGraph.RootParent? root = e.FindDevice(Root) is { IsBlock: true } d ? d : e.Exports.FirstOrDefault(x => x.Id == Root);
        if (root is null) return (Errnos.EIO, null);
        try
        {
            if (IsWrite)
            {
                var buf = new byte[Length];
                Array.Fill(buf, Pattern);
                root.WriteAsync(Offset, buf).AsTask().GetAwaiter().GetResult();
                return (0, null);
            }
            var data = new byte[Length];
            root.ReadAsync(Offset, data).AsTask().GetAwaiter().GetResult();
            return (0, data);
        }
        catch (BlockIOException ex)
        {
            return (ex.Errno, null);
        }
    }

    /// <summary>Null when the implementation's outcome is the predicted one; else what differs.</summary>
    public string? Compare((int Errno, byte?[]? Data) model, (int Errno, byte[]? Data) impl)
    {
        if (model.Errno != impl.Errno)
            return string.Create(CultureInfo.InvariantCulture, $"{Name} {Root} @{Offset}+{Length}: model errno {model.Errno}, impl errno {impl.Errno}");
        if (model.Data is null || impl.Data is null) return null;
        for (int i = 0; i < model.Data.Length; i++)
        {
            if (model.Data[i] is not { } want) continue;
            var got = impl.Data.AsSpan(i * Model.Data.Sector, Model.Data.Sector);
            int bad = got.IndexOfAnyExcept(want);
            if (bad >= 0)
                return string.Create(CultureInfo.InvariantCulture, $"{Name} {Root} @{Offset}+{Length}: byte {Offset + i * Model.Data.Sector + bad} is 0x{got[bad]:x2}, the model predicts 0x{want:x2}");
        }
        return null;
    }
}
