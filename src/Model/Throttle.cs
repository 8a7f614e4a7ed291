using System.Globalization;
using System.Text.Json.Nodes;
using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>
/// A throttle-group's limits are checked when the object is created (QEMU's <c>throttle_is_valid</c>):
/// six buckets — bps total/read/write, iops total/read/write — each with an average, a burst rate and
/// a burst length. The first broken rule is reported with QEMU's text.
/// </summary>
public static class Throttle
{
    /// <summary>THROTTLE_VALUE_MAX.</summary>
    public const long ValueMax = 1_000_000_000_000_000;

    private static readonly string[] Buckets = ["bps-total", "bps-read", "bps-write", "iops-total", "iops-read", "iops-write"];

    /// <summary>The error of a <c>limits</c> object (canonical JSON, or null when absent), or null when valid.</summary>
    public static QmpError? Check(string? limitsJson)
    {
        if (limitsJson is null) return null;
        var o = JsonNode.Parse(limitsJson)!.AsObject();
        long Get(string k) => o[k] is JsonValue v ? v.GetValue<long>() : 0;
        var avg = Buckets.Select(b => Get(b)).ToArray();
        var max = Buckets.Select(b => Get(b + "-max")).ToArray();
        var length = new ulong[Buckets.Length];
        for (int i = 0; i < Buckets.Length; i++)
        {
            if (o[Buckets[i] + "-max-length"] is not JsonValue lv) { length[i] = 1; continue; }
            long l = lv.GetValue<long>();
            if (l > uint.MaxValue) return Results.Fail(string.Create(CultureInfo.InvariantCulture, $"{Buckets[i]}-max-length value must be in the range [0, {uint.MaxValue}]"));
            length[i] = unchecked((uint)l); // a negative value wraps, as in C
        }
        bool Mixed(long[] v, int t) => v[t] != 0 && (v[t + 1] != 0 || v[t + 2] != 0);
        if (Mixed(avg, 0) || Mixed(avg, 3) || Mixed(max, 0) || Mixed(max, 3))
            return Results.Fail("bps/iops/max total values and read/write values cannot be used at the same time");
        if (Get("iops-size") != 0 && avg[3] == 0 && avg[4] == 0 && avg[5] == 0) return Results.Fail("iops size requires an iops value to be set");
        for (int i = 0; i < Buckets.Length; i++)
        {
            // The fields are unsigned in QEMU: a negative value counts as too large.
            if ((ulong)avg[i] > ValueMax || (ulong)max[i] > ValueMax)
                return Results.Fail(string.Create(CultureInfo.InvariantCulture, $"bps/iops/max values must be within [0, {ValueMax}]"));
            if (length[i] == 0) return Results.Fail("the burst length cannot be 0");
            if (length[i] > 1 && max[i] == 0) return Results.Fail("burst length set without burst rate");
            if (max[i] != 0 && length[i] > (ulong)(ValueMax / max[i])) return Results.Fail("burst length too high for this burst rate");
            if (max[i] != 0 && avg[i] == 0) return Results.Fail("bps_max/iops_max require corresponding bps/iops values");
            if (max[i] != 0 && max[i] < avg[i]) return Results.Fail("bps_max/iops_max cannot be lower than bps/iops");
        }
        return null;
    }
}
