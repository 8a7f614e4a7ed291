namespace Verified.Cli;

/// <summary>The <c>verified</c> command.</summary>
public static class Program
{
    private const string Usage = """
        usage: verified <command> [options]

        commands:
          prove [--smt2 DIR] [--graphs N] [--seed S]
              Check every permission theorem with Z3, then check that Z3's verdict on N random
              graphs (default 200) equals the model's. Writes each theorem's query to DIR when
              asked. Exits 1 if anything is refuted or disagrees, 3 if Z3 is unavailable.
          campaign [--steps N | --time 60s] [--seed S] [--shard i/n] [--run-length L] [--workers W]
                   [--z3-every K] [--floor F] [--no-io] [--no-faults] [--out DIR] [--replay STRING]
              Replay the regression corpus, then run the implementation against the model on random
              steps (commands, transactions with aborts, reads and writes checked byte by byte, host
              faults), in runs of L steps (default 60) seeded S, S+1, ...; --shard i/n takes the runs
              r = i mod n, so n shards together are one campaign. Z3 checks the model's graph every K
              steps (default 500). On the first divergence: shrink it, print the one replay string,
              write the shrunk scenario file. Fails when a step kind was accepted fewer than F times
              (default 10). --mutant NAME plants a deliberate bug (the campaign must find it).
          replay FILE
              Run a scenario file's QMP commands on both engines and report any divergence.
          bench [-c count] [-d depth] [-f fmt] [-n] [-i aio] [-o offset] [-s size] [-S step] [-t cache] [-w]
                [--pattern P] [--flush-interval N] [--no-drain] [--image-opts] [-q] [-U] FILE
              qemu-img bench on Verified's engine: same flags, defaults, error texts, output and exit codes.
          create [-q] [-f raw|qcow2] [-b backing_file -F backing_fmt] [-o cluster_size=N,...] FILE [SIZE]
              qemu-img create for raw and qcow2 images: same flags, size suffixes, output and error texts.
          serve [--qmp stdio|unix:PATH]... [--blockdev JSON|K=V,...]... [--object ...] [--nbd-server ...]
                [--export ...] [--chardev socket,path=PATH,server=on,wait=off,id=ID --monitor chardev=ID]
                [--pidfile PATH] [--daemonize]
              A QMP daemon speaking QEMU 7.2's protocol, a drop-in for qemu-storage-daemon's block graph.
              Startup options run in order as QMP commands; exits on quit, SIGTERM, SIGINT (or stdin EOF
              with --qmp stdio), flushing and closing every image. --daemonize returns once the
              daemon serves (exit 0) or failed to start (its error, exit 1), as qemu-storage-daemon's.
          graph (--qmp unix:PATH | SCENARIO.jsonl) [--out FILE.dot|FILE.svg]
              Render a running daemon's graph, or a scenario's final graph, as Graphviz DOT (SVG
              through Graphviz's dot when installed): nodes with driver and name, edges with child
              name and perm / shared perm (R W U S).
        """;

    /// <summary>Entry point: dispatches on the subcommand.</summary>
    public static int Main(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            return args[0] switch
            {
                "prove" => ProveCommand.Run(args[1..]),
                "campaign" => CampaignCommand.Run(args[1..]),
                "replay" => CampaignCommand.Replay(args[1..]),
                "bench" => Bench.BenchCommand.Run(args[1..]),
                "create" => CreateCommand.Run(args[1..]),
                "serve" => ServeCommand.Run(args[1..]),
                "graph" => GraphCommand.Run(args[1..]),
                _ => UsageError($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            return UsageError(e.Message);
        }
    }

    /// <summary>Prints a usage error; returns exit code 2.</summary>
    internal static int UsageError(string message)
    {
        Console.Error.WriteLine($"verified: {message}\n\n{Usage}");
        return 2;
    }
}
