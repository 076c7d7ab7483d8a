using CsiNvme.Api.V1;
using Grpc.Core;

namespace CsiNvme.Server.Management;

internal sealed class ServerGrpcService(StorageServer server) : ServerService.ServerServiceBase
{
    public override Task<ServerInfo> GetServerInfo(GetServerInfoRequest request, ServerCallContext context) =>
        Task.FromResult(server.GetInfo());

    public override Task<ListPoolsResponse> ListPools(ListPoolsRequest request, ServerCallContext context)
    {
        var response = new ListPoolsResponse();
        response.Pools.AddRange(server.Volumes.ListPools());
        return Task.FromResult(response);
    }
}
