namespace CsiNvme.Api;

/// <summary>
/// Rules for the labels kept with volumes and snapshots. Keys follow the character set of Kubernetes label
/// names (so CSI parameters and Kubernetes keys fit as they are) but may mix '/' and '.' freely; the limits
/// keep a record small enough to list thousands of volumes in one response.
/// </summary>
public static class VolumeLabels
{
    public const int MaxKeyLength = 63;
    public const int MaxValueLength = 256;
    public const int MaxCount = 32;

    public static bool IsValidKey(string? key, out string? error)
    {
        if (string.IsNullOrEmpty(key))
        {
            error = "label key is empty";
            return false;
        }

        if (key.Length > MaxKeyLength)
        {
            error = $"label key '{key}' is {key.Length} characters long; the maximum is {MaxKeyLength}";
            return false;
        }

        foreach (var c in key)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('.' or '/' or '_' or '-'))
            {
                error = $"label key '{key}' contains '{c}'; only A-Z, a-z, 0-9, '.', '/', '_' and '-' are allowed";
                return false;
            }
        }

        error = null;
        return true;
    }

    /// <summary>Checks a whole label set: the count, every key and every value.</summary>
    public static bool IsValid(IEnumerable<KeyValuePair<string, string>>? labels, out string? error)
    {
        if (labels is null)
        {
            error = null;
            return true;
        }

        var count = 0;
        foreach (var (key, value) in labels)
        {
            if (++count > MaxCount)
            {
                error = $"more than {MaxCount} labels";
                return false;
            }

            if (!IsValidKey(key, out error))
            {
                return false;
            }

            if (value is null)
            {
                error = $"label {key} has no value";
                return false;
            }

            if (value.Length > MaxValueLength)
            {
                error = $"label {key} has a value of {value.Length} characters; the maximum is {MaxValueLength}";
                return false;
            }
        }

        error = null;
        return true;
    }

    /// <summary>Parses "key=value" as given on a command line; the value may be empty and may contain '='.</summary>
    public static bool TryParse(string text, out string key, out string value, out string? error)
    {
        var eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq < 0)
        {
            (key, value, error) = ("", "", $"label '{text}' is not KEY=VALUE");
            return false;
        }

        key = text[..eq];
        value = text[(eq + 1)..];
        if (!IsValidKey(key, out error))
        {
            return false;
        }

        if (value.Length > MaxValueLength)
        {
            error = $"label {key} has a value of {value.Length} characters; the maximum is {MaxValueLength}";
            return false;
        }

        return true;
    }
}
