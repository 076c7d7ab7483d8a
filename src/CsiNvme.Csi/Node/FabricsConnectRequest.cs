using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Serialization;
using CsiNvme.Csi.Authentication;

namespace CsiNvme.Csi.Node;

/// <summary>One NVMe/TCP listener of a volume's subsystem, as publish_context["targets"] lists it.</summary>
public sealed record FabricsTarget(string Address, int Port)
{
    public override string ToString() => Address.Contains(':', StringComparison.Ordinal) ? $"[{Address}]:{Port}" : $"{Address}:{Port}";

    public IPEndPoint EndPoint => new(IPAddress.Parse(Address), Port);

    /// <summary>Parses "ADDR:PORT,ADDR:PORT" ("[v6]:PORT" for IPv6); throws <see cref="FormatException"/> naming the bad entry.</summary>
    public static IReadOnlyList<FabricsTarget> ParseList(string text)
    {
        var targets = new List<FabricsTarget>();
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!TryParse(entry, out var target))
            {
                throw new FormatException($"target '{entry}' is not ADDR:PORT with an IP address");
            }

            if (!targets.Contains(target))
            {
                targets.Add(target);
            }
        }

        if (targets.Count == 0)
        {
            throw new FormatException("no targets listed");
        }

        return targets;
    }

    /// <summary>One "ADDR:PORT" ("[v6]:PORT"), the address in its canonical form.</summary>
    public static bool TryParse(string text, out FabricsTarget target)
    {
        if (IPEndPoint.TryParse(text, out var endpoint) && endpoint.Port != 0 && text.Contains(':', StringComparison.Ordinal))
        {
            target = From(endpoint.Address, endpoint.Port);
            return true;
        }

        target = null!;
        return false;
    }

    public static FabricsTarget From(IPAddress address, int port) =>
        new((address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString(), port);
}

/// <summary>One connection setting: its volume_context key (a StorageClass parameter) and the node plugin's flag for its default.</summary>
public sealed record FabricsConnectParameter(string Key, string Flag, string HelpName, string Description);

/// <summary>
/// The connection settings of one volume, from its volume_context (StorageClass parameters copied through
/// by CreateVolume), each key the context lacks taken from the node plugin's defaults (its flags, else the
/// documented defaults), rendered as the option string the kernel's /dev/nvme-fabrics parses
/// (drivers/nvme/host/fabrics.c, nvmf_parse_options).
/// </summary>
/// <remarks>
/// The node-side defaults exist because StorageClass parameters cannot change once a class exists: settings
/// that every volume of a cluster shares belong to the node plugin, where changing them is a rolling update.
/// </remarks>
public sealed record FabricsConnectSettings
{
    public const int DefaultCtrlLossTmo = 600;
    public const int DefaultReconnectDelay = 10;
    public const int DefaultFastIoFailTmo = 15;
    public const int DefaultKeepAliveTmo = 5;

    // Volumes with more than one replica (docs/kubevirt.md, "Timeouts"): a dead path is let go after a minute while the
    // others carry the I/O (the path keeper connects it again once its node answers, and never lets the last paths go),
    // a returning node is back as a path within seconds, and I/O without any usable path waits instead of failing.
    public const int DefaultMultipathCtrlLossTmo = 60;
    public const int DefaultMultipathReconnectDelay = 5;
    public const int DefaultMultipathFastIoFailTmo = -1;

    /// <summary>Seconds the kernel keeps reconnecting a lost controller before removing it; -1 = forever.</summary>
    public int CtrlLossTmo { get; init; } = DefaultCtrlLossTmo;

    public int ReconnectDelay { get; init; } = DefaultReconnectDelay;

    /// <summary>Seconds after a connection loss before I/O fails instead of waiting; -1 = never.</summary>
    public int FastIoFailTmo { get; init; } = DefaultFastIoFailTmo;

    public int KeepAliveTmo { get; init; } = DefaultKeepAliveTmo;

    /// <summary>0 leaves the kernel's default (one per CPU).</summary>
    public int NrIoQueues { get; init; }

    public bool HeaderDigest { get; init; }

    public bool DataDigest { get; init; }

    /// <summary>
    /// Connect I/O queues with SQ flow control disabled (CATTR bit 2; the kernel's disable_sqflow). The host then
    /// needs no SQ head pointer, so our target completes a successful read in its C2HData PDU (SUCCESS flag) instead
    /// of sending a CapsuleResp too. On by default: one PDU less per read, and the option came with the kernel's
    /// NVMe/TCP host, so every kernel that can connect at all accepts it.
    /// </summary>
    public bool DisableSqFlow { get; init; } = true;

