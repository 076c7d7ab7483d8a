using System.Collections.Concurrent;
using CsiNvme.Api.V1.Agent;
using CsiNvme.Metadata;
using CsiNvme.Replication;
using Grpc.Core;
using Grpc.Net.Client;

namespace CsiNvme.Cluster;

/// <summary>
/// Calls to other storage nodes' agent service, one HTTP/2 channel per node management address, every call with a
/// deadline. A node that is not live in the cluster view is refused at once (UNAVAILABLE), not waited for.
/// </summary>
public sealed class NodeAgentClients(TimeSpan callTimeout, Func<string, GrpcChannel>? channelFactory = null) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly Func<string, GrpcChannel> _channelFactory = channelFactory ?? (address => GrpcChannel.ForAddress("http://" + address));

    public NodeAgentService.NodeAgentServiceClient For(ClusterNode view, string node)
    {
        var address = view.NodeOf(node)?.Live?.ManagementAddress;
        if (string.IsNullOrEmpty(address))
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"storage node {node} is down"));
        }

        return new NodeAgentService.NodeAgentServiceClient(_channels.GetOrAdd(address, _channelFactory));
    }

    public CallOptions Call(CancellationToken cancellationToken) => new(deadline: DateTime.UtcNow + callTimeout, cancellationToken: cancellationToken);

    /// <param name="pool">Pool for a new (not cloned) copy; null for the node's pool with the most free space.</param>
    public async Task<string> PrepareReplicaAsync(ClusterNode view, string node, VolumeRecord record, Guid? sourceSnapshot, Guid? sourceVolume, CancellationToken cancellationToken, string? pool = null)
    {
        var response = await For(view, node).PrepareReplicaAsync(new PrepareReplicaRequest
        {
            VolumeId = record.Id.ToString("D"),
            VolumeName = record.Name,
            SizeBytes = (ulong)record.SizeBytes,
            BlockSize = (uint)record.BlockSize,
            Pool = pool ?? "",
            SourceSnapshotId = sourceSnapshot?.ToString("D") ?? "",
            SourceVolumeId = sourceVolume?.ToString("D") ?? "",
        }, Call(cancellationToken)).ConfigureAwait(false);
        return response.Pool;
    }

    public async Task DiscardReplicaAsync(ClusterNode view, string node, Guid volumeId, CancellationToken cancellationToken)
    {
        try
        {
            await For(view, node).DiscardReplicaAsync(new DiscardReplicaRequest { VolumeId = volumeId.ToString("D") }, Call(cancellationToken)).ConfigureAwait(false);
        }
        catch (RpcException)
        {
            // A pending image that stays is reclaimed by that node's next start.
        }
    }

    public async Task<ulong[]> ChecksumReplicaAsync(ClusterNode view, string node, Guid volumeId, long offset, long length, int regionSize, CancellationToken cancellationToken)
    {
        var response = await For(view, node).ChecksumReplicaAsync(new ChecksumReplicaRequest
        {
            VolumeId = volumeId.ToString("D"),
            Offset = (ulong)offset,
            Length = (ulong)length,
            RegionSize = (uint)regionSize,
        }, Call(cancellationToken)).ConfigureAwait(false);
        return [.. response.Checksums];
    }

    public async Task<RegionMap?> UnflushedRegionsAsync(ClusterNode view, string node, Guid volumeId, CancellationToken cancellationToken)
    {
        var response = await For(view, node).UnflushedRegionsAsync(new UnflushedRegionsRequest { VolumeId = volumeId.ToString("D") }, Call(cancellationToken)).ConfigureAwait(false);
        return response.RegionSize == 0 ? null : RegionMap.FromBytes((long)response.VolumeSize, (int)response.RegionSize, response.Bitmap.Span);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var channel in _channels.Values)
        {
            await Task.Run(channel.Dispose).ConfigureAwait(false);
        }

        _channels.Clear();
    }
}
