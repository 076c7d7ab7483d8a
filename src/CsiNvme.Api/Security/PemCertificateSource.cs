using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CsiNvme.Api.Security;

/// <summary>
/// A certificate and its private key read from PEM files, read again when the files change so a renewed certificate
/// (cert-manager, a rotated Kubernetes Secret) takes effect without a restart. The files are compared at most once per
/// <see cref="CheckInterval"/>; a pair that does not load (half written) keeps the previous certificate.
/// </summary>
public sealed class PemCertificateSource
{
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(30);

    private readonly Lock _lock = new();
    private byte[] _certificateBytes;
    private byte[] _keyBytes;
    private X509Certificate2 _current;
    private long _checkedAt;

    /// <summary>Loads the pair now: a missing or bad file is an error at start, not at the first call.</summary>
    public PemCertificateSource(string certificateFile, string keyFile)
    {
        CertificateFile = certificateFile;
        KeyFile = keyFile;
        _certificateBytes = ReadOrThrow(certificateFile, "certificate");
        _keyBytes = ReadOrThrow(keyFile, "private key");
        _current = Load(_certificateBytes, _keyBytes, certificateFile, keyFile);
        _checkedAt = Environment.TickCount64;
    }

    public string CertificateFile { get; }

    public string KeyFile { get; }

    /// <summary>The certificate with its key; reloaded when the files changed since the last check.</summary>
    public X509Certificate2 Current
    {
        get
        {
            if (Environment.TickCount64 - Volatile.Read(ref _checkedAt) < (long)CheckInterval.TotalMilliseconds)
            {
                return Volatile.Read(ref _current);
            }

            lock (_lock)
            {
                if (Environment.TickCount64 - _checkedAt >= (long)CheckInterval.TotalMilliseconds)
                {
                    Reload();
                    _checkedAt = Environment.TickCount64;
                }

                return _current;
            }
        }
    }

    private void Reload()
    {
        try
        {
            var certificate = File.ReadAllBytes(CertificateFile);
            var key = File.ReadAllBytes(KeyFile);
            if (certificate.AsSpan().SequenceEqual(_certificateBytes) && key.AsSpan().SequenceEqual(_keyBytes))
            {
                return;
            }

            // The previous certificate is not disposed: a handshake in progress may still use it.
            _current = Load(certificate, key, CertificateFile, KeyFile);
            (_certificateBytes, _keyBytes) = (certificate, key);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            // Mid-rotation (one file renewed, not yet the other): the next check tries again.
        }
    }

    private static X509Certificate2 Load(byte[] certificate, byte[] key, string certificateFile, string keyFile)
    {
        try
        {
            return X509Certificate2.CreateFromPem(System.Text.Encoding.ASCII.GetString(certificate), System.Text.Encoding.ASCII.GetString(key));
        }
        catch (CryptographicException e)
        {
            throw new CryptographicException($"{certificateFile} and {keyFile} are not a PEM certificate and its private key: {e.Message}", e);
        }
    }

    private static byte[] ReadOrThrow(string path, string what)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read the TLS {what} {path}: {e.Message}", e);
        }
    }
}

/// <summary>CA certificates from a PEM bundle, read again like <see cref="PemCertificateSource"/> so a rotated CA takes effect.</summary>
public sealed class PemCaBundle
{
    private readonly Lock _lock = new();
    private byte[] _bytes;
    private X509Certificate2Collection _current;
    private long _checkedAt;

    public PemCaBundle(string file)
    {
        File = file;
        try
        {
            _bytes = System.IO.File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read the TLS CA bundle {file}: {e.Message}", e);
        }

        _current = Parse(_bytes, file);
        _checkedAt = Environment.TickCount64;
    }

    public string File { get; }

    public X509Certificate2Collection Current
    {
        get
        {
            lock (_lock)
            {
                if (Environment.TickCount64 - _checkedAt >= (long)PemCertificateSource.CheckInterval.TotalMilliseconds)
                {
                    _checkedAt = Environment.TickCount64;
                    try
                    {
                        var bytes = System.IO.File.ReadAllBytes(File);
                        if (!bytes.AsSpan().SequenceEqual(_bytes))
                        {
                            _current = Parse(bytes, File);
                            _bytes = bytes;
                        }
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
                    {
                        // Keep the bundle that loaded; the next check tries again.
                    }
                }

                return _current;
            }
        }
    }

    /// <summary>
    /// Whether <paramref name="certificate"/> chains to a certificate of this bundle (and only to it: the system's
    /// roots are not trusted) and may be used for <paramref name="purpose"/> (its extended key usage, when it has one).
    /// </summary>
    public bool Validates(X509Certificate2 certificate, Oid purpose, X509Certificate2Collection? intermediates = null)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Current);
        // A private CA publishes no revocation lists; rotation and short lifetimes stand in for revocation.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(purpose);
        if (intermediates is not null)
        {
            chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        }

        return chain.Build(certificate);
    }

    public static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    public static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private static X509Certificate2Collection Parse(byte[] bytes, string file)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(System.Text.Encoding.ASCII.GetString(bytes));
        }
        catch (CryptographicException e)
        {
            throw new CryptographicException($"{file} is not a PEM CA bundle: {e.Message}", e);
        }

        if (collection.Count == 0)
        {
            throw new CryptographicException($"{file} holds no PEM certificate");
        }

        return collection;
    }
}
