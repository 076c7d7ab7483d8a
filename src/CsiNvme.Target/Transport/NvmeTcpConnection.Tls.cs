using System.Net;
using CsiNvme.Protocol.Tls;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target.Transport;

/// <summary>
/// The NVMe/TCP secure channel (NVMe/TCP transport 1.0, 3.6.1): a host that opens with a TLS record (first byte 0x16,
/// where an ICReq starts with PDU type 0) gets a TLS 1.3 handshake with the PSK its identity names before the ICReq;
/// every later byte of the connection goes through the channel. One port serves both: whether a subsystem takes only
/// TLS connections is decided at Connect, against the identity the channel was opened with.
/// </summary>
internal sealed partial class NvmeTcpConnection
{
    private async Task<bool> StartTlsAsync(CancellationToken cancellationToken)
    {
        if (!TryCreateTls())
        {
            return false;
        }

        try
        {
            await _tls!.HandshakeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (TlsException ex)
        {
            LogTlsRefused(_logger, RemoteEndPoint, ex.Message);
            return false;
        }

        LogTlsEstablished(_logger, RemoteEndPoint, _tls.PeerIdentity?.HostNqn ?? "", _tls.PeerIdentity?.SubsystemNqn ?? "", _tls.CipherSuite ?? "");
        return true;
    }

    private bool StartTlsBlocking()
    {
        if (!TryCreateTls())
        {
            return false;
        }

        try
        {
            _tls!.Handshake();
        }
        catch (TlsException ex)
        {
            LogTlsRefused(_logger, RemoteEndPoint, ex.Message);
            return false;
        }

        LogTlsEstablished(_logger, RemoteEndPoint, _tls.PeerIdentity?.HostNqn ?? "", _tls.PeerIdentity?.SubsystemNqn ?? "", _tls.CipherSuite ?? "");
        return true;
    }

    /// <summary>Hands the bytes read so far (the start of the ClientHello) to a new server channel.</summary>
    private bool TryCreateTls()
    {
        try
        {
            _tls = TlsChannel.ForServer(_socket, _target.TlsKeyFor);
            _tls.Feed(_receiveBuffer.AsSpan(0, _receiveEnd));
            _receiveEnd = 0;
            return true;
        }
        catch (TlsException ex)
        {
            LogTlsRefused(_logger, RemoteEndPoint, ex.Message);
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "NVMe/TCP TLS handshake with {Remote} refused: {Reason}")]
    private static partial void LogTlsRefused(ILogger logger, IPEndPoint? remote, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "NVMe/TCP TLS 1.3 secure channel with {Remote} for host {HostNqn} on {SubsystemNqn} ({CipherSuite})")]
    private static partial void LogTlsEstablished(ILogger logger, IPEndPoint? remote, string hostNqn, string subsystemNqn, string cipherSuite);
}
