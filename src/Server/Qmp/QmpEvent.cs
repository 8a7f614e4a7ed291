using System.Text.Json.Nodes;

namespace Verified.Server.Qmp;

/// <summary>A QMP event as QEMU sends it: name, optional data, and the wall-clock time it happened.</summary>
/// <param name="Name">The event name, e.g. <c>BLOCK_EXPORT_DELETED</c>.</param>
/// <param name="Data">The event's members, or null when the event has none.</param>
/// <param name="Time">When it happened.</param>
public sealed record QmpEvent(string Name, JsonObject? Data, DateTimeOffset Time)
{
    /// <summary>
    /// The event in QEMU's shape: <c>{"timestamp": {"seconds": S, "microseconds": US}, "event": N, "data": D}</c>
    /// (no <c>data</c> member when the event has none).
    /// </summary>
    public JsonObject ToJson()
    {
        long us = (Time - DateTimeOffset.UnixEpoch).Ticks / TimeSpan.TicksPerMicrosecond;
        var o = new JsonObject
        {
            ["event"] = Name,
            ["timestamp"] = new JsonObject { ["seconds"] = us / 1_000_000, ["microseconds"] = us % 1_000_000 },
        };
        if (Data is not null) o["data"] = Data.DeepClone();
        return o;
    }
}
