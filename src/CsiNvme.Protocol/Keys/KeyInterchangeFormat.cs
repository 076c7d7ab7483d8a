using System.Buffers.Binary;
using System.IO.Hashing;
using System.Security.Cryptography;

namespace CsiNvme.Protocol.Keys;

/// <summary>
/// The printable form nvme-cli gives keys in, shared by DH-HMAC-CHAP secrets (<c>DHHC-1:hh:...:</c>, NVMe base 2.0,
/// 8.13.5.8) and NVMe/TCP TLS PSKs (<c>NVMeTLSkey-1:hh:...:</c>, NVMe/TCP transport 1.0, 3.6.1.5): a prefix, a two-digit
/// hex hash identifier, then base64 of the key followed by its CRC-32 (little-endian), and a final colon. Errors never
/// quote the key.
/// </summary>
public static class KeyInterchangeFormat
{
    /// <summary>What a key of one kind is called in messages and which hash identifiers it takes.</summary>
    /// <param name="Prefix">"DHHC-1:" or "NVMeTLSkey-1:".</param>
    /// <param name="What">"DH-HMAC-CHAP secret" or "TLS PSK".</param>
    /// <param name="Tool">The nvme-cli command that prints one, for the message on a wrong prefix.</param>
    /// <param name="HashField">What the hh field is called: "transformation field" or "hash field".</param>
    /// <param name="MaxHashId">The largest hh accepted.</param>
    /// <param name="Indefinite">The kind with its article, to start a sentence: "an NVMe/TCP TLS PSK".</param>
    public sealed record Kind(string Prefix, string What, string Tool, string HashField, byte MaxHashId, string Indefinite);

    /// <summary>Reads the form; the key and its hash identifier, or why not.</summary>
    public static bool TryDecode(string? text, Kind kind, out byte hashId, out byte[] key, out string error)
    {
        hashId = 0;
        key = [];
        text = text?.Trim();
        if (string.IsNullOrEmpty(text) || !text.StartsWith(kind.Prefix, StringComparison.Ordinal))
        {
            error = $"{kind.Indefinite} starts with {kind.Prefix} (as {kind.Tool} prints it)";
            return false;
        }

        var rest = text.AsSpan(kind.Prefix.Length);
        if (rest.Length < 3 || rest[2] != ':' || !byte.TryParse(rest[..2], System.Globalization.NumberStyles.HexNumber, null, out hashId) || hashId > kind.MaxHashId)
        {
            var allowed = string.Join(", ", Enumerable.Range(0, kind.MaxHashId).Select(i => i.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
            error = $"the {kind.What}'s {kind.HashField} is not {allowed} or {kind.MaxHashId:x2}";
            return false;
        }

        var encoded = rest[3..];
        if (encoded.EndsWith(":"))
        {
            encoded = encoded[..^1];
        }

        var decoded = new byte[encoded.Length];
        if (!Convert.TryFromBase64Chars(encoded, decoded, out var length) || length < 4)
        {
            error = $"the {kind.What}'s key is not valid base64";
            return false;
        }

        key = decoded[..(length - 4)];
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(decoded.AsSpan(length - 4));
        CryptographicOperations.ZeroMemory(decoded);
        if (stored != Crc32.HashToUInt32(key))
        {
            CryptographicOperations.ZeroMemory(key);
            key = [];
            error = $"the {kind.What}'s checksum does not match its key (mistyped or truncated)";
            return false;
        }

        error = "";
        return true;
    }

    /// <summary>The printable form of <paramref name="key"/>. Handle with care: this is the key itself.</summary>
    public static string Encode(Kind kind, byte hashId, ReadOnlySpan<byte> key)
    {
        var buffer = new byte[key.Length + 4];
        key.CopyTo(buffer);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(key.Length), Crc32.HashToUInt32(key));
        var text = $"{kind.Prefix}{hashId:x2}:{Convert.ToBase64String(buffer)}:";
        CryptographicOperations.ZeroMemory(buffer);
        return text;
    }
}
