using CsiNvme.Api.V1;
using CsiNvme.Volumes.Catalog;
using Grpc.Core;

namespace CsiNvme.Server.Management;

internal sealed class ServerGrpcService(StorageServer server, IVolumeCatalog volumes) : ServerService.ServerServiceBase
{
    public override Task<ServerInfo> GetServerInfo(GetServerInfoRequest request, ServerCallContext context) =>
        Task.FromResult(server.GetInfo());

    public override async Task<ListPoolsResponse> ListPools(ListPoolsRequest request, ServerCallContext context)
    {
        var response = new ListPoolsResponse();
        response.Pools.AddRange(await volumes.ListPoolsAsync(context.CancellationToken));
        return response;
    }
}
