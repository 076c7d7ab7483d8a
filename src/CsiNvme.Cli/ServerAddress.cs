using System.Globalization;

namespace CsiNvme.Cli;

/// <summary>Turns the --server value (ADDR:PORT, [IPv6]:PORT or HOST:PORT) into the h2c URI of the management API.</summary>
internal static class ServerAddress
{
    public static bool TryParse(string text, out Uri uri, out string? error)
    {
        uri = null!;
        string trimmed = text.Trim();
        int colon = trimmed.LastIndexOf(':');
        if (colon <= 0 || colon == trimmed.Length - 1)
        {
            error = $"--server '{text}' must be ADDR:PORT, for example 127.0.0.1:9500";
            return false;
        }

        string host = trimmed[..colon];
        string portText = trimmed[(colon + 1)..];
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            error = $"--server '{text}': port '{portText}' is not a number from 1 to 65535";
            return false;
        }

        // A bare IPv6 address has colons of its own and must be bracketed to carry a port.
        if (host.Contains(':') && !(host.StartsWith('[') && host.EndsWith(']')))
        {
            error = $"--server '{text}': write IPv6 addresses in brackets, for example [::1]:9500";
            return false;
        }

        if (!Uri.TryCreate($"http://{host}:{port}", UriKind.Absolute, out Uri? parsed) || parsed.PathAndQuery != "/")
        {
            error = $"--server '{text}': '{host}' is not a valid address or host name";
            return false;
        }

        uri = parsed;
        error = null;
        return true;
    }
}
