using CsiNvme.Api.V1;
using CsiNvme.Volumes.Catalog;
using Grpc.Core;

namespace CsiNvme.Server.Management;

/// <summary>The VolumeService RPCs; refusals become status codes in <see cref="ErrorMappingInterceptor"/>.</summary>
internal sealed class VolumeGrpcService(IVolumeCatalog volumes) : VolumeService.VolumeServiceBase
{
    public override Task<Volume> CreateVolume(CreateVolumeRequest request, ServerCallContext context) =>
        volumes.CreateAsync(request, context.CancellationToken);

    public override Task<Volume> GetVolume(GetVolumeRequest request, ServerCallContext context) =>
        volumes.GetAsync(request.Name, context.CancellationToken);

    public override async Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        var response = new ListVolumesResponse();
        response.Volumes.AddRange(await volumes.ListAsync(context.CancellationToken));
        return response;
    }

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        await volumes.DeleteAsync(request.Name, context.CancellationToken);
        return new DeleteVolumeResponse();
    }

    public override Task<Volume> ResizeVolume(ResizeVolumeRequest request, ServerCallContext context) =>
        volumes.ResizeAsync(request.Name, request.SizeBytes, context.CancellationToken);

    public override Task<Volume> SetReplicaCount(SetReplicaCountRequest request, ServerCallContext context) =>
        volumes.SetReplicaCountAsync(request.Name, request.Replicas, context.CancellationToken);

    public override Task<Volume> AllowHost(HostAccessRequest request, ServerCallContext context) =>
        volumes.AllowHostAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> DenyHost(HostAccessRequest request, ServerCallContext context) =>
        volumes.DenyHostAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> SetAllowAnyHost(SetAllowAnyHostRequest request, ServerCallContext context) =>
        volumes.SetAllowAnyHostAsync(request.Name, request.AllowAnyHost, context.CancellationToken);

    public override Task<Volume> SetHostSecret(SetHostSecretRequest request, ServerCallContext context) =>
        volumes.SetHostSecretAsync(request, context.CancellationToken);

    public override Task<Volume> ClearHostSecret(HostAccessRequest request, ServerCallContext context) =>
        volumes.ClearHostSecretAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> SetHostTlsPsk(SetHostTlsPskRequest request, ServerCallContext context) =>
        volumes.SetHostTlsPskAsync(request, context.CancellationToken);

    public override Task<Volume> ClearHostTlsPsk(HostAccessRequest request, ServerCallContext context) =>
        volumes.ClearHostTlsPskAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> SetTlsRequired(SetTlsRequiredRequest request, ServerCallContext context) =>
        volumes.SetTlsRequiredAsync(request.Name, request.TlsRequired, context.CancellationToken);

    public override Task<Snapshot> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context) =>
        volumes.CreateSnapshotAsync(request.Volume, request.Name, request.Labels, context.CancellationToken);

    public override Task<Snapshot> GetSnapshot(GetSnapshotRequest request, ServerCallContext context) =>
        volumes.GetSnapshotAsync(request.Name, context.CancellationToken);

    public override async Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        var response = new ListSnapshotsResponse();
        response.Snapshots.AddRange(await volumes.ListSnapshotsAsync(request.Volume, context.CancellationToken));
        return response;
    }

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        await volumes.DeleteSnapshotAsync(request.Name, context.CancellationToken);
        return new DeleteSnapshotResponse();
    }

    public override Task<VerifyVolumeResponse> VerifyVolume(VerifyVolumeRequest request, ServerCallContext context) =>
        volumes.VerifyAsync(request.Name, request.RegionSize, context.CancellationToken);
}
