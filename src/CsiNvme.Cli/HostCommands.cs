using System.CommandLine;
using CsiNvme.Api.V1;
using CsiNvme.Cli.Output;

namespace CsiNvme.Cli;

/// <summary>
/// <c>csinvme host allow|deny</c>: which host NQNs may connect to a volume; <c>set-secret|clear-secret</c>: whether a
/// host must also prove a DH-HMAC-CHAP secret; <c>tls-psk|tls-required</c>: NVMe/TCP TLS with a pre-shared key.
/// </summary>
internal static class HostCommands
{
    public static Command Create(GlobalOptions globals) => new("host", "Control which hosts (by host NQN) may connect to a volume.")
    {
        AccessCommand(globals, "allow", "Add a host NQN to a volume's allowed hosts.", allow: true),
        AccessCommand(globals, "deny", "Remove a host NQN from a volume's allowed hosts; its connections are closed.", allow: false),
        SetSecretCommand(globals),
        ClearSecretCommand(globals),
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

    private static Command SetSecretCommand(GlobalOptions globals)
    {
        var name = new Argument<string>("NAME") { Description = "Volume name." };
        var hostNqn = new Argument<string>("HOSTNQN") { Description = "Host NQN, as in /etc/nvme/hostnqn on the host." };
        // Files, not values: a secret on the command line is visible to every user of the machine (ps, shell history).
        var secretFile = new Option<string>("--secret-file")
        {
            Description = "File holding the host's secret in DHHC-1 form (nvme gen-dhchap-key); - reads it from standard input.",
            HelpName = "PATH",
            Required = true,
        };
        var ctrlSecretFile = new Option<string>("--ctrl-secret-file")
        {
            Description = "File holding a controller secret (DHHC-1): the host may then authenticate the volume too (bidirectional).",
            HelpName = "PATH",
        };
        var hash = new Option<string>("--hash") { Description = "sha256 (default), sha384 or sha512.", HelpName = "HASH" };
        hash.AcceptOnlyFromAmong("sha256", "sha384", "sha512");
        var dhGroup = new Option<string>("--dh-group")
        {
            Description = "Diffie-Hellman group: ffdhe2048 (default), null (none), ffdhe3072, ffdhe4096, ffdhe6144 or ffdhe8192.",
            HelpName = "GROUP",
        };
        dhGroup.AcceptOnlyFromAmong("null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192");
        var command = new Command(
            "set-secret",
            "Require DH-HMAC-CHAP of a host on a volume (or replace its secrets: rotation). The host must still be allowed. " +
            "Connected hosts keep their queues until they re-authenticate or reconnect.")
        {
            name, hostNqn, secretFile, ctrlSecretFile, hash, dhGroup,
        };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            string secret;
            string ctrlSecret;
            try
            {
                secret = await ReadSecretAsync(parseResult.GetRequiredValue(secretFile), session.CancellationToken);
                ctrlSecret = parseResult.GetValue(ctrlSecretFile) is { } ctrlPath ? await ReadSecretAsync(ctrlPath, session.CancellationToken) : string.Empty;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await session.Error.WriteLineAsync($"csinvme: cannot read a secret file: {e.Message}");
                return ExitCodes.UsageError;
            }

            var volume = await session.Volumes.SetHostSecretAsync(new SetHostSecretRequest
            {
                Name = parseResult.GetRequiredValue(name),
                HostNqn = parseResult.GetRequiredValue(hostNqn),
                Secret = secret,
                CtrlSecret = ctrlSecret,
                Hash = parseResult.GetValue(hash) ?? string.Empty,
                DhGroup = parseResult.GetValue(dhGroup) ?? string.Empty,
            }, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static Command ClearSecretCommand(GlobalOptions globals)
    {
        var name = new Argument<string>("NAME") { Description = "Volume name." };
        var hostNqn = new Argument<string>("HOSTNQN") { Description = "Host NQN." };
        var command = new Command("clear-secret", "Let a host in on its NQN alone again (no DH-HMAC-CHAP).") { name, hostNqn };
        command.SetAction((parseResult, ct) => CommandSession.RunAsync(parseResult, globals, ct, async session =>
        {
            var volume = await session.Volumes.ClearHostSecretAsync(new HostAccessRequest
            {
                Name = parseResult.GetRequiredValue(name),
                HostNqn = parseResult.GetRequiredValue(hostNqn),
            }, session.Call);
            VolumePrinter.WriteDetails(session, volume);
            return ExitCodes.Success;
        }));
        return command;
    }

    private static async Task<string> ReadSecretAsync(string path, CancellationToken cancellationToken) =>
        (path == "-" ? await Console.In.ReadToEndAsync(cancellationToken) : await File.ReadAllTextAsync(path, cancellationToken)).Trim();
}
