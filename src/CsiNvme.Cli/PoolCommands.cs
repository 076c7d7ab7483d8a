using System.CommandLine;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme pool list</c>.</summary>
internal static class PoolCommands
{
    public static Command Create(GlobalOptions globals) => new("pool", "Inspect the storage pools of the server (thin backend).")
    {
        ListCommand(globals),
    };

    private static Command ListCommand(GlobalOptions globals)
    {
        var command = new Command("list", "List pools with their capacity, used and free space, volumes and snapshots.");
        command.Aliases.Add("ls");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            ListPoolsResponse response = await session.ServerInfo.ListPoolsAsync(new ListPoolsRequest(), session.Call);
            SnapshotPrinter.WritePools(session, [.. response.Pools]);
            return ExitCodes.Success;
        }));
        return command;
    }
}
