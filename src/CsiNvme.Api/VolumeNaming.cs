using System.Text;

namespace CsiNvme.Api;

/// <summary>Volume names and NVMe Qualified Names (NQNs) used across the server, CLI and CSI driver.</summary>
public static class VolumeNaming
{
    public const string NqnPrefix = "nqn.2026-11.io.csinvme";

    /// <summary>NVMe base specification 2.0, 4.5: an NQN is at most 223 bytes of UTF-8.</summary>
    public const int MaxNqnBytes = 223;

    public const int MaxVolumeNameLength = 128;

    // NVMe base specification 2.0, 4.5.1 (format 2): the UUID-based NQN for entities without a naming authority.
    private const string UuidNqnPrefix = "nqn.2014-08.org.nvmexpress:uuid:";

    public static string SubsystemNqn(Guid volumeId) => $"{NqnPrefix}:volume:{volumeId:D}";

    /// <summary>
    /// The subsystem a storage node exports its copy of a volume under for the volume's primary to replicate to: open
    /// only to the cluster's storage nodes (<see cref="StorageNodeHostNqn"/>), never to hosts.
    /// </summary>
    public static string ReplicaSubsystemNqn(Guid volumeId) => $"{NqnPrefix}:replica:{volumeId:D}";

    /// <summary>The host NQN a storage node connects to other nodes' replica subsystems with.</summary>
    public static string StorageNodeHostNqn(string clusterId, string nodeName) => $"{NqnPrefix}:storage-node:{clusterId}:{nodeName}";

    /// <summary>
    /// 1..128 characters of [a-z0-9._-] starting with a letter or digit. Lower case only so names
    /// compare the same everywhere (Kubernetes object names, file systems, NQN-like strings);
    /// long enough for CSI names such as "pvc-&lt;uuid&gt;".
    /// </summary>
    public static bool IsValidVolumeName(string? name, out string? error)
    {
        if (string.IsNullOrEmpty(name))
        {
            error = "volume name is empty";
            return false;
        }

        if (name.Length > MaxVolumeNameLength)
        {
            error = $"volume name is {name.Length} characters long; the maximum is {MaxVolumeNameLength}";
            return false;
        }

        if (!IsLowerAlphanumeric(name[0]))
        {
            error = $"volume name '{name}' must start with a lower-case letter or digit";
            return false;
        }

        foreach (var c in name)
        {
            if (!IsLowerAlphanumeric(c) && c != '.' && c != '_' && c != '-')
            {
                error = $"volume name '{name}' contains '{c}'; only a-z, 0-9, '.', '_' and '-' are allowed";
                return false;
            }
        }

        error = null;
        return true;
    }

    /// <summary>
    /// Checks an NQN against NVMe base specification 2.0, 4.5 (NVMe Qualified Names):
    /// "nqn." yyyy "-" mm "." reverse-domain [":" anything], or the UUID form
    /// "nqn.2014-08.org.nvmexpress:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; at most 223 bytes of UTF-8.
    /// </summary>
    public static bool IsValidNqn(string? nqn, out string? error)
    {
        if (string.IsNullOrEmpty(nqn))
        {
            error = "NQN is empty";
            return false;
        }

        var byteCount = Encoding.UTF8.GetByteCount(nqn);
        if (byteCount > MaxNqnBytes)
        {
            error = $"NQN is {byteCount} bytes long; the maximum is {MaxNqnBytes} bytes of UTF-8";
            return false;
        }

        for (var i = 0; i < nqn.Length; i++)
        {
            var c = nqn[i];
            // The NQN travels as a NUL-terminated field (Connect data, Identify SUBNQN), so NUL and
            // other control characters would truncate or corrupt it on the wire.
            if (char.IsControl(c))
            {
                error = "NQN contains a control character";
                return false;
            }

            if (char.IsHighSurrogate(c) && i + 1 < nqn.Length && char.IsLowSurrogate(nqn[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                error = "NQN is not valid Unicode text (unpaired surrogate)";
                return false;
            }
        }

        if (nqn.StartsWith(UuidNqnPrefix, StringComparison.Ordinal))
        {
            var uuid = nqn.AsSpan(UuidNqnPrefix.Length);
            if (uuid.Length != 36 || !Guid.TryParseExact(uuid, "D", out _))
            {
                error = $"NQN '{nqn}' uses the UUID form but '{uuid}' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)";
                return false;
            }

            error = null;
            return true;
        }

        const string FormatHint = "expected nqn.yyyy-mm.reverse.domain[:name] or nqn.2014-08.org.nvmexpress:uuid:<uuid>";
        if (!nqn.StartsWith("nqn.", StringComparison.Ordinal))
        {
            error = $"NQN '{nqn}' does not start with 'nqn.' ({FormatHint})";
            return false;
        }

        // "nqn." is followed by the year and month in which the naming authority owned the domain.
        var date = nqn.AsSpan(4);
        if (date.Length < 8 || !char.IsAsciiDigit(date[0]) || !char.IsAsciiDigit(date[1]) || !char.IsAsciiDigit(date[2]) ||
            !char.IsAsciiDigit(date[3]) || date[4] != '-' || !char.IsAsciiDigit(date[5]) || !char.IsAsciiDigit(date[6]) ||
            date[7] != '.')
        {
            error = $"NQN '{nqn}' has no yyyy-mm date after 'nqn.' ({FormatHint})";
            return false;
        }

        var month = (date[5] - '0') * 10 + (date[6] - '0');
        if (month is < 1 or > 12)
        {
            error = $"NQN '{nqn}' has month {month:D2}; it must be 01..12";
            return false;
        }

        var rest = date[8..];
        var colon = rest.IndexOf(':');
        var domain = colon < 0 ? rest : rest[..colon];
        if (!IsValidReverseDomain(domain))
        {
            error = $"NQN '{nqn}' has an invalid reverse domain name '{domain}' ({FormatHint})";
            return false;
        }

        if (colon >= 0 && colon == rest.Length - 1)
        {
            error = $"NQN '{nqn}' ends with ':' but has no name after it";
            return false;
        }

        error = null;
        return true;
    }

    private static bool IsValidReverseDomain(ReadOnlySpan<char> domain)
    {
        if (domain.IsEmpty)
        {
            return false;
        }

        foreach (var range in domain.Split('.'))
        {
            var label = domain[range];
            if (label.IsEmpty || label.Length > 63 || label[0] == '-' || label[^1] == '-')
            {
                return false;
            }

            foreach (var c in label)
            {
                if (!char.IsAsciiLetterOrDigit(c) && c != '-')
                {
                    return false;
                }
            }
        }

        return true;
    }

    private static bool IsLowerAlphanumeric(char c) => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c);
}
