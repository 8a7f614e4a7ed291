namespace Verified.Cli;

/// <summary>The <c>verified</c> command.</summary>
public static class Program
{
    /// <summary>Entry point: dispatches on the subcommand.</summary>
    public static int Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        Console.Error.WriteLine($"verified: unknown command '{args[0]}'\n{Usage}");
        return 2;
    }

    private const string Usage = "usage: verified <command> [options]\n\ncommands:\n  prove    check the permission theorems with Z3";
}