    /// <summary>
    /// DH-HMAC-CHAP credentials from NodeStageVolume's secrets, or null. Never written to the node's state directory:
    /// after a restart the path keeper reads them back from a live controller's sysfs, where the kernel keeps them.
    /// </summary>
    [JsonIgnore]
    public DhchapCsiSecrets? Dhchap { get; init; }

    /// <summary>The documented defaults, used where neither the volume_context nor a node flag sets a key.</summary>
    public static FabricsConnectSettings Default { get; } = new();

    /// <summary>The documented defaults of volumes with several replicas.</summary>
    public static FabricsConnectSettings MultipathDefault { get; } = new()
    {
        CtrlLossTmo = DefaultMultipathCtrlLossTmo,
        ReconnectDelay = DefaultMultipathReconnectDelay,
        FastIoFailTmo = DefaultMultipathFastIoFailTmo,
    };

    /// <summary>Every setting, in the order of the connect string.</summary>
    public static IReadOnlyList<FabricsConnectParameter> Parameters { get; } =
    [
        new("ctrlLossTmo", "--ctrl-loss-tmo", "SECONDS",
            $"Seconds the kernel keeps reconnecting a lost controller before removing it; -1 = forever (default {DefaultCtrlLossTmo})."),
        new("reconnectDelay", "--reconnect-delay", "SECONDS", $"Seconds between reconnect attempts (default {DefaultReconnectDelay})."),
        new("fastIoFailTmo", "--fast-io-fail-tmo", "SECONDS",
            $"Seconds after a connection loss before I/O fails instead of waiting for --ctrl-loss-tmo; -1 = never (default {DefaultFastIoFailTmo})."),
        new("keepAliveTmo", "--keep-alive-tmo", "SECONDS", $"NVMe keep-alive timeout in seconds (default {DefaultKeepAliveTmo})."),
        new("nrIoQueues", "--nr-io-queues", "COUNT", "I/O queues per controller; 0 = the kernel's default, one per CPU (default 0)."),
        new("headerDigest", "--header-digest", "true|false", "CRC32C digest on PDU headers (default false)."),
        new("dataDigest", "--data-digest", "true|false", "CRC32C digest on PDU data (default false)."),
        new("disableSqFlow", "--disable-sq-flow", "true|false", "Connect I/O queues with SQ flow control disabled (default true)."),
    ];

    /// <summary>
    /// The node flags of the timeouts of volumes with several replicas: a volume whose context lacks the key takes these
    /// instead of the single-path flags. The other settings are the same for both.
    /// </summary>
    public static IReadOnlyList<FabricsConnectParameter> MultipathParameters { get; } =
    [
        new("ctrlLossTmo", "--multipath-ctrl-loss-tmo", "SECONDS",
            "For volumes with several replicas: seconds the kernel keeps reconnecting a lost path while another path is live; the path " +
            $"keeper holds the last paths forever (default {DefaultMultipathCtrlLossTmo})."),
        new("reconnectDelay", "--multipath-reconnect-delay", "SECONDS",
            $"For volumes with several replicas: seconds between reconnect attempts (default {DefaultMultipathReconnectDelay})."),
        new("fastIoFailTmo", "--multipath-fast-io-fail-tmo", "SECONDS",
            "For volumes with several replicas: seconds without a usable path before I/O fails; -1 = I/O waits for a path " +
            $"(default {DefaultMultipathFastIoFailTmo})."),
    ];

    /// <summary>Reads the settings from volume_context keys over the documented defaults; throws <see cref="FormatException"/> naming the bad key.</summary>
    public static FabricsConnectSettings FromVolumeContext(IReadOnlyDictionary<string, string> context) => FromVolumeContext(context, Default);

    /// <summary>
    /// Reads the settings from volume_context keys; a key the context lacks (or leaves empty) takes its value from
    /// <paramref name="defaults"/>, the node plugin's. Throws <see cref="FormatException"/> naming the bad key.
    /// </summary>
    public static FabricsConnectSettings FromVolumeContext(IReadOnlyDictionary<string, string> context, FabricsConnectSettings defaults) =>
        Read(context, defaults, key => $"volume context {key}");

    /// <summary>
    /// The node plugin's defaults from its flags: <paramref name="values"/> maps a parameter's key to the text given
    /// for its flag (<see cref="Parameters"/>), <paramref name="multipathValues"/> the same for <see cref="MultipathParameters"/>.
    /// Throws <see cref="FormatException"/> naming the flag.
    /// </summary>
    public static FabricsConnectDefaults FromNodeFlags(IReadOnlyDictionary<string, string> values, IReadOnlyDictionary<string, string>? multipathValues = null)
    {
        var single = Read(values, Default, key => Parameters.Single(p => p.Key == key).Flag);
        var multipathBase = single with
        {
            CtrlLossTmo = MultipathDefault.CtrlLossTmo,
            ReconnectDelay = MultipathDefault.ReconnectDelay,
            FastIoFailTmo = MultipathDefault.FastIoFailTmo,
        };
        var multipath = Read(multipathValues ?? new Dictionary<string, string>(), multipathBase, key => MultipathParameters.Single(p => p.Key == key).Flag);
        return new FabricsConnectDefaults(single, multipath);
    }

