using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using CsiNvme.Protocol.Keys;

namespace CsiNvme.Protocol.Tls;

/// <summary>The hash of an NVMe/TCP TLS PSK: 1 SHA-256 (TLS_AES_128_GCM_SHA256), 2 SHA-384 (TLS_AES_256_GCM_SHA384).</summary>
public enum TlsPskHash : byte
{
    Sha256 = 1,
    Sha384 = 2,
}

/// <summary>
/// A configured NVMe/TCP TLS pre-shared key (NVMe/TCP transport 1.0, 3.6.1.5) in its interchange form, the one
/// <c>nvme gen-tls-key</c> prints and <c>nvme connect --tls-key</c> takes: <c>NVMeTLSkey-1:hh:base64(key ‖ CRC-32(key)
/// little-endian):</c>, where <c>hh</c> is 00 (the key is used as the retained PSK), 01 (SHA-256) or 02 (SHA-384) and the
/// key is 32 or 48 bytes. The derivations follow the transport spec (3.6.1.3, 3.6.1.4) in two encodings of
/// HKDF-Expand-Label's info: RFC 8446's (big-endian length, length-prefixed label and context), which current libnvme
/// uses, and the one libnvme used before (little-endian length, label and context without length prefixes), which
/// Debian 13's libnvme still uses and which later libnvme keeps as "compat". A version 1 identity's digest says which
/// one the host used; a version 0 identity carries no digest and is taken in the older encoding, the one of the hosts
/// that still send version 0 identities. The key never appears in <see cref="ToString"/>.
/// </summary>
public sealed class TlsPsk : IEquatable<TlsPsk>
{
    private static readonly KeyInterchangeFormat.Kind s_form = new("NVMeTLSkey-1:", "TLS PSK", "nvme gen-tls-key", "hash field", 2, "an NVMe/TCP TLS PSK");
    private readonly byte[] _key;

    private TlsPsk(byte[] key, TlsPskHash? transform)
    {
        _key = key;
        TransformHash = transform;
    }

    /// <summary>The hash that turns the configured PSK into the retained PSK, or null when it is the retained PSK (hh = 00).</summary>
    public TlsPskHash? TransformHash { get; }

    public int KeyLength => _key.Length;

    /// <summary>The hash of the TLS PSK and cipher suite: the transform's, or the key length's for an untransformed key.</summary>
    public TlsPskHash CipherHash => TransformHash ?? (_key.Length == 48 ? TlsPskHash.Sha384 : TlsPskHash.Sha256);

    /// <summary>A new random key; the length follows the hash (32 bytes for SHA-256, 48 for SHA-384).</summary>
    public static TlsPsk Generate(TlsPskHash hash = TlsPskHash.Sha256) =>
        new(RandomNumberGenerator.GetBytes(Length(hash)), hash);

    public static TlsPsk Parse(string text) =>
        TryParse(text, out var psk, out var error) ? psk : throw new FormatException(error);

    /// <summary>Reads the interchange form; <paramref name="error"/> says what is wrong without quoting the key.</summary>
    public static bool TryParse(string? text, out TlsPsk psk, out string error)
    {
        psk = null!;
        if (!KeyInterchangeFormat.TryDecode(text, s_form, out var hashId, out var key, out error))
        {
            return false;
        }

        var transform = hashId == 0 ? (TlsPskHash?)null : (TlsPskHash)hashId;
        if (key.Length is not (32 or 48) || (transform is { } hash && Length(hash) != key.Length))
        {
            CryptographicOperations.ZeroMemory(key);
            error = $"a TLS PSK is 32 bytes (SHA-256) or 48 bytes (SHA-384), not {key.Length} with hash {hashId:x2}";
            return false;
        }

        psk = new TlsPsk(key, transform);
        error = "";
        return true;
    }

    /// <summary>The interchange form. Handle with care: this is the key itself.</summary>
    public string Format() => KeyInterchangeFormat.Encode(s_form, (byte)(TransformHash ?? 0), _key);

    /// <summary>
    /// The retained PSK for a host (3.6.1.3): HKDF-Expand-Label(HKDF-Extract(0, key), "HostNQN", NQNh, length) with the
    /// transform hash, or the key itself when there is no transform.
    /// </summary>
    public byte[] RetainedFor(string hostNqn, bool legacyEncoding = false)
    {
        if (TransformHash is not { } hash)
        {
            return _key.ToArray();
        }

        return ExpandLabel(hash, _key, "HostNQN", Encoding.UTF8.GetBytes(hostNqn), _key.Length, legacyEncoding);
    }

