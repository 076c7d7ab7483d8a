using CsiNvme.Api.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace CsiNvme.Csi.Controller;

/// <summary>gRPC clients of the storage server's management API (proto/csinvme/v1/management.proto).</summary>
public sealed class StorageServerClient : IDisposable
{
    private readonly GrpcChannel _channel;
    private readonly TimeSpan _callTimeout;

    /// <param name="address">"ADDR:PORT", "HOST:PORT" or a full "http://..." URI of the management API.</param>
    public StorageServerClient(string address, TimeSpan callTimeout)
    {
        Address = address;
        _callTimeout = callTimeout;
        var uri = address.Contains("://", StringComparison.Ordinal) ? address : $"http://{address}";
        _channel = GrpcChannel.ForAddress(uri);
        Volumes = new VolumeService.VolumeServiceClient(_channel);
        Server = new ServerService.ServerServiceClient(_channel);
        Nodes = new NodeService.NodeServiceClient(_channel);
    }

    public string Address { get; }

    /// <summary>"HOST:PORT" (or a full http:// URI) with a port: what <see cref="StorageServerClient"/> can dial.</summary>
    public static bool IsValidAddress(string address) =>
        Uri.TryCreate(address.Contains("://", StringComparison.Ordinal) ? address : $"http://{address}", UriKind.Absolute, out var uri) &&
        uri.Scheme is "http" or "https" && uri.Host.Length > 0 && !uri.IsDefaultPort && uri.AbsolutePath == "/";

    public VolumeService.VolumeServiceClient Volumes { get; }

    public ServerService.ServerServiceClient Server { get; }

    /// <summary>The storage nodes: the cluster's, or the single server as one node.</summary>
    public NodeService.NodeServiceClient Nodes { get; }

    /// <summary>Options for one management call: the configured deadline, cancelled with the CSI call.</summary>
    public CallOptions Call(CancellationToken cancellationToken, TimeSpan? timeout = null) =>
        new(deadline: DateTime.UtcNow + (timeout ?? _callTimeout), cancellationToken: cancellationToken);

    public void Dispose() => _channel.Dispose();
}
