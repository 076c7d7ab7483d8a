using CsiNvme.Api.V1;

namespace CsiNvme.Volumes.Catalog;

/// <summary>The storage nodes behind the management API's NodeService (a single server is a cluster of one).</summary>
public interface INodeCatalog
{
    Task<IReadOnlyList<Node>> ListNodesAsync(CancellationToken cancellationToken = default);

    Task<Node> DrainAsync(string name, CancellationToken cancellationToken = default);

    Task<Node> UndrainAsync(string name, CancellationToken cancellationToken = default);
}
