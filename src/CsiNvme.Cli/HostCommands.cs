using System.CommandLine;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary><c>csinvme host allow|deny|tls-psk|tls-required</c>: which host NQNs may connect to a volume, and how.</summary>
internal static class HostCommands
{
    public static Command Create(GlobalOptions globals) => new("host", "Control which hosts (by host NQN) may connect to a volume.")
    {
        AccessCommand(globals, "allow", "Add a host NQN to a volume's allowed hosts.", allow: true),
        AccessCommand(globals, "deny", "Remove a host NQN from a volume's allowed hosts; its connections are closed.", allow: false),
        TlsPskCommand(globals),
        TlsRequiredCommand(globals),
    };

    /// <summary><c>csinvme host tls-psk NAME HOSTNQN</c>: the host's NVMe/TCP TLS PSK for the volume, from the environment.</summary>
    private static Command TlsPskCommand(GlobalOptions globals)
    {
        var name = new Argument<string>("NAME") { Description = "Volume name." };
        var hostNqn = new Argument<string>("HOSTNQN") { Description = "Host NQN, as in /etc/nvme/hostnqn on the host." };
        var clear = new Option<bool>("--clear") { Description = "Remove the host's PSK instead." };
        var command = new Command("tls-psk", "Give a host an NVMe/TCP TLS PSK for a volume: the key (NVMeTLSkey-1:hh:base64:, as nvme gen-tls-key prints it) is read from the CSINVME_TLS_PSK environment variable, never from the command line.")
        {
            name, hostNqn, clear,
        };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            Volume volume;
            if (parseResult.GetValue(clear))
            {
                volume = await session.Volumes.ClearHostTlsPskAsync(
                    new HostAccessRequest { Name = parseResult.GetRequiredValue(name), HostNqn = parseResult.GetRequiredValue(hostNqn) }, session.Call);
            }
            else
            {
                var psk = Environment.GetEnvironmentVariable("CSINVME_TLS_PSK") ?? "";
                volume = await session.Volumes.SetHostTlsPskAsync(
                    new SetHostTlsPskRequest { Name = parseResult.GetRequiredValue(name), HostNqn = parseResult.GetRequiredValue(hostNqn), Psk = psk }, session.Call);
            }

            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary><c>csinvme host tls-required NAME true|false</c>.</summary>
    private static Command TlsRequiredCommand(GlobalOptions globals)
    {
        var name = new Argument<string>("NAME") { Description = "Volume name." };
        var required = new Argument<bool>("REQUIRED") { Description = "true: only TLS connections (plaintext controllers are closed); false: plaintext hosts too." };
        var command = new Command("tls-required", "Require NVMe/TCP TLS of every host of a volume, or not.") { name, required };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var volume = await session.Volumes.SetTlsRequiredAsync(
                new SetTlsRequiredRequest { Name = parseResult.GetRequiredValue(name), TlsRequired = parseResult.GetRequiredValue(required) }, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

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
