using System.CommandLine;
using System.Globalization;

namespace CsiNvme.Cli;

/// <summary>A duration option such as --timeout: <c>300s</c>, <c>5m</c>, <c>1h30m</c>, <c>500ms</c>, or bare seconds.</summary>
internal static class DurationOption
{
    public static Option<TimeSpan> Create(string name, string description, TimeSpan defaultValue) => new(name)
    {
        Description = description + " Units: ms, s, m, h (combined as in 1m30s); a bare number is seconds.",
        HelpName = "DURATION",
        DefaultValueFactory = _ => defaultValue,
        // Parsing here makes a bad duration a usage error, reported before any server is contacted.
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (!TryParse(text, out TimeSpan duration))
            {
                result.AddError($"invalid {name}: '{text}' is not a duration (examples: 300s, 5m, 1h30m)");
                return TimeSpan.Zero;
            }

            if (duration <= TimeSpan.Zero)
            {
                result.AddError($"invalid {name}: '{text}' is not a positive duration");
                return TimeSpan.Zero;
            }

            return duration;
        },
    };

    /// <summary>Parses a sequence of number-unit pairs (decimals allowed), or one bare number of seconds.</summary>
    public static bool TryParse(string text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        ReadOnlySpan<char> rest = text.AsSpan().Trim();
        if (rest.IsEmpty)
        {
            return false;
        }

        if (double.TryParse(rest, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double bareSeconds))
        {
            return TryAdd(ref duration, bareSeconds, 1);
        }

        while (!rest.IsEmpty)
        {
            int numberLength = 0;
            while (numberLength < rest.Length && (char.IsAsciiDigit(rest[numberLength]) || rest[numberLength] == '.'))
            {
                numberLength++;
            }

            int unitLength = 0;
            while (numberLength + unitLength < rest.Length && char.IsAsciiLetter(rest[numberLength + unitLength]))
            {
                unitLength++;
            }

            if (numberLength == 0 || unitLength == 0
                || !double.TryParse(rest[..numberLength], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
            {
                return false;
            }

            double secondsPerUnit = rest.Slice(numberLength, unitLength) switch
            {
                "ms" => 0.001,
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => 0,
            };
            if (secondsPerUnit == 0 || !TryAdd(ref duration, value, secondsPerUnit))
            {
                return false;
            }

            rest = rest[(numberLength + unitLength)..];
        }

        return true;
    }

    private static bool TryAdd(ref TimeSpan duration, double value, double secondsPerUnit)
    {
        double seconds = duration.TotalSeconds + (value * secondsPerUnit);
        // A year is far past any wait this CLI does; beyond it the number is a typo.
        if (!double.IsFinite(seconds) || seconds > 365 * 86400.0)
        {
            return false;
        }

        duration = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
