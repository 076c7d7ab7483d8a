using System.CommandLine;
using System.Globalization;

namespace CsiNvme.Cli;

/// <summary>An integer option that takes one of a few values (--block-size 512|4096, --replicas 1|2|3).</summary>
internal static class ChoiceOption
{
    public static Option<int> Create(string name, string description, string helpName, params int[] allowed) => new(name)
    {
        Description = description,
        HelpName = helpName,
        // Parsing and checking in one place makes anything else a usage error, reported before any server is contacted
        // (a validator would see a value that failed to parse).
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && allowed.Contains(value))
            {
                return value;
            }

            string choices = allowed.Length == 1
                ? allowed[0].ToString(CultureInfo.InvariantCulture)
                : string.Join(", ", allowed[..^1].Select(a => a.ToString(CultureInfo.InvariantCulture))) + " or " + allowed[^1].ToString(CultureInfo.InvariantCulture);
            result.AddError($"{name} must be {choices}, not '{text}'");
            return 0;
        },
    };
}
