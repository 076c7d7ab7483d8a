using Csi.V1;
using CsiNvme.Api;
using CsiNvme.Csi.Hosting;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using CsiSnapshot = Csi.V1.Snapshot;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Controller;

/// <summary>CreateSnapshot, DeleteSnapshot and ListSnapshots: the snapshot id is the server's snapshot name.</summary>
internal sealed partial class ControllerService
{
    public override async Task<CreateSnapshotResponse> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context)
    {
        var sourceId = request.SourceVolumeId;
        if (string.IsNullOrEmpty(sourceId))
        {
            throw Invalid("source_volume_id is required");
        }

        if (string.IsNullOrEmpty(request.Name))
        {
            throw Invalid("name is required");
        }

        if (VolumeNames.HasBannedCharacter(request.Name))
        {
            throw Invalid("name contains a control character");
        }

        foreach (var key in request.Parameters.Keys.Where(k => !k.StartsWith("csi.storage.k8s.io/", StringComparison.Ordinal)))
        {
            throw Invalid($"unknown snapshot parameter '{key}'; snapshots take none");
        }

        var name = VolumeNames.ToServerName(request.Name);
        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync("snapshot:" + name, ct);
        Mgmt.Snapshot snapshot;
        try
        {
            snapshot = await storage.Volumes.CreateSnapshotAsync(new Mgmt.CreateSnapshotRequest { Volume = sourceId, Name = name }, storage.Call(ct));
            CsiLog.SnapshotCreated(logger, name, sourceId);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            snapshot = await GetSnapshotOrNotFound(name, ct);
            if (snapshot.SourceVolume != sourceId)
            {
                throw new RpcException(new Status(StatusCode.AlreadyExists, $"snapshot {name} exists and is of volume {snapshot.SourceVolume}, not {sourceId}"));
            }
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument && !VolumeNaming.IsValidVolumeName(sourceId, out _))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"source volume {sourceId} not found"));
        }

        return new CreateSnapshotResponse { Snapshot = ToCsiSnapshot(snapshot) };
    }

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.SnapshotId))
        {
            throw Invalid("snapshot_id is required");
        }

        if (!VolumeNaming.IsValidVolumeName(request.SnapshotId, out _))
        {
            return new DeleteSnapshotResponse();
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync("snapshot:" + request.SnapshotId, ct);
        try
        {
            await storage.Volumes.DeleteSnapshotAsync(new Mgmt.DeleteSnapshotRequest { Name = request.SnapshotId }, storage.Call(ct));
            CsiLog.SnapshotDeleted(logger, request.SnapshotId);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // Already gone: DeleteSnapshot is idempotent.
        }

        return new DeleteSnapshotResponse();
    }

    public override async Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        if (request.MaxEntries < 0)
        {
            throw Invalid($"max_entries must not be negative ({request.MaxEntries})");
        }

        var after = ParseToken(request.StartingToken);
        var ct = context.CancellationToken;
        IEnumerable<Mgmt.Snapshot> snapshots;
        if (request.SnapshotId.Length > 0)
        {
            // One snapshot, or none: an unknown id is an empty list, not an error.
            snapshots = [];
            if (VolumeNaming.IsValidVolumeName(request.SnapshotId, out _))
            {
                try
                {
                    var snapshot = await storage.Volumes.GetSnapshotAsync(new Mgmt.GetSnapshotRequest { Name = request.SnapshotId }, storage.Call(ct));
                    if (request.SourceVolumeId.Length == 0 || snapshot.SourceVolume == request.SourceVolumeId)
                    {
                        snapshots = [snapshot];
                    }
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                {
                }
            }
        }
        else if (request.SourceVolumeId.Length > 0 && !VolumeNaming.IsValidVolumeName(request.SourceVolumeId, out _))
        {
            snapshots = [];
        }
        else
        {
            snapshots = (await storage.Volumes.ListSnapshotsAsync(new Mgmt.ListSnapshotsRequest { Volume = request.SourceVolumeId }, storage.Call(ct))).Snapshots;
        }

        var page = Page(snapshots.OrderBy(s => s.Name, StringComparer.Ordinal), s => s.Name, after, request.MaxEntries, out var next);
        var response = new ListSnapshotsResponse { NextToken = next };
        foreach (var snapshot in page)
        {
            response.Entries.Add(new ListSnapshotsResponse.Types.Entry { Snapshot = ToCsiSnapshot(snapshot) });
        }

        return response;
    }

    private static CsiSnapshot ToCsiSnapshot(Mgmt.Snapshot snapshot) => new()
    {
        SnapshotId = snapshot.Name,
        SourceVolumeId = snapshot.SourceVolume,
        SizeBytes = (long)snapshot.SizeBytes,
        CreationTime = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(snapshot.CreatedUnixMs)),
        // Snapshots are taken in O(1) and durable when CreateSnapshot returns: usable at once.
        ReadyToUse = true,
    };

    private async Task<Mgmt.Snapshot> GetSnapshotOrNotFound(string id, CancellationToken ct)
    {
        if (!VolumeNaming.IsValidVolumeName(id, out _))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"snapshot {id} not found"));
        }

        try
        {
            return await storage.Volumes.GetSnapshotAsync(new Mgmt.GetSnapshotRequest { Name = id }, storage.Call(ct));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"snapshot {id} not found"));
        }
    }
}
