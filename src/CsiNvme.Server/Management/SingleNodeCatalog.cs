using CsiNvme.Api.V1;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Catalog;

namespace CsiNvme.Server.Management;

/// <summary>A single storage server answers NodeService as a cluster of one node that cannot be drained.</summary>
internal sealed class SingleNodeCatalog(StorageServer server) : INodeCatalog
{
    public const string NodeName = "local";

    public async Task<IReadOnlyList<Node>> ListNodesAsync(CancellationToken cancellationToken = default) => [await DescribeAsync(cancellationToken)];

    public Task<Node> DrainAsync(string name, CancellationToken cancellationToken = default) =>
        throw new VolumeException(VolumeError.FailedPrecondition, "a single storage server cannot be drained: there is no other node to move its volumes to");

    public async Task<Node> UndrainAsync(string name, CancellationToken cancellationToken = default)
    {
        if (name != NodeName)
        {
            throw new VolumeException(VolumeError.NotFound, $"node {name} is not a node of this server (a single server is node '{NodeName}')");
        }

        return await DescribeAsync(cancellationToken);
    }

    private async Task<Node> DescribeAsync(CancellationToken cancellationToken)
    {
        var pools = await server.Catalog.ListPoolsAsync(cancellationToken);
        var node = new Node
        {
            Name = NodeName,
            Ordinal = 0,
            State = "up",
            AdminState = "active",
            VolumeCount = (uint)server.Local.Count,
            PrimaryCount = (uint)server.Local.Count,
            ManagementAddress = server.ManagementEndpoint.ToString(),
            Version = StorageServer.Version,
            FreeBytes = (ulong)pools.Sum(p => (long)p.FreeBytes),
        };
        node.Pools.AddRange(pools);
        node.NvmeListenAddresses.AddRange(server.Local.ListenAddresses);
        return node;
    }
}
