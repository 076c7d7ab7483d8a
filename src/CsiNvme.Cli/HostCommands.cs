using System.CommandLine;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme host allow|deny</c>: which host NQNs may connect to a volume.</summary>
internal static class HostCommands
{
    public static Command Create(GlobalOptions globals) => new("host", "Control which hosts (by host NQN) may connect to a volume.")
    {
        AccessCommand(globals, "allow", "Add a host NQN to a volume's allowed hosts.", allow: true),
        AccessCommand(globals, "deny", "Remove a host NQN from a volume's allowed hosts; its connections are closed.", allow: false),
    };

    private static Command AccessCommand(GlobalOptions globals, string verb, string description, bool allow)
    {
        var name = new Argument<string>("NAME") { Description = "Volume name." };
        var hostNqn = new Argument<string>("HOSTNQN") { Description = "Host NQN, as in /etc/nvme/hostnqn on the host." };
        var command = new Command(verb, description) { name, hostNqn };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var request = new HostAccessRequest
            {
                Name = parseResult.GetRequiredValue(name),
                HostNqn = parseResult.GetRequiredValue(hostNqn),
            };
            Volume volume = allow
                ? await session.Volumes.AllowHostAsync(request, session.Call)
                : await session.Volumes.DenyHostAsync(request, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }
}
