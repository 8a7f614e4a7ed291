using System.Reflection;

namespace Verified.Impl.IO;

/// <summary>Names the QAPI driver(s) a <see cref="BlockDriver"/> class implements.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class BlockDriverNameAttribute(string name) : Attribute
{
    /// <summary>The QAPI driver name (<c>file</c>, <c>raw</c>, …).</summary>
    public string Name { get; } = name;
}

/// <summary>
/// Creates the driver instance for a node: every non-abstract <see cref="BlockDriver"/> in this assembly
/// marked with <see cref="BlockDriverNameAttribute"/> is found once, at first use.
/// </summary>
public static class DriverRegistry
{
    private static readonly Lazy<Dictionary<string, Func<BlockDriver>>> Factories = new(Discover);

    private static Dictionary<string, Func<BlockDriver>> Discover()
    {
        var map = new Dictionary<string, Func<BlockDriver>>(StringComparer.Ordinal);
        foreach (var t in typeof(BlockDriver).Assembly.GetTypes())
        {
            if (t.IsAbstract || !typeof(BlockDriver).IsAssignableFrom(t)) continue;
            foreach (var a in t.GetCustomAttributes<BlockDriverNameAttribute>())
            {
                var ctor = t.GetConstructor(Type.EmptyTypes) ?? throw new InvalidOperationException($"{t.Name} needs a public parameterless constructor");
                if (!map.TryAdd(a.Name, () => (BlockDriver)ctor.Invoke(null)))
                    throw new InvalidOperationException($"two drivers named '{a.Name}'");
            }
        }
        return map;
    }

    /// <summary>The driver names with an I/O implementation.</summary>
    public static IReadOnlyCollection<string> Names => Factories.Value.Keys;

    /// <summary>A new driver instance for <paramref name="driver"/>.</summary>
    public static BlockDriver Create(string driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        if (Factories.Value.TryGetValue(driver, out var f)) return f();
        // A schema driver whose I/O has not landed yet: it forwards to its primary child.
        return new ForwardingDriver();
    }
}
