namespace Verified.Vocabulary;

/// <summary>QEMU's identifier rules for node names and the generated names of unnamed nodes.</summary>
public static class Names
{
    /// <summary>QEMU stores node names in 32 bytes including the terminator.</summary>
    public const int NodeNameLengthMax = 31;

    /// <summary>
    /// <c>id_wellformed</c>: an ASCII letter, then letters, digits, '-', '.', '_'. Generated names start
    /// with '#', so users can never clash with them.
    /// </summary>
    public static bool IsWellFormed(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        if (id.Length == 0 || !char.IsAsciiLetter(id[0])) return false;
        foreach (var c in id.AsSpan(1))
        {
            if (!char.IsAsciiLetterOrDigit(c) && c != '-' && c != '.' && c != '_') return false;
        }
        return true;
    }

    /// <summary>
    /// The generated name of the <paramref name="counter"/>-th unnamed node: "#block", the counter, and
    /// two digits. QEMU draws the digits at random to stop users relying on names; Verified derives
    /// them from the counter so that every run replays exactly, and both engines agree.
    /// </summary>
    public static string Generated(long counter)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(counter);
        return FormattableString.Invariant($"#block{counter}{(counter * 37 + 11) % 100:D2}");
    }
}
