using System.Security.Cryptography;
using System.Text;

namespace CsiNvme.Metadata;

/// <summary>
/// Encrypts secrets before they reach the metadata store (at rest in metadata.db or etcd) and decrypts them where they
/// are used. DH-HMAC-CHAP needs the secret itself on the storage node, so it cannot be stored hashed; it is sealed with
/// AES-256-GCM under the node key, with the volume id, host NQN and purpose as associated data, so a sealed value
/// copied to another volume or host does not open. The sealed form names the key (the first bytes of its SHA-256), so a
/// node with another key says so instead of failing obscurely. Every node of a cluster needs the same key.
/// </summary>
public sealed class SecretSealer
{
    private const string Prefix = "sealed:v1:";
    private const int KeyLength = 32;
    private const int NonceLength = 12;
    private const int TagLength = 16;
    private readonly byte[] _key;

    public SecretSealer(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeyLength)
        {
            throw new ArgumentException($"the secret key is {KeyLength} bytes, not {key.Length}", nameof(key));
        }

        _key = key.ToArray();
        KeyId = Convert.ToHexStringLower(SHA256.HashData(_key).AsSpan(0, 4));
    }

    /// <summary>Names the key without revealing it: the first 4 bytes of its SHA-256, in hex.</summary>
    public string KeyId { get; }

    /// <summary>Where the key came from, for messages.</summary>
    public string Source { get; init; } = "";

    /// <summary>
    /// Reads the key file (32 bytes, raw or base64), or with <paramref name="createIfMissing"/> makes one readable by the
    /// owner only. A missing file otherwise, or one of the wrong size, is an <see cref="InvalidOperationException"/>.
    /// </summary>
    public static SecretSealer FromFile(string path, bool createIfMissing)
    {
        var fullPath = Path.GetFullPath(path);
        if (!File.Exists(fullPath))
        {
            if (!createIfMissing)
            {
                throw new InvalidOperationException($"secret key file {fullPath} does not exist");
            }

            Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
            var fresh = RandomNumberGenerator.GetBytes(KeyLength);
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var file = new FileStream(fullPath, options))
            {
                file.Write(Encoding.ASCII.GetBytes(Convert.ToBase64String(fresh) + "\n"));
                file.Flush(flushToDisk: true);
            }

            return new SecretSealer(fresh) { Source = fullPath };
        }

        var content = File.ReadAllBytes(fullPath);
        if (content.Length == KeyLength)
        {
            return new SecretSealer(content) { Source = fullPath };
        }

        var text = Encoding.ASCII.GetString(content).Trim();
        var decoded = new byte[text.Length];
        if (!Convert.TryFromBase64String(text, decoded, out var length) || length != KeyLength)
        {
            throw new InvalidOperationException($"secret key file {fullPath} holds neither {KeyLength} bytes nor their base64 (make one with: head -c {KeyLength} /dev/urandom | base64)");
        }

        return new SecretSealer(decoded.AsSpan(0, length)) { Source = fullPath };
    }

    /// <summary>The sealed form of <paramref name="secret"/> for one volume, host and purpose.</summary>
    public string Seal(string secret, Guid volumeId, string hostNqn, string purpose)
    {
        var plain = Encoding.UTF8.GetBytes(secret);
        var sealedBytes = new byte[NonceLength + TagLength + plain.Length];
        var nonce = sealedBytes.AsSpan(0, NonceLength);
        RandomNumberGenerator.Fill(nonce);
        using (var aes = new AesGcm(_key, TagLength))
        {
            aes.Encrypt(nonce, plain, sealedBytes.AsSpan(NonceLength + TagLength), sealedBytes.AsSpan(NonceLength, TagLength), Context(volumeId, hostNqn, purpose));
        }

        CryptographicOperations.ZeroMemory(plain);
        return $"{Prefix}{KeyId}:{Convert.ToBase64String(sealedBytes)}";
    }

    /// <summary>
    /// Opens a sealed value; false with the reason (sealed under another key, altered, or moved from another volume or
    /// host) when it cannot. The reason never holds the secret.
    /// </summary>
    public bool TryUnseal(string sealedText, Guid volumeId, string hostNqn, string purpose, out string secret, out string problem)
    {
        secret = "";
        if (!sealedText.StartsWith(Prefix, StringComparison.Ordinal) || sealedText.IndexOf(':', Prefix.Length) is var colon && colon < 0)
        {
            problem = "the stored secret is not in a sealed form this version reads";
            return false;
        }

        var keyId = sealedText[Prefix.Length..colon];
        if (keyId != KeyId)
        {
            problem = $"the secret was sealed with key {keyId}, and this node's key is {KeyId} (give every node the same --secret-key-file)";
            return false;
        }

        var sealedBytes = new byte[sealedText.Length];
        if (!Convert.TryFromBase64Chars(sealedText.AsSpan(colon + 1), sealedBytes, out var length) || length < NonceLength + TagLength)
        {
            problem = "the stored secret is damaged";
            return false;
        }

        var plain = new byte[length - NonceLength - TagLength];
        try
        {
            using var aes = new AesGcm(_key, TagLength);
            aes.Decrypt(sealedBytes.AsSpan(0, NonceLength), sealedBytes.AsSpan(NonceLength + TagLength, plain.Length),
                sealedBytes.AsSpan(NonceLength, TagLength), plain, Context(volumeId, hostNqn, purpose));
        }
        catch (AuthenticationTagMismatchException)
        {
            problem = "the stored secret does not open with this node's key for this volume and host (altered or copied)";
            return false;
        }

        secret = Encoding.UTF8.GetString(plain);
        CryptographicOperations.ZeroMemory(plain);
        problem = "";
        return true;
    }

    private static byte[] Context(Guid volumeId, string hostNqn, string purpose) =>
        Encoding.UTF8.GetBytes($"csinvme/dhchap/{volumeId:D}/{hostNqn}/{purpose}");
}
