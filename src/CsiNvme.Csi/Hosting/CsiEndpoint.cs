using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;

namespace CsiNvme.Csi.Hosting;

/// <summary>
/// A CSI endpoint: "unix:///abs/path.sock" (the CSI spec's transport; Kubernetes sidecars dial it) or
/// "tcp://ADDR:PORT" for a CO outside the machine, such as a test driving a node service inside a guest.
/// </summary>
public sealed record CsiEndpoint(string? UnixSocketPath, IPEndPoint? TcpEndPoint)
{
    public bool IsUnix => UnixSocketPath is not null;

    public override string ToString() => IsUnix ? $"unix://{UnixSocketPath}" : $"tcp://{TcpEndPoint}";

    public static bool TryParse(string? text, out CsiEndpoint? endpoint, out string? error)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "endpoint is empty";
            return false;
        }

        if (text.StartsWith("unix://", StringComparison.Ordinal))
        {
            // unix:///csi/csi.sock has an empty authority; unix://csi.sock (relative) is not allowed by the CSI spec.
            var path = text["unix://".Length..];
            if (!path.StartsWith('/'))
            {
                error = $"'{text}': a unix endpoint needs an absolute path, e.g. unix:///csi/csi.sock";
                return false;
            }

            endpoint = new CsiEndpoint(path, null);
            error = null;
            return true;
        }

        if (text.StartsWith("tcp://", StringComparison.Ordinal))
        {
            var rest = text["tcp://".Length..];
            var colon = rest.LastIndexOf(':');
            if (colon <= 0)
            {
                error = $"'{text}' is not tcp://ADDR:PORT";
                return false;
            }

            var host = rest[..colon].Trim('[', ']');
            if (!IPAddress.TryParse(host, out var address) ||
                !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) ||
                port > IPEndPoint.MaxPort)
            {
                error = $"'{text}' is not tcp://ADDR:PORT with an IP address and a port 0..65535";
                return false;
            }

            endpoint = new CsiEndpoint(null, new IPEndPoint(address, port));
            error = null;
            return true;
        }

        error = $"'{text}' must start with unix:// or tcp://";
        return false;
    }

    public static CsiEndpoint Parse(string text) =>
        TryParse(text, out var endpoint, out var error) ? endpoint! : throw new FormatException(error);

    /// <summary>A gRPC channel to this endpoint (HTTP/2 cleartext), over the Unix socket when it is one.</summary>
    public GrpcChannel CreateChannel()
    {
        if (!IsUnix)
        {
            return GrpcChannel.ForAddress($"http://{TcpEndPoint}");
        }

        var socketPath = UnixSocketPath!;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };

        // The authority is never resolved: every connection goes through ConnectCallback.
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler });
    }
}
