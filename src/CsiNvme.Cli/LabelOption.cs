using System.CommandLine;
using CsiNvme.Api;

namespace CsiNvme.Cli;

/// <summary>A repeatable --label KEY=VALUE option, checked against the server's label rules before any call.</summary>
internal static class LabelOption
{
    public static Option<Dictionary<string, string>> Create(string what) => new("--label")
    {
        Description = $"Label KEY=VALUE kept with the {what}; repeat for several (at most {VolumeLabels.MaxCount}). " +
            $"Keys are 1..{VolumeLabels.MaxKeyLength} characters of A-Z a-z 0-9 . / _ -; values at most {VolumeLabels.MaxValueLength} characters.",
        HelpName = "KEY=VALUE",
        AllowMultipleArgumentsPerToken = false,
        Arity = ArgumentArity.ZeroOrMore,
        CustomParser = result =>
        {
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var token in result.Tokens)
            {
                if (!VolumeLabels.TryParse(token.Value, out string key, out string value, out string? error))
                {
                    result.AddError($"invalid --label: {error}");
                    return labels;
                }

                if (!labels.TryAdd(key, value))
                {
                    result.AddError($"invalid --label: {key} is given twice");
                    return labels;
                }
            }

            if (labels.Count > VolumeLabels.MaxCount)
            {
                result.AddError($"invalid --label: {labels.Count} labels; at most {VolumeLabels.MaxCount} are allowed");
            }

            return labels;
        },
    };

    /// <summary>"k=v, k2=v2" in key order, or "-" when there are none.</summary>
    public static string Summary(IEnumerable<KeyValuePair<string, string>> labels)
    {
        string joined = string.Join(", ", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
        return joined.Length == 0 ? "-" : joined;
    }
}
