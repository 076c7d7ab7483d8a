using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme server info</c>.</summary>
internal static class ServerCommands
{
    public static Command Create(GlobalOptions globals) => new("server", "Inspect the storage server.")
    {
        InfoCommand(globals),
    };

    private static Command InfoCommand(GlobalOptions globals)
    {
        var command = new Command("info", "Show version, listeners, backend, data directory and counts.");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            ServerInfo info = await session.ServerInfo.GetServerInfoAsync(new GetServerInfoRequest(), session.Call);
            ServerInfoView view = ServerInfoView.From(info);
            if (session.Json)
            {
                session.Out.WriteLine(JsonSerializer.Serialize(view, CliJsonContext.Default.ServerInfoView));
                return ExitCodes.Success;
            }

            var table = new TextTable("FIELD", "VALUE");
            table.AddRow("Version", view.Version);
            table.AddRow("Discovery NQN", view.DiscoveryNqn);
            table.AddRow("NVMe/TCP listeners", string.Join(", ", view.NvmeListenAddresses));
            table.AddRow("Management address", view.ManagementAddress);
            table.AddRow("Backend", view.Backend);
            table.AddRow("Data directory", view.DataDir);
            table.AddRow("Metadata store", view.MetadataStore);
            table.AddRow("Volumes", view.VolumeCount.ToString(CultureInfo.InvariantCulture));
            table.AddRow("Connections", view.ConnectionCount.ToString(CultureInfo.InvariantCulture));
            table.AddRow("Started", view.StartedAt?.ToString("u", CultureInfo.InvariantCulture) ?? "-");
            table.WriteTo(session.Out);
            return ExitCodes.Success;
        }));
        return command;
    }
}
