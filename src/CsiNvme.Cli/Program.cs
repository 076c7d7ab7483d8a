using System.CommandLine;

namespace CsiNvme.Cli;

/// <summary>Entry point of <c>csinvme</c>, the command-line client of a storage server's management API.</summary>
internal static class Program
{
    private static Task<int> Main(string[] args) => RunAsync(args, Console.Out, Console.Error);

    /// <summary>Runs one command line; tests call this in-process with their own writers.</summary>
    internal static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        RootCommand root = BuildRootCommand();
        ParseResult parseResult = root.Parse(args);

        // Usage errors get their own exit code so scripts can tell "you typed it wrong" from "the server said no".
        if (parseResult.Errors.Count > 0)
        {
            foreach (var error in parseResult.Errors)
            {
                await stderr.WriteLineAsync($"csinvme: {error.Message}").ConfigureAwait(false);
            }

            await stderr.WriteLineAsync("Run 'csinvme --help' for usage.").ConfigureAwait(false);
            return ExitCodes.UsageError;
        }

        var invocation = new InvocationConfiguration { Output = stdout, Error = stderr };
        return await parseResult.InvokeAsync(invocation, cancellationToken).ConfigureAwait(false);
    }

    internal static RootCommand BuildRootCommand()
    {
        var globals = new GlobalOptions();
        var root = new RootCommand("csinvme: manage the volumes, snapshots, pools and nodes of a CsiNvme storage server or cluster over its gRPC management API.")
        {
            globals.Server,
            globals.Json,
            VolumeCommands.Create(globals),
            SnapshotCommands.Create(globals),
            PoolCommands.Create(globals),
            HostCommands.Create(globals),
            NodeCommands.Create(globals),
            ServerCommands.Create(globals),
            PerfCommand.Create(globals),
            BenchFailoverCommand.Create(globals),
        };
        return root;
    }
}
