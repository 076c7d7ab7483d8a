using CsiNvme.Api.V1.Agent;
using Grpc.Core;

namespace CsiNvme.Cluster;

/// <summary>The agent RPCs other storage nodes call on this one; refusals are mapped to status codes by the server's interceptor.</summary>
public sealed class NodeAgentGrpcService(ClusterNode node) : NodeAgentService.NodeAgentServiceBase
{
    public override async Task<PrepareReplicaResponse> PrepareReplica(PrepareReplicaRequest request, ServerCallContext context) =>
        new() { Pool = await node.PrepareReplicaAsync(request) };

    public override async Task<DiscardReplicaResponse> DiscardReplica(DiscardReplicaRequest request, ServerCallContext context)
    {
        await node.DiscardReplicaAsync(request);
        return new DiscardReplicaResponse();
    }

    public override Task<SnapshotVolumeResponse> SnapshotVolume(SnapshotVolumeRequest request, ServerCallContext context) =>
        node.SnapshotVolumeAsync(request, context.CancellationToken);

    public override async Task<ResizeVolumeResponse> ResizeVolume(ResizeVolumeRequest request, ServerCallContext context)
    {
        await node.ResizeVolumeAsync(request, context.CancellationToken);
        return new ResizeVolumeResponse();
    }

    public override Task<VerifyVolumeResponse> VerifyVolume(VerifyVolumeRequest request, ServerCallContext context) =>
        node.VerifyVolumeAsync(request, context.CancellationToken);

    public override Task<SnapshotReplicaResponse> SnapshotReplica(SnapshotReplicaRequest request, ServerCallContext context) =>
        node.SnapshotReplicaAsync(request);

    public override async Task<ResizeReplicaResponse> ResizeReplica(ResizeReplicaRequest request, ServerCallContext context)
    {
        await node.ResizeReplicaAsync(request);
        return new ResizeReplicaResponse();
    }

    public override Task<ChecksumReplicaResponse> ChecksumReplica(ChecksumReplicaRequest request, ServerCallContext context) =>
        node.ChecksumReplicaAsync(request);

    public override async Task<DeleteSnapshotImageResponse> DeleteSnapshotImage(DeleteSnapshotImageRequest request, ServerCallContext context)
    {
        await node.DeleteSnapshotImageAsync(request);
        return new DeleteSnapshotImageResponse();
    }

    public override Task<UnflushedRegionsResponse> UnflushedRegions(UnflushedRegionsRequest request, ServerCallContext context) =>
        node.UnflushedRegionsAsync(request);

    public override async Task<ApplyHostAccessResponse> ApplyHostAccess(ApplyHostAccessRequest request, ServerCallContext context)
    {
        await node.ApplyHostAccessAsync(request, context.CancellationToken);
        return new ApplyHostAccessResponse();
    }

    public override Task<VolumeStatus> GetVolumeStatus(GetVolumeStatusRequest request, ServerCallContext context) =>
        node.GetVolumeStatusAsync(request);
}
