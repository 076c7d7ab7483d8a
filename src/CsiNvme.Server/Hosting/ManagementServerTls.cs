using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using CsiNvme.Api.Security;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server.Hosting;

/// <summary>When the management API may go without TLS: on loopback only, unless the operator says --insecure.</summary>
public static class ManagementTlsPolicy
{
    public static void Check(StorageServerOptions options)
    {
        if (options.ManagementTls is null && !options.Insecure && !IPAddress.IsLoopback(options.ManagementListen.Address))
        {
            throw new ArgumentException(
                $"--mgmt-listen {options.ManagementListen} is not a loopback address, and the management API may not be served there without TLS: " +
                "anyone who reaches the port could create, delete or open volumes to any host. Give --tls-cert, --tls-key and --tls-client-ca " +
                "(mutual TLS, see docs/security.md), or --insecure to accept that risk (for example behind a NetworkPolicy of your own).",
                nameof(options));
        }
    }
}

/// <summary>
/// The server side of the management API's mutual TLS: the server certificate (reloaded when its files change), a
/// client certificate asked for on every connection and accepted only when it chains to the client CA. A connection
/// without a certificate is let through the handshake so its calls can be answered UNAUTHENTICATED with a reason
/// (<see cref="Management.RoleAuthorizationInterceptor"/>) rather than a bare handshake failure. In a cluster the same
/// certificate is the node's client certificate towards the other nodes, whose servers must chain to the same CA.
/// </summary>
internal sealed class ManagementServerTls
{
    private readonly ManagementClientTls? _nodeClient;
    private ILogger? _logger;

    public ManagementServerTls(ManagementTlsFiles files, bool clusterNode)
    {
        Certificate = new PemCertificateSource(files.CertificateFile, files.KeyFile);
        ClientCa = new PemCaBundle(files.ClientCaFile);
        if (clusterNode)
        {
            if (!ManagementRoles.TryGetRole(Certificate.Current, out var role) || role != ManagementRole.Node)
            {
                throw new ArgumentException(
                    $"--tls-cert {files.CertificateFile} ({Certificate.Current.Subject}) must carry the role node (CN=node or CN=node:NAME): " +
                    "a cluster node presents it to the other nodes, which accept their agent calls from role node only");
            }

            _nodeClient = new ManagementClientTls(files.ClientCaFile, files.CertificateFile, files.KeyFile);
        }
    }

    public PemCertificateSource Certificate { get; }

    public PemCaBundle ClientCa { get; }

    /// <summary>Channels to the other nodes' management listeners over mutual TLS; null when not a cluster node.</summary>
    public Func<string, GrpcChannel>? NodeChannelFactory =>
        _nodeClient is null ? null : address => ManagementClientTls.CreateChannel(address, _nodeClient);

    public void UseLogger(ILogger logger) => _logger = logger;

    public void Apply(ListenOptions listen) => listen.UseHttps(new HttpsConnectionAdapterOptions
    {
        ServerCertificateSelector = (_, _) => Certificate.Current,
        SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        ClientCertificateMode = ClientCertificateMode.AllowCertificate,
        ClientCertificateValidation = (certificate, chain, _) =>
        {
            var intermediates = new X509Certificate2Collection();
            if (chain is not null)
            {
                foreach (var element in chain.ChainElements.Skip(1))
                {
                    intermediates.Add(element.Certificate);
                }
            }

            if (ClientCa.Validates(certificate, PemCaBundle.ClientAuthentication, intermediates))
            {
                return true;
            }

            if (_logger is not null)
            {
                ServerLog.ClientCertificateRejected(_logger, certificate.Subject);
            }

            return false;
        },
    });
}
