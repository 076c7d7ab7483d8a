using System.CommandLine;
using System.Text.Json;
using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme volume create|list|get|delete|resize|verify</c>.</summary>
internal static class VolumeCommands
{
    public static Command Create(GlobalOptions globals) => new("volume", "Create, inspect, resize, update, verify and delete volumes.")
    {
        CreateCommand(globals),
        ListCommand(globals),
        GetCommand(globals),
        DeleteCommand(globals),
        ResizeCommand(globals),
        UpdateCommand(globals),
        VerifyCommand(globals),
    };

    private static Argument<string> NameArgument() => new("NAME") { Description = "Volume name." };

    private static Command CreateCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        Option<long> size = SizeOption.Create(
            "Size of the new volume; rounded up to a multiple of 4 KiB by the server. Optional for a clone (default: the source's size, and never less).",
            required: false);
        var fromSnapshot = new Option<string>("--from-snapshot")
        {
            Description = "Create the volume as a clone of this snapshot (instant, shares unchanged data; thin backend).",
            HelpName = "SNAPSHOT",
        };
        var fromVolume = new Option<string>("--from-volume")
        {
            Description = "Create the volume as a clone of this volume's current content (instant, shares unchanged data; thin backend).",
            HelpName = "VOLUME",
        };
        var pool = new Option<string>("--pool")
        {
            Description = "Pool to place the volume in (default: the one with the most free space; a clone stays in its source's pool).",
            HelpName = "POOL",
        };
        var allowAnyHost = new Option<bool>("--allow-any-host")
        {
            Description = "Let every host NQN connect (otherwise only the --allow-host ones).",
        };
        var allowHosts = new Option<string[]>("--allow-host")
        {
            Description = "Host NQN allowed to connect; repeat for several hosts.",
            HelpName = "HOSTNQN",
        };
        Option<int> blockSize = ChoiceOption.Create("--block-size", "Logical block size seen by hosts: 512 (default) or 4096.", "BYTES", 512, 4096);
        Option<int> replicas = ChoiceOption.Create(
            "--replicas", "Copies to keep, each on its own storage node of the cluster: 1, 2 or 3 (default 1; a single server keeps 1).", "N", VolumeReplicas.Counts);
        Option<Dictionary<string, string>> labels = LabelOption.Create("volume");

        var command = new Command("create", "Create a volume, exported as its own NVMe subsystem; empty, or a clone of a snapshot or volume.")
        {
            name, size, fromSnapshot, fromVolume, pool, allowAnyHost, allowHosts, blockSize, replicas, labels,
        };
        command.Validators.Add(result =>
        {
            bool isClone = result.GetResult(fromSnapshot) is not null || result.GetResult(fromVolume) is not null;
            if (result.GetResult(fromSnapshot) is not null && result.GetResult(fromVolume) is not null)
            {
                result.AddError("give either --from-snapshot or --from-volume, not both");
            }
            else if (!isClone && result.GetResult(size) is null)
            {
                result.AddError("--size is required (unless the volume is a clone: --from-snapshot or --from-volume)");
            }
        });
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new CreateVolumeRequest
            {
                Name = parseResult.GetRequiredValue(name),
                SizeBytes = (ulong)parseResult.GetValue(size),
                AllowAnyHost = parseResult.GetValue(allowAnyHost),
                BlockSize = (uint)parseResult.GetValue(blockSize),
                SourceSnapshot = parseResult.GetValue(fromSnapshot) ?? "",
                SourceVolume = parseResult.GetValue(fromVolume) ?? "",
                Pool = parseResult.GetValue(pool) ?? "",
                Replicas = (uint)parseResult.GetValue(replicas),
            };
            request.AllowedHosts.AddRange(parseResult.GetValue(allowHosts) ?? []);
            request.Labels.Add(parseResult.GetValue(labels) ?? []);

            Volume volume = await session.Volumes.CreateVolumeAsync(request, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command ListCommand(GlobalOptions globals)
    {
        var command = new Command("list", "List all volumes.");
        command.Aliases.Add("ls");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            ListVolumesResponse response = await session.Volumes.ListVolumesAsync(new ListVolumesRequest(), session.Call);
            VolumePrinter.WriteList(session, [.. response.Volumes.OrderBy(v => v.Name, StringComparer.Ordinal)]);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command GetCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        var command = new Command("get", "Show one volume: size, NQN, NGUID/UUID, hosts, listen addresses, and in a cluster each replica's node, state and rebuild progress.") { name };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            Volume volume = await session.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = parseResult.GetRequiredValue(name) }, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command DeleteCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        var command = new Command("delete", "Delete a volume and its data. Connected hosts lose it at once.") { name };
        command.Aliases.Add("rm");
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            string volumeName = parseResult.GetRequiredValue(name);
            await session.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = volumeName }, session.Call);
            session.Out.WriteLine(session.Json
                ? JsonSerializer.Serialize(new DeletedView(volumeName), CliJsonContext.Default.DeletedView)
                : $"Deleted volume {volumeName}.");
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command ResizeCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        Option<long> size = SizeOption.Create("New size; volumes only grow.");
        var command = new Command("resize", "Grow a volume; connected hosts are told the new capacity.") { name, size };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new ResizeVolumeRequest
            {
                Name = parseResult.GetRequiredValue(name),
                SizeBytes = (ulong)parseResult.GetValue(size),
            };
            Volume volume = await session.Volumes.ResizeVolumeAsync(request, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command UpdateCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        Option<int> replicas = ChoiceOption.Create(
            "--replicas", "Copies to keep from now on (a cluster only): 1, 2 or 3. New replicas are rebuilt while the volume serves; "
            + "extra ones are removed once the ones kept are in sync. 'volume get' shows the progress.", "N", VolumeReplicas.Counts);
        replicas.Required = true;
        var command = new Command("update", "Change a volume's replica count.") { name, replicas };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new SetReplicaCountRequest
            {
                Name = parseResult.GetRequiredValue(name),
                Replicas = (uint)parseResult.GetValue(replicas),
            };
            Volume volume = await session.Volumes.SetReplicaCountAsync(request, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command VerifyCommand(GlobalOptions globals)
    {
        Argument<string> name = NameArgument();
        Option<long> regionSize = SizeOption.Create(
            "Bytes per compared region: a power of two from 64KiB to 64MiB (default 1MiB).", required: false, name: "--region-size", max: uint.MaxValue);
        Option<TimeSpan> timeout = DurationOption.Create(
            "--timeout", "How long to wait for the server's answer; every region is read on every replica.", TimeSpan.FromMinutes(10));
        var command = new Command(
            "verify",
            "Compare the replicas' contents region by region (a checksum per region on every replica, taken at one point of the "
            + "write order). Exit code 0 only when every replica is in sync and every region is equal, "
            + $"{ExitCodes.NotIdentical} otherwise.")
        {
            name, regionSize, timeout,
        };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            string volumeName = parseResult.GetRequiredValue(name);
            var request = new VerifyVolumeRequest { Name = volumeName, RegionSize = (uint)parseResult.GetValue(regionSize) };
            VerifyVolumeResponse response = await session.Volumes.VerifyVolumeAsync(request, session.CallWithin(parseResult.GetValue(timeout)));
            VerifyPrinter.Write(session, volumeName, response);
            return response.Identical ? ExitCodes.Success : ExitCodes.NotIdentical;
        }));
        return command;
    }
}
