using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Verified.Proofs.Smt;

/// <summary>
/// The few entry points of Z3's C API this project needs, bound to the system's libz3 by soname.
/// </summary>
/// <remarks>
/// <para>
/// The <c>Microsoft.Z3</c> 4.12.2 managed wrapper ships no Linux native library, and binding it to
/// Debian's libz3 4.8.12 is unsafe (it relies on concurrent reference counting that 4.8 lacks).
/// Instead we speak SMT-LIB2 text to a plain, non-reference-counted context through
/// <c>Z3_eval_smtlib2_string</c>, whose signature has been stable across Z3 4.x.
/// </para>
/// <para>
/// Z3's default error handler calls <c>exit(1)</c>; every context made here gets a no-op handler
/// instead (see <see cref="NoOpErrorHandler"/>), and callers read errors from the error code and the
/// <c>(error ...)</c> lines of the returned text.
/// </para>
/// </remarks>
internal static partial class Z3Native
{
    /// <summary>The name every import uses; the resolver maps it to the platform's file.</summary>
    internal const string LibraryName = "libz3.so.4";

    /// <summary><c>Z3_OK</c> of <c>Z3_error_code</c>.</summary>
    internal const int Z3Ok = 0;

    // An explicit static constructor so the resolver is registered before the first import is
    // bound, whichever member is touched first.
    static Z3Native() => Z3LibraryResolver.Register();

    [LibraryImport(LibraryName)]
    internal static partial IntPtr Z3_mk_config();

    [LibraryImport(LibraryName)]
    internal static partial void Z3_del_config(IntPtr config);

    [LibraryImport(LibraryName, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void Z3_set_param_value(IntPtr config, string paramId, string paramValue);

    [LibraryImport(LibraryName)]
    internal static partial IntPtr Z3_mk_context(IntPtr config);

    [LibraryImport(LibraryName)]
    internal static partial void Z3_del_context(IntPtr context);

    /// <summary>
    /// Evaluates SMT-LIB2 commands; the result is a string owned by the context, valid only until
    /// the next call on it: copy it at once (see <see cref="EvalSmtlib2"/>).
    /// </summary>
    [LibraryImport(LibraryName, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial IntPtr Z3_eval_smtlib2_string(IntPtr context, string str);

    [LibraryImport(LibraryName)]
    internal static partial void Z3_get_version(out uint major, out uint minor, out uint buildNumber, out uint revisionNumber);

    [LibraryImport(LibraryName)]
    internal static partial void Z3_set_error_handler(IntPtr context, IntPtr handler);

    [LibraryImport(LibraryName)]
    internal static partial int Z3_get_error_code(IntPtr context);

    [LibraryImport(LibraryName)]
    internal static partial void Z3_set_error(IntPtr context, int errorCode);

    /// <summary>Runs SMT-LIB2 text and copies Z3's answer into a managed string.</summary>
    internal static string EvalSmtlib2(IntPtr context, string smtlib)
    {
        IntPtr result = Z3_eval_smtlib2_string(context, smtlib);
        return Marshal.PtrToStringUTF8(result) ?? string.Empty;
    }

    /// <summary>
    /// Makes a context with the given config parameters and installs the no-op error handler,
    /// so no Z3 error can terminate the process.
    /// </summary>
    internal static IntPtr CreateContext(IEnumerable<KeyValuePair<string, string>> parameters)
    {
        IntPtr config = Z3_mk_config();
        if (config == IntPtr.Zero)
        {
            throw new InvalidOperationException("Z3_mk_config returned null.");
        }

        IntPtr context;
        try
        {
            foreach (var (key, value) in parameters)
            {
                Z3_set_param_value(config, key, value);
            }

            context = Z3_mk_context(config);
        }
        finally
        {
            Z3_del_config(config);
        }

        if (context == IntPtr.Zero)
        {
            throw new InvalidOperationException("Z3_mk_context returned null.");
        }

        unsafe
        {
            delegate* unmanaged[Cdecl]<IntPtr, int, void> handler = &NoOpErrorHandler;
            Z3_set_error_handler(context, (IntPtr)handler);
        }

        return context;
    }

    /// <summary>The library's version, e.g. 4.8.12.0.</summary>
    internal static Version GetVersion()
    {
        Z3_get_version(out uint major, out uint minor, out uint build, out uint revision);
        return new Version((int)major, (int)minor, (int)build, (int)revision);
    }

    /// <summary>
    /// Replaces Z3's default handler (which prints and calls <c>exit(1)</c>). It must not throw:
    /// it is called from native frames. The error stays readable via <see cref="Z3_get_error_code"/>.
    /// </summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void NoOpErrorHandler(IntPtr context, int errorCode)
    {
    }
}

/// <summary>
/// Maps <see cref="Z3Native.LibraryName"/> to the platform's libz3: the soname first, then the
/// unversioned development name, and on macOS and Windows their own file names.
/// </summary>
internal static class Z3LibraryResolver
{
    private static int registered;

    /// <summary>Registers the resolver for this assembly once; tolerant of a resolver set elsewhere.</summary>
    internal static void Register()
    {
        if (Interlocked.Exchange(ref registered, 1) != 0)
        {
            return;
        }

        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Z3LibraryResolver).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // Another component already set this assembly's resolver; the default probing still
            // finds "libz3.so.4" on Linux.
        }
    }

    /// <summary>Candidate file names for libz3 on the running platform, most specific first.</summary>
    internal static IReadOnlyList<string> Candidates()
    {
        if (OperatingSystem.IsWindows())
        {
            return ["libz3.dll", "libz3", "z3.dll"];
        }

        if (OperatingSystem.IsMacOS())
        {
            return ["libz3.dylib", "libz3.4.dylib", "/opt/homebrew/lib/libz3.dylib", "/usr/local/lib/libz3.dylib"];
        }

        return [Z3Native.LibraryName, "libz3.so"];
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (!string.Equals(libraryName, Z3Native.LibraryName, StringComparison.Ordinal))
        {
            return IntPtr.Zero;
        }

        foreach (string candidate in Candidates())
        {
            if (NativeLibrary.TryLoad(candidate, assembly, searchPath, out IntPtr handle))
            {
                return handle;
            }
        }

        // Fall back to the runtime's default probing (which will report DllNotFoundException).
        return IntPtr.Zero;
    }
}

/// <summary>Owns one Z3 context; releases it with <c>Z3_del_context</c>, also if leaked (finalizer).</summary>
internal sealed class Z3ContextHandle : SafeHandle
{
    /// <summary>Takes ownership of a context made by <see cref="Z3Native.CreateContext"/>.</summary>
    internal Z3ContextHandle(IntPtr context)
        : base(IntPtr.Zero, ownsHandle: true) => SetHandle(context);

    /// <inheritdoc/>
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <inheritdoc/>
    protected override bool ReleaseHandle()
    {
        Z3Native.Z3_del_context(handle);
        return true;
    }
}
