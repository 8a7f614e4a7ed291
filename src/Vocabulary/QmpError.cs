namespace Verified.Vocabulary;

/// <summary>QMP error classes used by the block layer.</summary>
public enum ErrorClass
{
    /// <summary>QEMU's <c>GenericError</c>: nearly every error.</summary>
    GenericError,
    /// <summary><c>CommandNotFound</c>.</summary>
    CommandNotFound,
    /// <summary><c>DeviceNotFound</c>.</summary>
    DeviceNotFound,
    /// <summary><c>DeviceNotActive</c>: the block-job-* commands' "Block job 'x' not found".</summary>
    DeviceNotActive,
}

/// <summary>An error as QMP reports it: class and exact description text.</summary>
/// <param name="Class">The QMP error class.</param>
/// <param name="Desc">The exact description, as QEMU words it.</param>
public sealed record QmpError(ErrorClass Class, string Desc)
{
    /// <summary>A <c>GenericError</c> with the given text.</summary>
    public static QmpError Generic(string desc) => new(ErrorClass.GenericError, desc);

    /// <summary>QMP's class name on the wire.</summary>
    public string ClassName => Class.ToString();

    /// <inheritdoc/>
    public override string ToString() => $"[{ClassName}] {Desc}";
}
