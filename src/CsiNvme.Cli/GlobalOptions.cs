using System.CommandLine;

namespace CsiNvme.Cli;

/// <summary>Options accepted by every command (recursive, so they may follow the subcommand too).</summary>
internal sealed class GlobalOptions
{
    public const string DefaultServer = "127.0.0.1:9500";

    public Option<string> Server { get; } = new("--server", "-s")
    {
        Description = "Management address of the storage server, ADDR:PORT.",
        HelpName = "ADDR:PORT",
        DefaultValueFactory = _ => DefaultServer,
        Recursive = true,
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Print machine-readable JSON instead of tables.",
        Recursive = true,
    };
}
