using System.CommandLine;

namespace CsiNvme.Cli;

/// <summary>Options accepted by every command (recursive, so they may follow the subcommand too).</summary>
internal sealed class GlobalOptions
{
    public const string DefaultServer = "127.0.0.1:9500";

    public Option<string> Server { get; } = new("--server", "-s")
    {
        Description = "Management address of the storage server, ADDR:PORT (or $CSINVME_SERVER, or \"server\" in the config file).",
        HelpName = "ADDR:PORT",
        DefaultValueFactory = _ => DefaultServer,
        Recursive = true,
    };

    public Option<string> TlsCa { get; } = new("--tls-ca")
    {
        Description = "PEM CA certificate that signed the server's certificate: talk TLS to the management API (or $CSINVME_TLS_CA, or " +
                      "\"tlsCa\" in the config file $CSINVME_CONFIG, default ~/.config/csinvme/config.json).",
        HelpName = "PATH",
        Recursive = true,
    };

    public Option<string> TlsCert { get; } = new("--tls-cert")
    {
        Description = "PEM client certificate; its Common Name gives the role (admin, read-only, ...) (or $CSINVME_TLS_CERT, or \"tlsCert\").",
        HelpName = "PATH",
        Recursive = true,
    };

    public Option<string> TlsKey { get; } = new("--tls-key")
    {
        Description = "PEM private key of --tls-cert (or $CSINVME_TLS_KEY, or \"tlsKey\").",
        HelpName = "PATH",
        Recursive = true,
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Print machine-readable JSON instead of tables.",
        Recursive = true,
    };
}
