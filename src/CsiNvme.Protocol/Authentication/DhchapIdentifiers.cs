using System.Security.Cryptography;

namespace CsiNvme.Protocol.Authentication;

/// <summary>
/// Hash functions of DH-HMAC-CHAP (NVMe base 2.0, 8.13.5.2: the HashID values of the protocol descriptor and of the
/// DH-HMAC-CHAP_Challenge message; the same numbers name a secret's transformation hash in its DHHC-1 form).
/// </summary>
public enum DhchapHash : byte
{
    Sha256 = 0x01,
    Sha384 = 0x02,
    Sha512 = 0x03,
}

/// <summary>Diffie-Hellman groups of DH-HMAC-CHAP (NVMe base 2.0, 8.13.5.2, DHGID): none, or an RFC 7919 FFDHE group.</summary>
public enum DhchapDhGroup : byte
{
    Null = 0x00,
    Ffdhe2048 = 0x01,
    Ffdhe3072 = 0x02,
    Ffdhe4096 = 0x03,
    Ffdhe6144 = 0x04,
    Ffdhe8192 = 0x05,
}

/// <summary>One definition of each hash function's length, name and HMAC.</summary>
public static class DhchapHashes
{
    public const int MaxLength = 64;

    public static bool IsDefined(byte id) => id is >= (byte)DhchapHash.Sha256 and <= (byte)DhchapHash.Sha512;

    /// <summary>Digest length in bytes (the HL field of the messages).</summary>
    public static int Length(DhchapHash hash) => hash switch
    {
        DhchapHash.Sha256 => 32,
        DhchapHash.Sha384 => 48,
        DhchapHash.Sha512 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(hash), hash, "not a DH-HMAC-CHAP hash"),
    };

    /// <summary>The name the Linux host and nvme-cli use ("sha256" ...), and the one the management API takes.</summary>
    public static string Name(DhchapHash hash) => hash switch
    {
        DhchapHash.Sha256 => "sha256",
        DhchapHash.Sha384 => "sha384",
        DhchapHash.Sha512 => "sha512",
        _ => throw new ArgumentOutOfRangeException(nameof(hash), hash, "not a DH-HMAC-CHAP hash"),
    };

    public static bool TryParse(string? name, out DhchapHash hash)
    {
        switch (name?.Trim().ToLowerInvariant().Replace("-", "", StringComparison.Ordinal))
        {
            case "sha256" or "hmac(sha256)":
                hash = DhchapHash.Sha256;
                return true;
            case "sha384" or "hmac(sha384)":
                hash = DhchapHash.Sha384;
                return true;
            case "sha512" or "hmac(sha512)":
                hash = DhchapHash.Sha512;
                return true;
            default:
                hash = default;
                return false;
        }
    }

    public static IncrementalHash CreateHmac(DhchapHash hash, ReadOnlySpan<byte> key) => hash switch
    {
        DhchapHash.Sha256 => IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key),
        DhchapHash.Sha384 => IncrementalHash.CreateHMAC(HashAlgorithmName.SHA384, key),
        DhchapHash.Sha512 => IncrementalHash.CreateHMAC(HashAlgorithmName.SHA512, key),
        _ => throw new ArgumentOutOfRangeException(nameof(hash), hash, "not a DH-HMAC-CHAP hash"),
    };

    public static byte[] Digest(DhchapHash hash, ReadOnlySpan<byte> data) => hash switch
    {
        DhchapHash.Sha256 => SHA256.HashData(data),
        DhchapHash.Sha384 => SHA384.HashData(data),
        DhchapHash.Sha512 => SHA512.HashData(data),
        _ => throw new ArgumentOutOfRangeException(nameof(hash), hash, "not a DH-HMAC-CHAP hash"),
    };

    public static byte[] Hmac(DhchapHash hash, ReadOnlySpan<byte> key, ReadOnlySpan<byte> data) => hash switch
    {
        DhchapHash.Sha256 => HMACSHA256.HashData(key, data),
        DhchapHash.Sha384 => HMACSHA384.HashData(key, data),
        DhchapHash.Sha512 => HMACSHA512.HashData(key, data),
        _ => throw new ArgumentOutOfRangeException(nameof(hash), hash, "not a DH-HMAC-CHAP hash"),
    };
}

/// <summary>Names of the DH groups as the Linux host and nvme-cli print them ("null", "ffdhe2048" ...).</summary>
public static class DhchapDhGroups
{
    public static bool IsDefined(byte id) => id <= (byte)DhchapDhGroup.Ffdhe8192;

    public static string Name(DhchapDhGroup group) => group == DhchapDhGroup.Null ? "null" : FfdheGroup.Get(group).Name;

    public static bool TryParse(string? name, out DhchapDhGroup group)
    {
        var text = name?.Trim().ToLowerInvariant();
        foreach (var candidate in Enum.GetValues<DhchapDhGroup>())
        {
            if (text == Name(candidate) || (candidate == DhchapDhGroup.Null && text == "none"))
            {
                group = candidate;
                return true;
            }
        }

        group = default;
        return false;
    }
}
