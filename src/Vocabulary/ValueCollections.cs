using System.Collections;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Verified.Vocabulary;

/// <summary>
/// An immutable list with structural equality, so records holding it compare by value
/// (an immutable collection compares by reference). Backed by an array: the model's lists are short
/// and read far more often than changed, so copying on change beats a tree. Equality costs O(n).
/// </summary>
[CollectionBuilder(typeof(ValueList), nameof(ValueList.Create))]
public sealed class ValueList<T> : IReadOnlyList<T>, IEquatable<ValueList<T>>
{
    /// <summary>The empty list.</summary>
    public static readonly ValueList<T> Empty = new(ImmutableArray<T>.Empty);

    private readonly ImmutableArray<T> items;

    /// <summary>Wraps an immutable array.</summary>
    public ValueList(ImmutableArray<T> items) => this.items = items.IsDefault ? throw new ArgumentNullException(nameof(items)) : items;

    /// <summary>Wraps an immutable list.</summary>
    public ValueList(ImmutableList<T> items) : this((items ?? throw new ArgumentNullException(nameof(items))).ToImmutableArray()) { }

    /// <summary>Builds a list from a sequence.</summary>
    public static ValueList<T> From(IEnumerable<T> items) => new(items.ToImmutableArray());

    /// <summary>The underlying immutable array.</summary>
    public ImmutableArray<T> Items => items;

    /// <inheritdoc/>
    public T this[int index] => items[index];

    /// <inheritdoc/>
    public int Count => items.Length;

    /// <summary>A copy with <paramref name="item"/> appended.</summary>
    public ValueList<T> Add(T item) => new(items.Add(item));

    /// <summary>A copy with <paramref name="item"/> inserted at <paramref name="index"/>.</summary>
    public ValueList<T> Insert(int index, T item) => new(items.Insert(index, item));

    /// <summary>A copy without the element at <paramref name="index"/>.</summary>
    public ValueList<T> RemoveAt(int index) => new(items.RemoveAt(index));

    /// <summary>A copy with element <paramref name="index"/> replaced.</summary>
    public ValueList<T> SetItem(int index, T item) => new(items.SetItem(index, item));

    /// <summary>The array's own enumerator: foreach over a ValueList allocates nothing.</summary>
    public ImmutableArray<T>.Enumerator GetEnumerator() => items.GetEnumerator();

    // Through the interface (LINQ), the bare array's enumerator: one small allocation, none when empty.
    IEnumerator<T> IEnumerable<T>.GetEnumerator() => ((IEnumerable<T>)ImmutableCollectionsMarshal.AsArray(items)!).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => ImmutableCollectionsMarshal.AsArray(items)!.GetEnumerator();

    /// <inheritdoc/>
    public bool Equals(ValueList<T>? other) => other is not null && (items == other.items || items.AsSpan().SequenceEqual(other.items.AsSpan()));

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as ValueList<T>);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var x in items) h.Add(x);
        return h.ToHashCode();
    }

    /// <inheritdoc/>
    public override string ToString() => "[" + string.Join(", ", items) + "]";
}

/// <summary>Builds <see cref="ValueList{T}"/> values from collection expressions.</summary>
public static class ValueList
{
    /// <summary>A list of <paramref name="items"/>.</summary>
    public static ValueList<T> Create<T>(ReadOnlySpan<T> items) => new(ImmutableArray.Create(items));
}

/// <summary>
/// An immutable, ordinally sorted map with structural equality (see <see cref="ValueList{T}"/> for why).
/// </summary>
public sealed class ValueMap<TValue> : IReadOnlyDictionary<string, TValue>, IEquatable<ValueMap<TValue>>
{
    /// <summary>The empty map.</summary>
    public static readonly ValueMap<TValue> Empty = new(ImmutableSortedDictionary.Create<string, TValue>(StringComparer.Ordinal));

    private readonly ImmutableSortedDictionary<string, TValue> map;
    private string? text;

    private ValueMap(ImmutableSortedDictionary<string, TValue> map) => this.map = map;

    /// <summary>The underlying dictionary.</summary>
    public ImmutableSortedDictionary<string, TValue> Items => map;

    /// <inheritdoc/>
    public TValue this[string key] => map[key];

    /// <inheritdoc/>
    public IEnumerable<string> Keys => map.Keys;

    /// <inheritdoc/>
    public IEnumerable<TValue> Values => map.Values;

    /// <inheritdoc/>
    public int Count => map.Count;

    /// <summary>A copy with <paramref name="key"/> set.</summary>
    public ValueMap<TValue> SetItem(string key, TValue value) => new(map.SetItem(key, value));

    /// <summary>A copy without <paramref name="key"/>.</summary>
    public ValueMap<TValue> Remove(string key) => new(map.Remove(key));

    /// <inheritdoc/>
    public bool ContainsKey(string key) => map.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, out TValue value) => map.TryGetValue(key, out value!);

    /// <summary>The value for <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
    public TValue GetOr(string key, TValue fallback) => map.TryGetValue(key, out var v) ? v : fallback;

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, TValue>> GetEnumerator() => map.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc/>
    public bool Equals(ValueMap<TValue>? other)
    {
        if (other is null) return false;
        if (ReferenceEquals(map, other.map)) return true;
        if (map.Count != other.map.Count) return false;
        // Pair by pair with typed comparers: KeyValuePair's own equality goes through reflection.
        var values = EqualityComparer<TValue>.Default;
        using var a = map.GetEnumerator();
        using var b = other.map.GetEnumerator();
        while (a.MoveNext() && b.MoveNext())
            if (!string.Equals(a.Current.Key, b.Current.Key, StringComparison.Ordinal) || !values.Equals(a.Current.Value, b.Current.Value)) return false;
        return true;
    }

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as ValueMap<TValue>);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var kv in map) { h.Add(kv.Key); h.Add(kv.Value); }
        return h.ToHashCode();
    }

    /// <inheritdoc/>
    public override string ToString() => text ??= "{" + string.Join(", ", map.Select(kv => $"{kv.Key}: {kv.Value}")) + "}";
}
