using System.Security.Cryptography;
using System.Text;
using CsiNvme.Protocol.Keys;

namespace CsiNvme.Protocol.Authentication;

/// <summary>
/// A DH-HMAC-CHAP secret in its interchange form (NVMe base 2.0, 8.13.5.8, the representation nvme-cli prints and the
/// Linux host takes): <c>DHHC-1:hh:base64(key ‖ CRC-32(key) little-endian):</c>, where <c>hh</c> names the hash that
/// transforms the key with an NQN before use (00 none, 01 SHA-256, 02 SHA-384, 03 SHA-512) and the key is 32, 48 or
/// 64 bytes. The key never appears in <see cref="ToString"/>, so logging the object cannot leak it.
/// </summary>
public sealed class DhchapSecret : IEquatable<DhchapSecret>
{
    private static readonly KeyInterchangeFormat.Kind s_form = new("DHHC-1:", "DH-HMAC-CHAP secret", "nvme gen-dhchap-key", "transformation field", 3, "a DH-HMAC-CHAP secret");
    private readonly byte[] _key;

    private DhchapSecret(byte[] key, DhchapHash? transform)
    {
        _key = key;
        TransformHash = transform;
    }

    /// <summary>The hash of the key transformation, or null for a key used as it is (hh = 00).</summary>
    public DhchapHash? TransformHash { get; }

    public int KeyLength => _key.Length;

    public ReadOnlySpan<byte> Key => _key;

    /// <summary>A new random secret: <paramref name="transform"/> also sets the key length to its digest length.</summary>
    public static DhchapSecret Generate(DhchapHash? transform = null, int keyLength = 32)
    {
        var length = transform is { } hash ? DhchapHashes.Length(hash) : keyLength;
        return new DhchapSecret(RandomNumberGenerator.GetBytes(ValidLength(length) ? length : throw new ArgumentOutOfRangeException(nameof(keyLength))), transform);
    }

    public static DhchapSecret FromKey(ReadOnlySpan<byte> key, DhchapHash? transform)
    {
        if (!TryCreate(key.ToArray(), transform, out var secret, out var error))
        {
            throw new ArgumentException(error, nameof(key));
        }

        return secret;
    }

    public static DhchapSecret Parse(string text) =>
        TryParse(text, out var secret, out var error) ? secret : throw new FormatException(error);

    /// <summary>Reads the DHHC-1 form; <paramref name="error"/> says what is wrong without quoting the secret.</summary>
    public static bool TryParse(string? text, out DhchapSecret secret, out string error)
    {
        secret = null!;
        if (!KeyInterchangeFormat.TryDecode(text, s_form, out var hashId, out var key, out error))
        {
            return false;
        }

        return TryCreate(key, hashId == 0 ? null : (DhchapHash)hashId, out secret, out error);
    }

    /// <summary>The DHHC-1 form. Handle with care: this is the secret itself.</summary>
    public string Format() => KeyInterchangeFormat.Encode(s_form, (byte)(TransformHash ?? 0), _key);

    /// <summary>
    /// The key the responses are computed with for one NQN (the host's for a host secret, the subsystem's for a controller
    /// secret): HMAC(key, NQN ‖ "NVMe-over-Fabrics") with the transformation hash, or the key itself (NVMe base 2.0,
    /// 8.13.5.8).
    /// </summary>
    public byte[] TransformFor(string nqn)
    {
        if (TransformHash is not { } hash)
        {
            return _key.ToArray();
        }

        using var hmac = DhchapHashes.CreateHmac(hash, _key);
        hmac.AppendData(Encoding.UTF8.GetBytes(nqn));
        hmac.AppendData("NVMe-over-Fabrics"u8);
        return hmac.GetHashAndReset();
    }

    public bool Equals(DhchapSecret? other) =>
        other is not null && TransformHash == other.TransformHash && CryptographicOperations.FixedTimeEquals(_key, other._key);

    public override bool Equals(object? obj) => Equals(obj as DhchapSecret);

    public override int GetHashCode() => HashCode.Combine(TransformHash, _key.Length);

    public override string ToString() => $"DH-HMAC-CHAP secret ({_key.Length}-byte key, transform {(TransformHash is { } h ? DhchapHashes.Name(h) : "none")})";

    private static bool TryCreate(byte[] key, DhchapHash? transform, out DhchapSecret secret, out string error)
    {
        secret = null!;
        if (!ValidLength(key.Length))
        {
            error = $"a DH-HMAC-CHAP key is 32, 48 or 64 bytes, not {key.Length}";
            return false;
        }

        // The Linux host and nvmet key the HMAC with the transformed key cut to the secret's key length, which is only
        // the whole transformed key when the two lengths agree; nvme-cli enforces the same rule.
        if (transform is { } hash && DhchapHashes.Length(hash) != key.Length)
        {
            error = $"a DH-HMAC-CHAP key transformed with {DhchapHashes.Name(hash)} is {DhchapHashes.Length(hash)} bytes, not {key.Length}";
            return false;
        }

        secret = new DhchapSecret(key, transform);
        error = "";
        return true;
    }

    private static bool ValidLength(int length) => length is 32 or 48 or 64;
}
