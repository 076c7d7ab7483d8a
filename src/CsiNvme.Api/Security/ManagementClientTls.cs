using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;

namespace CsiNvme.Api.Security;

/// <summary>
/// TLS settings of a management API client (CLI, CSI controller, a storage node calling another): the CA that signed
/// the servers and, for mutual TLS, the client's own certificate. The server's certificate must chain to that CA and
/// carry the role <c>node</c>; its host name is not compared, because nodes dial each other at addresses they learn at
/// run time (pod IPs), and the CA is private to the deployment, so what proves a server is the CA and the role.
/// </summary>
public sealed class ManagementClientTls
{
    public ManagementClientTls(string caFile, string? certificateFile, string? keyFile)
    {
        if ((certificateFile is null) != (keyFile is null))
        {
            throw new ArgumentException("a client certificate needs both its certificate and its private key file");
        }

        Ca = new PemCaBundle(caFile);
        Client = certificateFile is null ? null : new PemCertificateSource(certificateFile, keyFile!);
    }

    public PemCaBundle Ca { get; }

    /// <summary>The client certificate presented to the server; null: none (the server then answers UNAUTHENTICATED).</summary>
    public PemCertificateSource? Client { get; }

    /// <summary>"ADDR:PORT", "HOST:PORT" or a full URI, as the http or https URI of the management API.</summary>
    public static Uri AddressUri(string address, bool tls)
    {
        var schemeEnd = address.IndexOf("://", StringComparison.Ordinal);
        var authority = schemeEnd < 0 ? address : address[(schemeEnd + 3)..];
        return new Uri((tls ? "https://" : "http://") + authority.TrimEnd('/'));
    }

    /// <summary>A channel to the management API at <paramref name="address"/>, over mutual TLS when <paramref name="tls"/> is given.</summary>
    public static GrpcChannel CreateChannel(string address, ManagementClientTls? tls, TimeSpan? connectTimeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            // gRPC keeps one connection alive for long: let it live as long as the process does.
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            EnableMultipleHttp2Connections = true,
        };
        if (connectTimeout is { } timeout)
        {
            handler.ConnectTimeout = timeout;
        }

        tls?.Configure(handler.SslOptions);
        return GrpcChannel.ForAddress(AddressUri(address, tls is not null), new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    public void Configure(SslClientAuthenticationOptions ssl)
    {
        ssl.RemoteCertificateValidationCallback = (_, certificate, chain, _) => IsTrustedServer(certificate, chain);
        if (Client is not null)
        {
            ssl.LocalCertificateSelectionCallback = (_, _, _, _, _) => Client.Current;
        }
    }

    /// <summary>Why a server certificate is refused, or null when it is trusted.</summary>
    public string? RefusalOf(X509Certificate2 certificate, X509Certificate2Collection? intermediates = null)
    {
        if (!Ca.Validates(certificate, PemCaBundle.ServerAuthentication, intermediates))
        {
            return $"its certificate ({certificate.Subject}) is not signed by the CA in {Ca.File}";
        }

        return ManagementRoles.TryGetRole(certificate, out var role) && role == ManagementRole.Node
            ? null
            : $"its certificate ({certificate.Subject}) does not carry the role {ManagementRoles.Node} (CN=node or CN=node:NAME)";
    }

    private bool IsTrustedServer(X509Certificate? certificate, X509Chain? chain)
    {
        if (certificate is null)
        {
            return false;
        }

        var intermediates = new X509Certificate2Collection();
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements.Skip(1))
            {
                intermediates.Add(element.Certificate);
            }
        }

        var server = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return RefusalOf(server, intermediates) is null;
    }
}
