using System.Globalization;
using System.Text.Json;

namespace Verified.Impl.IO;

/// <summary>
/// The limits of a throttle group as QEMU's <c>ThrottleConfig</c> holds them: six leaky buckets
/// (bytes and operations, each total, read and write) with an average rate, a burst rate and a burst
/// length in seconds, and the operation size (<c>iops-size</c>) that counts a large request as several.
/// </summary>
public sealed class ThrottleLimits
{
    /// <summary>Bucket index: bytes, both directions.</summary>
    public const int BpsTotal = 0;
    /// <summary>Bucket index: bytes read.</summary>
    public const int BpsRead = 1;
    /// <summary>Bucket index: bytes written.</summary>
    public const int BpsWrite = 2;
    /// <summary>Bucket index: operations, both directions.</summary>
    public const int OpsTotal = 3;
    /// <summary>Bucket index: read operations.</summary>
    public const int OpsRead = 4;
    /// <summary>Bucket index: write operations.</summary>
    public const int OpsWrite = 5;

    /// <summary>The number of buckets.</summary>
    public const int BucketCount = 6;

    /// <summary>QEMU's THROTTLE_VALUE_MAX.</summary>
    public const long ValueMax = 1_000_000_000_000_000L;

    private static readonly string[] Names = ["bps-total", "bps-read", "bps-write", "iops-total", "iops-read", "iops-write"];

    private readonly long[] avg = new long[BucketCount];
    private readonly long[] max = new long[BucketCount];
    private readonly long[] burstLength = [1, 1, 1, 1, 1, 1];

    private ThrottleLimits() { }

    /// <summary>No limit at all (every average is 0): requests pass without accounting.</summary>
    public static ThrottleLimits Unlimited { get; } = new();

    /// <summary>The average rate of bucket <paramref name="i"/> (units per second; 0 = unlimited).</summary>
    public long Avg(int i) => avg[i];

    /// <summary>The burst rate of bucket <paramref name="i"/> (0 = none).</summary>
    public long Max(int i) => max[i];

    /// <summary>How many seconds bucket <paramref name="i"/> may run at its burst rate.</summary>
    public long BurstLength(int i) => burstLength[i];

    /// <summary>The operation size (<c>iops-size</c>; 0 = every request is one operation).</summary>
    public long OpSize { get; private set; }

    /// <summary>Whether any bucket has an average (QEMU's <c>throttle_enabled</c>).</summary>
    public bool Enabled => Array.Exists(avg, a => a > 0);

    /// <summary>
    /// Parses the <c>limits</c> member of a throttle-group object (canonical JSON, or null when absent)
    /// and checks it as <c>throttle_limits_to_config</c> and <c>throttle_is_valid</c> do, with QEMU's texts.
    /// </summary>
    public static (ThrottleLimits? Limits, string? Error) Parse(string? limitsJson)
    {
        var l = new ThrottleLimits();
        if (limitsJson is null) return (l, null);
        using var doc = JsonDocument.Parse(limitsJson);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) return (null, "Invalid parameter type for 'limits', expected: object");
        long? Get(string key) => doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : null;
        for (int i = 0; i < BucketCount; i++)
        {
            if (Get(Names[i]) is { } a) l.avg[i] = a;
            if (Get(Names[i] + "-max") is { } m) l.max[i] = m;
        }
        for (int i = 0; i < BucketCount; i++)
        {
            if (Get(Names[i] + "-max-length") is not { } len) continue;
            if (len > uint.MaxValue)
                return (null, string.Create(CultureInfo.InvariantCulture, $"{Names[i]}-max-length value must be in the range [0, {uint.MaxValue}]"));
            // As in C, a negative length lands in the unsigned field modulo 2^32.
            l.burstLength[i] = unchecked((uint)len);
        }
        if (Get("iops-size") is { } size) l.OpSize = size;
        var err = l.Validate();
        return err is null ? (l, null) : (null, err);
    }

    /// <summary>QEMU's <c>throttle_is_valid</c>: null when valid, else its error text.</summary>
    private string? Validate()
    {
        static bool Either(long[] v, int total, int read, int write) => v[total] != 0 && (v[read] != 0 || v[write] != 0);
        if (Either(avg, BpsTotal, BpsRead, BpsWrite) || Either(avg, OpsTotal, OpsRead, OpsWrite)
            || Either(max, BpsTotal, BpsRead, BpsWrite) || Either(max, OpsTotal, OpsRead, OpsWrite))
            return "bps/iops/max total values and read/write values cannot be used at the same time";
        if (OpSize != 0 && avg[OpsTotal] == 0 && avg[OpsRead] == 0 && avg[OpsWrite] == 0)
            return "iops size requires an iops value to be set";
        for (int i = 0; i < BucketCount; i++)
        {
            // QAPI ints land in unsigned fields, so a negative value is "too large" as in QEMU.
            if ((ulong)avg[i] > ValueMax || (ulong)max[i] > ValueMax)
                return string.Create(CultureInfo.InvariantCulture, $"bps/iops/max values must be within [0, {ValueMax}]");
            if (burstLength[i] == 0) return "the burst length cannot be 0";
            if (burstLength[i] > 1 && max[i] == 0) return "burst length set without burst rate";
            if (max[i] != 0 && burstLength[i] > ValueMax / max[i]) return "burst length too high for this burst rate";
            if (max[i] != 0 && avg[i] == 0) return "bps_max/iops_max require corresponding bps/iops values";
            if (max[i] != 0 && max[i] < avg[i]) return "bps_max/iops_max cannot be lower than bps/iops";
        }
        return null;
    }
}
