using System.Security.Cryptography;
using System.Text;
using CsiNvme.Api;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// CSI names (CreateVolume/CreateSnapshot name, any Unicode) to storage server names ([a-z0-9._-], at most 128
/// characters, starting with a letter or digit). The server name is also the CSI volume or snapshot id.
/// </summary>
public static class VolumeNames
{
    private const int HashHexLength = 16;

    /// <summary>
    /// A name the server accepts is kept as is (Kubernetes' "pvc-&lt;uuid&gt;" and "snapshot-&lt;uuid&gt;" are). Any other
    /// name is lower-cased with other characters replaced by '-', shortened, and suffixed with 16 hex digits of
    /// its SHA-256: the mapping stays stable across calls (idempotency) and two CSI names that sanitize alike
    /// ("PVC-1" and "pvc-1") still get different volumes.
    /// </summary>
    public static string ToServerName(string csiName)
    {
        if (VolumeNaming.IsValidVolumeName(csiName, out _))
        {
            return csiName;
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(csiName)))[..HashHexLength];
        var text = new StringBuilder(VolumeNaming.MaxVolumeNameLength);
        foreach (var rune in csiName.EnumerateRunes())
        {
            var c = rune.IsAscii ? char.ToLowerInvariant((char)rune.Value) : '-';
            text.Append(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-' ? c : '-');
        }

        var prefixLength = VolumeNaming.MaxVolumeNameLength - HashHexLength - 1;
        var prefix = text.ToString().TrimStart('.', '_', '-');
        if (prefix.Length > prefixLength)
        {
            prefix = prefix[..prefixLength];
        }

        return prefix.Length == 0 ? hash : $"{prefix}-{hash}";
    }

    /// <summary>
    /// The CSI spec bans control characters other than common whitespace in names: U+0000-U+0008, U+000B,
    /// U+000C, U+000E-U+001F, U+007F-U+009F.
    /// </summary>
    public static bool HasBannedCharacter(string name)
    {
        foreach (var c in name)
        {
            if (c is <= '\u0008' or '\u000B' or '\u000C' or (>= '\u000E' and <= '\u001F') or (>= '\u007F' and <= '\u009F'))
            {
                return true;
            }
        }

        return false;
    }
}
