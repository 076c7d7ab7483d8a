using CsiNvme.Api.V1;
using CsiNvme.Volumes.Catalog;
using Grpc.Core;

namespace CsiNvme.Server.Management;

/// <summary>The NodeService RPCs (ListNodes, DrainNode, UndrainNode).</summary>
internal sealed class NodeGrpcService(INodeCatalog nodes) : NodeService.NodeServiceBase
{
    public override async Task<ListNodesResponse> ListNodes(ListNodesRequest request, ServerCallContext context)
    {
        var response = new ListNodesResponse();
        response.Nodes.AddRange(await nodes.ListNodesAsync(context.CancellationToken));
        return response;
    }

    public override Task<Node> DrainNode(NodeRequest request, ServerCallContext context) =>
        nodes.DrainAsync(request.Name, context.CancellationToken);

    public override Task<Node> UndrainNode(NodeRequest request, ServerCallContext context) =>
        nodes.UndrainAsync(request.Name, context.CancellationToken);
}