    /// <summary>
    /// The PSK identity a host presents for this key (3.6.1.4): version 0 <c>NVMe0R0h hostnqn subnqn</c>, or version 1
    /// <c>NVMe1R0h hostnqn subnqn digest</c> (TP 8018) where the digest binds the identity to the retained PSK.
    /// </summary>
    public TlsPskIdentity IdentityFor(string hostNqn, string subsystemNqn, int version = 0, bool legacyEncoding = false)
    {
        var digest = version == 1 ? Digest(CipherHash, RetainedFor(hostNqn, legacyEncoding), hostNqn, subsystemNqn) : null;
        return new TlsPskIdentity(version, CipherHash, hostNqn, subsystemNqn, digest);
    }

    /// <summary>
    /// The TLS PSK of a connection whose host presented <paramref name="identity"/>, or null when the identity does not
    /// belong to this key (another hash, or a version 1 digest this key does not produce).
    /// </summary>
    public byte[]? TlsKeyFor(TlsPskIdentity identity)
    {
        if (identity.Hash != CipherHash || identity.Version is not (0 or 1))
        {
            return null;
        }

        if (identity.Version == 0)
        {
            var retained = RetainedFor(identity.HostNqn, legacyEncoding: true);
            try
            {
                return ExpandLabel(identity.Hash, retained, "nvme-tls-psk", Encoding.UTF8.GetBytes(identity.ToString()), Length(identity.Hash), legacyEncoding: true);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(retained);
            }
        }

        foreach (var legacy in (ReadOnlySpan<bool>)[false, true])
        {
            var retained = RetainedFor(identity.HostNqn, legacy);
            try
            {
                var digest = Digest(identity.Hash, retained, identity.HostNqn, identity.SubsystemNqn);
                if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(digest), Encoding.ASCII.GetBytes(identity.Digest ?? "")))
                {
                    var context = Encoding.ASCII.GetBytes($"{(byte)identity.Hash:d2} {digest}");
                    return ExpandLabel(identity.Hash, retained, "nvme-tls-psk", context, Length(identity.Hash), legacy);
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(retained);
            }
        }

        return null;
    }

    public static int Length(TlsPskHash hash) => hash == TlsPskHash.Sha384 ? 48 : 32;

    public bool Equals(TlsPsk? other) =>
        other is not null && TransformHash == other.TransformHash && CryptographicOperations.FixedTimeEquals(_key, other._key);

    public override bool Equals(object? obj) => Equals(obj as TlsPsk);

    public override int GetHashCode() => HashCode.Combine(TransformHash, _key.Length);

    public override string ToString() => $"NVMe/TCP TLS PSK ({_key.Length}-byte key, hash {(byte)(TransformHash ?? 0):x2})";

    private static HashAlgorithmName Algorithm(TlsPskHash hash) => hash == TlsPskHash.Sha384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256;

    /// <summary>
    /// HKDF-Expand-Label(HKDF-Extract(0, secret), label, context, length) of RFC 8446, 7.1, or in the older libnvme
    /// encoding of its info (little-endian length, no length prefixes).
    /// </summary>
    private static byte[] ExpandLabel(TlsPskHash hash, ReadOnlySpan<byte> secret, string label, ReadOnlySpan<byte> context, int length, bool legacyEncoding)
    {
        var algorithm = Algorithm(hash);
        var prk = new byte[Length(hash)];
        HKDF.Extract(algorithm, secret, ReadOnlySpan<byte>.Empty, prk);
        var fullLabel = Encoding.ASCII.GetBytes("tls13 " + label);
        byte[] info;
        if (legacyEncoding)
        {
            info = new byte[2 + fullLabel.Length + context.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(info, (ushort)length);
            fullLabel.CopyTo(info, 2);
            context.CopyTo(info.AsSpan(2 + fullLabel.Length));
        }
        else
        {
            info = new byte[2 + 1 + fullLabel.Length + 1 + context.Length];
            BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)length);
            info[2] = (byte)fullLabel.Length;
            fullLabel.CopyTo(info, 3);
            info[3 + fullLabel.Length] = (byte)context.Length;
            context.CopyTo(info.AsSpan(4 + fullLabel.Length));
        }

        var output = new byte[length];
        HKDF.Expand(algorithm, prk, output, info);
        CryptographicOperations.ZeroMemory(prk);
        return output;
    }

    /// <summary>The PSK digest of a version 1 identity: base64(HMAC(retained, NQNh ‖ " " ‖ NQNs ‖ " " ‖ "NVMe-over-Fabrics")).</summary>
    private static string Digest(TlsPskHash hash, byte[] retained, string hostNqn, string subsystemNqn)
    {
        var data = Encoding.UTF8.GetBytes($"{hostNqn} {subsystemNqn} NVMe-over-Fabrics");
        var mac = hash == TlsPskHash.Sha384 ? HMACSHA384.HashData(retained, data) : HMACSHA256.HashData(retained, data);
        return Convert.ToBase64String(mac);
    }
}