    private static FabricsConnectSettings Read(IReadOnlyDictionary<string, string> values, FabricsConnectSettings defaults, Func<string, string> describe) => new()
    {
        CtrlLossTmo = Int(values, "ctrlLossTmo", defaults.CtrlLossTmo, min: -1, max: 1_000_000, describe),
        ReconnectDelay = Int(values, "reconnectDelay", defaults.ReconnectDelay, min: 1, max: 100_000, describe),
        FastIoFailTmo = Int(values, "fastIoFailTmo", defaults.FastIoFailTmo, min: -1, max: 1_000_000, describe),
        KeepAliveTmo = Int(values, "keepAliveTmo", defaults.KeepAliveTmo, min: 1, max: 65_535, describe),
        NrIoQueues = Int(values, "nrIoQueues", defaults.NrIoQueues, min: 0, max: 1024, describe),
        HeaderDigest = Bool(values, "headerDigest", defaults.HeaderDigest, describe),
        DataDigest = Bool(values, "dataDigest", defaults.DataDigest, describe),
        DisableSqFlow = Bool(values, "disableSqFlow", defaults.DisableSqFlow, describe),
    };

    /// <summary>The option string written to /dev/nvme-fabrics for one target.</summary>
    public string BuildConnectString(FabricsTarget target, string subsystemNqn, string hostNqn, Guid hostId)
    {
        var text = new StringBuilder(256);
        text.Append("transport=tcp")
            .Append(",traddr=").Append(target.Address)
            .Append(",trsvcid=").Append(target.Port.ToString(CultureInfo.InvariantCulture))
            .Append(",nqn=").Append(subsystemNqn)
            .Append(",hostnqn=").Append(hostNqn)
            .Append(",hostid=").Append(hostId.ToString("D"))
            .Append(",ctrl_loss_tmo=").Append(CtrlLossTmo.ToString(CultureInfo.InvariantCulture))
            .Append(",reconnect_delay=").Append(ReconnectDelay.ToString(CultureInfo.InvariantCulture))
            .Append(",fast_io_fail_tmo=").Append(FastIoFailTmo.ToString(CultureInfo.InvariantCulture))
            .Append(",keep_alive_tmo=").Append(KeepAliveTmo.ToString(CultureInfo.InvariantCulture));
        if (NrIoQueues > 0)
        {
            text.Append(",nr_io_queues=").Append(NrIoQueues.ToString(CultureInfo.InvariantCulture));
        }

        if (HeaderDigest)
        {
            text.Append(",hdr_digest");
        }

        if (DataDigest)
        {
            text.Append(",data_digest");
        }

        if (DisableSqFlow)
        {
            text.Append(",disable_sqflow");
        }

        if (Dhchap is { } dhchap)
        {
            // fabrics.c, nvmf_parse_options: the kernel authenticates every queue with them (and re-authenticates).
            text.Append(",dhchap_secret=").Append(dhchap.HostSecret);
            if (dhchap.IsBidirectional)
            {
                text.Append(",dhchap_ctrl_secret=").Append(dhchap.CtrlSecret);
            }
        }

        return text.ToString();
    }

    private static int Int(IReadOnlyDictionary<string, string> values, string key, int fallback, int min, int max, Func<string, string> describe)
    {
        if (!values.TryGetValue(key, out var text) || string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (!int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new FormatException($"{describe(key)}='{text}' is not an integer in {min}..{max}");
        }

        return value;
    }

    private static bool Bool(IReadOnlyDictionary<string, string> values, string key, bool fallback, Func<string, string> describe)
    {
        if (!values.TryGetValue(key, out var text) || string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        return text.Trim().ToLowerInvariant() switch
        {
            "true" => true,
            "false" => false,
            _ => throw new FormatException($"{describe(key)}='{text}' is not true or false"),
        };
    }
}

/// <summary>
/// The node plugin's connection settings for the keys a volume's context lacks: one set for volumes on one storage node,
/// one for volumes with several replicas, whose timeouts differ (docs/kubevirt.md, "Timeouts").
/// </summary>
public sealed record FabricsConnectDefaults(FabricsConnectSettings SinglePath, FabricsConnectSettings Multipath)
{
    public static FabricsConnectDefaults Default { get; } = new(FabricsConnectSettings.Default, FabricsConnectSettings.MultipathDefault);

    public FabricsConnectSettings For(int replicas) => replicas > 1 ? Multipath : SinglePath;
}
