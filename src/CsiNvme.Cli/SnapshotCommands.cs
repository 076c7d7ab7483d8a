using System.CommandLine;
using System.Text.Json;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme snapshot create|list|get|delete</c>.</summary>
internal static class SnapshotCommands
{
    public static Command Create(GlobalOptions globals) => new("snapshot", "Take, list and delete point-in-time snapshots of volumes (thin backend).")
    {
        CreateCommand(globals),
        ListCommand(globals),
        GetCommand(globals),
        DeleteCommand(globals),
    };

    private static Argument<string> SnapshotArgument() => new("SNAPSHOT") { Description = "Snapshot name." };

    private static Command CreateCommand(GlobalOptions globals)
    {
        var volume = new Argument<string>("VOLUME") { Description = "Volume to snapshot." };
        Argument<string> snapshot = SnapshotArgument();
        Option<Dictionary<string, string>> labels = LabelOption.Create("snapshot");
        var command = new Command(
            "create",
            "Snapshot a volume instantly, without copying data. Every write completed before is in it; hosts may stay connected.")
        {
            volume, snapshot, labels,
        };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new CreateSnapshotRequest
            {
                Volume = parseResult.GetRequiredValue(volume),
                Name = parseResult.GetRequiredValue(snapshot),
            };
            request.Labels.Add(parseResult.GetValue(labels) ?? []);
            Snapshot created = await session.Volumes.CreateSnapshotAsync(request, session.Call);
            SnapshotPrinter.WriteDetails(session, created);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command ListCommand(GlobalOptions globals)
    {
        var volume = new Argument<string>("VOLUME")
        {
            Description = "Only the snapshots of this volume.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var command = new Command("list", "List snapshots, of all volumes or of one.") { volume };
        command.Aliases.Add("ls");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new ListSnapshotsRequest { Volume = parseResult.GetValue(volume) ?? "" };
            ListSnapshotsResponse response = await session.Volumes.ListSnapshotsAsync(request, session.Call);
            SnapshotPrinter.WriteList(session, [.. response.Snapshots.OrderBy(s => s.Name, StringComparer.Ordinal)]);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command GetCommand(GlobalOptions globals)
    {
        Argument<string> snapshot = SnapshotArgument();
        var command = new Command("get", "Show one snapshot.") { snapshot };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new GetSnapshotRequest { Name = parseResult.GetRequiredValue(snapshot) };
            SnapshotPrinter.WriteDetails(session, await session.Volumes.GetSnapshotAsync(request, session.Call));
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command DeleteCommand(GlobalOptions globals)
    {
        Argument<string> snapshot = SnapshotArgument();
        var command = new Command("delete", "Delete a snapshot. Volumes cloned from it keep their data.") { snapshot };
        command.Aliases.Add("rm");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            string name = parseResult.GetRequiredValue(snapshot);
            await session.Volumes.DeleteSnapshotAsync(new DeleteSnapshotRequest { Name = name }, session.Call);
            session.Out.WriteLine(session.Json
                ? JsonSerializer.Serialize(new DeletedView(name), CliJsonContext.Default.DeletedView)
                : $"Deleted snapshot {name}.");
            return ExitCodes.Success;
        }));
        return command;
    }
}
