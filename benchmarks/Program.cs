using BenchmarkDotNet.Running;

namespace Verified.Benchmarks;

/// <summary>Runs the benchmarks: <c>dotnet run -c Release --project benchmarks -- --filter '*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
