using System.CommandLine;
using CsiNvme.Api;

namespace CsiNvme.Cli;

/// <summary>A size option (--size by default) that accepts human sizes (10GiB, 1.5G, 500MB, 4096).</summary>
internal static class SizeOption
{
    public static Option<long> Create(string description, bool required = true, string name = "--size", long max = long.MaxValue) => new(name)
    {
        Description = description + " Units: K/M/G/T or KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB powers of 1000.",
        HelpName = "SIZE",
        Required = required,
        // Parsing here makes a bad size a usage error, reported before any server is contacted.
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (!ByteSize.TryParse(text, out long bytes, out string? error))
            {
                result.AddError($"invalid {name}: {error}");
                return 0;
            }

            if (bytes <= 0)
            {
                result.AddError($"invalid {name}: '{text}' is not a positive size");
                return 0;
            }

            if (bytes > max)
            {
                result.AddError($"invalid {name}: '{text}' is too large");
                return 0;
            }

            return bytes;
        },
    };
}
