using CsiNvme.Api.V1;
using CsiNvme.Server.Volumes;
using Grpc.Core;

namespace CsiNvme.Server.Management;

/// <summary>The VolumeService RPCs; refusals become status codes in <see cref="ErrorMappingInterceptor"/>.</summary>
internal sealed class VolumeGrpcService(VolumeManager volumes) : VolumeService.VolumeServiceBase
{
    public override Task<Volume> CreateVolume(CreateVolumeRequest request, ServerCallContext context) =>
        volumes.CreateAsync(
            request.Name,
            request.SizeBytes,
            request.BlockSize,
            request.AllowAnyHost,
            request.AllowedHosts,
            request.SourceSnapshot,
            request.SourceVolume,
            request.Pool,
            request.Labels,
            context.CancellationToken);

    public override Task<Volume> GetVolume(GetVolumeRequest request, ServerCallContext context) =>
        Task.FromResult(volumes.Get(request.Name));

    public override Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        var response = new ListVolumesResponse();
        response.Volumes.AddRange(volumes.List());
        return Task.FromResult(response);
    }

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        await volumes.DeleteAsync(request.Name, context.CancellationToken);
        return new DeleteVolumeResponse();
    }

    public override Task<Volume> ResizeVolume(ResizeVolumeRequest request, ServerCallContext context) =>
        volumes.ResizeAsync(request.Name, request.SizeBytes, context.CancellationToken);

    public override Task<Volume> AllowHost(HostAccessRequest request, ServerCallContext context) =>
        volumes.AllowHostAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> DenyHost(HostAccessRequest request, ServerCallContext context) =>
        volumes.DenyHostAsync(request.Name, request.HostNqn, context.CancellationToken);

    public override Task<Volume> SetAllowAnyHost(SetAllowAnyHostRequest request, ServerCallContext context) =>
        volumes.SetAllowAnyHostAsync(request.Name, request.AllowAnyHost, context.CancellationToken);

    public override Task<Snapshot> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context) =>
        volumes.CreateSnapshotAsync(request.Volume, request.Name, request.Labels, context.CancellationToken);

    public override Task<Snapshot> GetSnapshot(GetSnapshotRequest request, ServerCallContext context) =>
        Task.FromResult(volumes.GetSnapshot(request.Name));

    public override Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        var response = new ListSnapshotsResponse();
        response.Snapshots.AddRange(volumes.ListSnapshots(request.Volume));
        return Task.FromResult(response);
    }

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        await volumes.DeleteSnapshotAsync(request.Name, context.CancellationToken);
        return new DeleteSnapshotResponse();
    }
}
