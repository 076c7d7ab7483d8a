using System.CommandLine;
using System.Text.Json;

namespace CsiNvme.Cli;

/// <summary>
/// Where the management API is and how to reach it: from the command line, else the environment (CSINVME_SERVER,
/// CSINVME_TLS_CA, CSINVME_TLS_CERT, CSINVME_TLS_KEY), else the config file (CSINVME_CONFIG, default
/// ~/.config/csinvme/config.json), else the loopback default without TLS.
/// </summary>
internal sealed record ClientSettings(string Server, string? TlsCa, string? TlsCert, string? TlsKey)
{
    public const string ServerVariable = "CSINVME_SERVER";
    public const string CaVariable = "CSINVME_TLS_CA";
    public const string CertVariable = "CSINVME_TLS_CERT";
    public const string KeyVariable = "CSINVME_TLS_KEY";
    public const string ConfigVariable = "CSINVME_CONFIG";

    public bool UsesTls => TlsCa is not null;

    /// <summary>The config file consulted when <see cref="ConfigVariable"/> is not set.</summary>
    public static string DefaultConfigFile
    {
        get
        {
            var configHome = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
            if (string.IsNullOrEmpty(configHome))
            {
                configHome = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            }

            return Path.Combine(configHome, "csinvme", "config.json");
        }
    }

    public static bool TryResolve(ParseResult parse, GlobalOptions globals, out ClientSettings settings, out string? error)
    {
        settings = null!;
        var configPath = Environment.GetEnvironmentVariable(ConfigVariable);
        var explicitConfig = !string.IsNullOrEmpty(configPath);
        configPath = explicitConfig ? configPath! : DefaultConfigFile;
        ConfigFile? config = null;
        if (explicitConfig || File.Exists(configPath))
        {
            if (!ConfigFile.TryRead(configPath, out config, out error))
            {
                return false;
            }
        }

        string? Pick(Option<string> option, string variable, string? fromConfig) =>
            parse.GetResult(option) is { Implicit: false } ? parse.GetValue(option)
            : NonEmpty(Environment.GetEnvironmentVariable(variable)) ?? fromConfig;

        var server = Pick(globals.Server, ServerVariable, config?.Server) ?? GlobalOptions.DefaultServer;
        var ca = Pick(globals.TlsCa, CaVariable, config?.TlsCa);
        var cert = Pick(globals.TlsCert, CertVariable, config?.TlsCert);
        var key = Pick(globals.TlsKey, KeyVariable, config?.TlsKey);
        if ((cert is null) != (key is null))
        {
            error = "--tls-cert and --tls-key go together: the client certificate and its private key";
            return false;
        }

        if (cert is not null && ca is null)
        {
            error = "--tls-cert needs --tls-ca, the CA that signed the server's certificate";
            return false;
        }

        settings = new ClientSettings(server, ca, cert, key);
        error = null;
        return true;
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    /// <summary>{"server": "ADDR:PORT", "tlsCa": PATH, "tlsCert": PATH, "tlsKey": PATH}; relative paths are relative to the file.</summary>
    private sealed record ConfigFile(string? Server, string? TlsCa, string? TlsCert, string? TlsKey)
    {
        public static bool TryRead(string path, out ConfigFile? config, out string? error)
        {
            config = null;
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(path));
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                {
                    error = $"config file {path}: expected a JSON object";
                    return false;
                }

                var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
                string? Text(string name) => document.RootElement.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
                    ? NonEmpty(value.GetString())
                    : null;
                string? FilePath(string name) => Text(name) is { } file ? Path.GetFullPath(file, directory) : null;
                foreach (var property in document.RootElement.EnumerateObject())
                {
                    if (property.Name is not ("server" or "tlsCa" or "tlsCert" or "tlsKey"))
                    {
                        error = $"config file {path}: unknown key '{property.Name}' (known: server, tlsCa, tlsCert, tlsKey)";
                        return false;
                    }
                }

                config = new ConfigFile(Text("server"), FilePath("tlsCa"), FilePath("tlsCert"), FilePath("tlsKey"));
                error = null;
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
            {
                error = $"config file {path}: {e.Message}";
                return false;
            }
        }
    }
}
