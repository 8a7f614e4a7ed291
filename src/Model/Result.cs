using Verified.Vocabulary;

namespace Verified.Model;

/// <summary>A value or the QMP error that prevented it: the model's typed alternative to exceptions.</summary>
public readonly record struct Result<T>(T? Value, QmpError? Error)
{
    /// <summary>True when there is a value.</summary>
    public bool Ok => Error is null;

    /// <summary>The value; throws if this is an error (a model bug when it happens).</summary>
    public T Get() => Error is null ? Value! : throw new InvalidOperationException($"no value: {Error}");

    /// <summary>Chains a computation on success.</summary>
    public Result<TOut> Then<TOut>(Func<T, Result<TOut>> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return Error is null ? next(Value!) : new Result<TOut>(default, Error);
    }

    /// <summary>A success.</summary>
    public static implicit operator Result<T>(T value) => new(value, null);

    /// <summary>A failure.</summary>
    public static implicit operator Result<T>(QmpError error) => new(default, error);
}

/// <summary>Helpers to build results.</summary>
public static class Results
{
    /// <summary>A GenericError result with <paramref name="desc"/>.</summary>
    public static QmpError Fail(string desc) => QmpError.Generic(desc);
}
