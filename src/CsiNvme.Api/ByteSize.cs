using System.Globalization;
using System.Numerics;

namespace CsiNvme.Api;

/// <summary>
/// Parses and formats human byte sizes such as "10GiB", "1.5 GiB", "500MB" or "4096".
/// </summary>
/// <remarks>
/// Unit choice: the bare letters K, M, G, T, P, E and the binary forms Ki/KiB, Mi/MiB, ... are IEC
/// powers of 1024, because that is what storage people mean by "a 10G volume" and what block
/// devices report. The two-letter forms kB/KB, MB, GB, TB, PB, EB are SI powers of 1000, matching
/// how disk vendors and Kubernetes ("10G" excepted) use them. Units are case-insensitive, so "gb"
/// is SI and "g" or "gib" is IEC. A trailing "B" alone means bytes. Whitespace between the number
/// and the unit is allowed so that <see cref="Format"/> output parses back.
/// </remarks>
public static class ByteSize
{
    // Bounded so a hostile input cannot make us do big-number arithmetic on megabytes of digits.
    private const int MaxTextLength = 64;

    private static readonly string[] _formatUnits = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    public static bool TryParse(string? text, out long bytes, out string? error)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "size is empty";
            return false;
        }

        var s = text.Trim();
        if (s.Length > MaxTextLength)
        {
            error = $"size '{Shorten(s)}' is too long";
            return false;
        }

        if (s[0] == '-')
        {
            error = $"size '{s}' must not be negative";
            return false;
        }

        if (s[0] == '+')
        {
            s = s[1..];
        }

        var i = 0;
        var mantissa = BigInteger.Zero;
        var integerDigits = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            mantissa = mantissa * 10 + (s[i] - '0');
            integerDigits++;
            i++;
        }

        var fractionDigits = 0;
        if (i < s.Length && s[i] == '.')
        {
            i++;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
            {
                mantissa = mantissa * 10 + (s[i] - '0');
                fractionDigits++;
                i++;
            }
        }

        if (integerDigits + fractionDigits == 0)
        {
            error = $"size '{text.Trim()}' does not start with a number (examples: 4096, 512MiB, 1.5GiB, 10GB)";
            return false;
        }

        while (i < s.Length && char.IsWhiteSpace(s[i]))
        {
            i++;
        }

        var unit = s[i..];
        if (!TryUnitMultiplier(unit, out var multiplier))
        {
            error = $"size '{text.Trim()}' has unknown unit '{unit}' (use B, K/Ki/KiB, M/Mi/MiB, G/Gi/GiB, T/Ti/TiB for powers of 1024 or kB, MB, GB, TB for powers of 1000)";
            return false;
        }

        var scaled = mantissa * multiplier;
        var divisor = BigInteger.Pow(10, fractionDigits);
        var value = BigInteger.DivRem(scaled, divisor, out var remainder);
        if (!remainder.IsZero)
        {
            error = $"size '{text.Trim()}' is not a whole number of bytes";
            return false;
        }

        if (value > long.MaxValue)
        {
            error = $"size '{text.Trim()}' is too large (maximum {long.MaxValue} bytes)";
            return false;
        }

        bytes = (long)value;
        error = null;
        return true;
    }

    /// <summary>
    /// Formats with one decimal in the largest IEC unit not above the value: "512 B", "1.0 GiB", "1.5 TiB".
    /// </summary>
    public static string Format(long bytes)
    {
        if (bytes < 0)
        {
            return "-" + Format(bytes == long.MinValue ? long.MaxValue : -bytes);
        }

        if (bytes < 1024)
        {
            return bytes.ToString(CultureInfo.InvariantCulture) + " B";
        }

        var unitIndex = 0;
        var unitSize = 1L;
        while (unitIndex < _formatUnits.Length - 1 && bytes / unitSize >= 1024)
        {
            unitSize *= 1024;
            unitIndex++;
        }

        // Integer arithmetic for tenths so large values do not lose precision through double.
        var tenths = ((Int128)bytes * 10 + unitSize / 2) / unitSize;
        var whole = tenths / 10;
        var fraction = tenths % 10;
        if (whole >= 1024 && unitIndex < _formatUnits.Length - 1)
        {
            // Rounding carried us into the next unit (e.g. 1023.96 KiB -> 1.0 MiB).
            unitIndex++;
            whole = 1;
            fraction = 0;
        }

        return string.Create(CultureInfo.InvariantCulture, $"{whole}.{fraction} {_formatUnits[unitIndex]}");
    }

    private static bool TryUnitMultiplier(string unit, out BigInteger multiplier)
    {
        multiplier = BigInteger.One;
        if (unit.Length == 0 || unit.Equals("b", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        var power = char.ToLowerInvariant(unit[0]) switch
        {
            'k' => 1,
            'm' => 2,
            'g' => 3,
            't' => 4,
            'p' => 5,
            'e' => 6,
            _ => 0,
        };
        if (power == 0)
        {
            return false;
        }

        var rest = unit[1..].ToLowerInvariant();
        switch (rest)
        {
            case "":
            case "i":
            case "ib":
                multiplier = BigInteger.Pow(1024, power);
                return true;
            case "b":
                multiplier = BigInteger.Pow(1000, power);
                return true;
            default:
                return false;
        }
    }

    private static string Shorten(string s) => s.Length <= 20 ? s : s[..20] + "...";
}
