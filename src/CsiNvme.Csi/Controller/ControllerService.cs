using System.Globalization;
using Csi.V1;
using CsiNvme.Api;
using CsiNvme.Csi.Hosting;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using ControllerBase = Csi.V1.Controller.ControllerBase;
using CsiVolume = Csi.V1.Volume;
using Mgmt = CsiNvme.Api.V1;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// CSI Controller service on the storage server's management API. The CSI volume id is the server's volume
/// name and the snapshot id the server's snapshot name (see <see cref="VolumeNames"/>), so the driver keeps no
/// state of its own: the server's allowed-hosts list of a volume is the record of the nodes it is published
/// to. Calls for one volume or snapshot id run one at a time (<see cref="KeyedAsyncLock"/>); every call is
/// idempotent, so a CO retrying after a timeout or a driver restart converges.
/// </summary>
/// <remarks>
/// Topology: every node that reaches the storage servers' NVMe/TCP listeners can use every volume, so
/// volumes carry no accessible_topology (the CO may place them anywhere) whatever accessibility_requirements
/// asks, and GetCapacity answers the same for every topology. In a storage cluster too: a volume's replicas are
/// on storage nodes, which hosts reach over the network, not on Kubernetes nodes; where the replicas can go is
/// what GetCapacity's answer per replica count says. A volume pinned to a node's topology would also forbid
/// live-migrating a VM to another node.
/// </remarks>
internal sealed partial class ControllerService(
    StorageServerClient storage,
    KeyedAsyncLock locks,
    CsiDriverOptions options,
    ILogger<ControllerService> logger) : ControllerBase
{
    /// <summary>volume_context keys written by CreateVolume and read by the node.</summary>
    public const string ContextNqn = "nqn";
    public const string ContextNguid = "nguid";
    public const string ContextUuid = "uuid";
    public const string ContextBlockSize = "blockSize";

    /// <summary>
    /// publish_context: comma-separated "ADDR:PORT" NVMe/TCP listeners of the volume; in a cluster those of every node
    /// holding a replica that is up, the primary's first (the node connects a path to each).
    /// </summary>
    public const string ContextTargets = "targets";

    private const string TokenPrefix = "next:";

    private static readonly RpcType[] _capabilities =
    [
        RpcType.CreateDeleteVolume,
        RpcType.PublishUnpublishVolume,
        RpcType.ListVolumes,
        RpcType.ListVolumesPublishedNodes,
        RpcType.GetCapacity,
        RpcType.CreateDeleteSnapshot,
        RpcType.ListSnapshots,
        RpcType.CloneVolume,
        RpcType.ExpandVolume,
        RpcType.GetVolume,
        RpcType.VolumeCondition,
        RpcType.SingleNodeMultiWriter,
        RpcType.ModifyVolume,
    ];

    public override Task<ControllerGetCapabilitiesResponse> ControllerGetCapabilities(ControllerGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new ControllerGetCapabilitiesResponse();
        foreach (var type in _capabilities)
        {
            response.Capabilities.Add(new ControllerServiceCapability { Rpc = new ControllerServiceCapability.Types.RPC { Type = type } });
        }

        return Task.FromResult(response);
    }

    public override async Task<CreateVolumeResponse> CreateVolume(CreateVolumeRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.Name))
        {
            throw Invalid("name is required");
        }

        if (VolumeNames.HasBannedCharacter(request.Name))
        {
            throw Invalid("name contains a control character");
        }

        CheckCapabilities(request.VolumeCapabilities);
        if (CapacityRules.CheckWellFormed(request.CapacityRange) is { } rangeError)
        {
            throw Invalid(rangeError);
        }

        var parameters = VolumeParameters.Parse(request.Parameters, out var parameterError);
        if (parameterError is not null)
        {
            throw Invalid(parameterError);
        }

        parameters = parameters.WithMutable(request.MutableParameters, out var mutableError);
        if (mutableError is not null)
        {
            throw Invalid(mutableError);
        }

        var name = VolumeNames.ToServerName(request.Name);
        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(name, ct);

        // The source comes first: its size is the clone's minimum, and a missing source is NOT_FOUND.
        var source = request.VolumeContentSource;
        long minimumBytes = 0;
        string sourceSnapshot = string.Empty;
        string sourceVolume = string.Empty;
        switch (source?.TypeCase)
        {
            case null:
            case VolumeContentSource.TypeOneofCase.None:
                if (source is not null)
                {
                    throw Invalid("volume_content_source has neither a snapshot nor a volume");
                }

                break;
            case VolumeContentSource.TypeOneofCase.Snapshot:
                sourceSnapshot = source.Snapshot.SnapshotId;
                if (string.IsNullOrEmpty(sourceSnapshot))
                {
                    throw Invalid("volume_content_source.snapshot.snapshot_id is empty");
                }

                minimumBytes = (long)(await GetSnapshotOrNotFound(sourceSnapshot, ct)).SizeBytes;
                break;
            case VolumeContentSource.TypeOneofCase.Volume:
                sourceVolume = source.Volume.VolumeId;
                if (string.IsNullOrEmpty(sourceVolume))
                {
                    throw Invalid("volume_content_source.volume.volume_id is empty");
                }

                minimumBytes = (long)(await GetVolumeOrNotFound(sourceVolume, ct, "source volume")).SizeBytes;
                break;
        }

        var size = CapacityRules.Choose(request.CapacityRange, minimumBytes, out var capacityError)
                   ?? throw new RpcException(new Status(StatusCode.OutOfRange, capacityError!));
        var requested = RecordedVolume.FromRequest(request.VolumeCapabilities, source, parameters.NodeContext);
        var labels = requested.ToLabels();
        if (!VolumeLabels.IsValid(labels, out var labelError))
        {
            throw Invalid($"this request cannot be recorded with the volume: {labelError}");
        }

        Mgmt.Volume volume;
        try
        {
            volume = await storage.Volumes.CreateVolumeAsync(
                new Mgmt.CreateVolumeRequest
                {
                    Name = name,
                    SizeBytes = (ulong)size,
                    BlockSize = parameters.BlockSize,
                    SourceSnapshot = sourceSnapshot,
                    SourceVolume = sourceVolume,
                    Pool = parameters.Pool,
                    Labels = { labels },
                    Replicas = (uint)parameters.Replicas,
                },
                storage.Call(ct));
            CsiLog.VolumeCreated(
                logger,
                name,
                (long)volume.SizeBytes,
                sourceSnapshot.Length > 0 ? $"snapshot {sourceSnapshot}" : sourceVolume.Length > 0 ? $"volume {sourceVolume}" : "none",
                string.Join(",", request.Parameters.Select(p => $"{p.Key}={p.Value}")));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            // A retry of a call that created it, or another claim with the same name: compare.
            volume = await GetVolumeOrNotFound(name, ct);
            var recorded = RecordedVolume.FromLabels(volume.Labels);
            if (recorded.IsRecorded && recorded.DifferenceFrom(requested) is { } difference)
            {
                throw new RpcException(new Status(StatusCode.AlreadyExists, $"volume {name} exists with {difference}"));
            }

            if (!CapacityRules.Satisfies(request.CapacityRange, (long)volume.SizeBytes) ||
                (minimumBytes > 0 && (long)volume.SizeBytes < minimumBytes) ||
                (parameters.BlockSize != 0 && volume.BlockSize != parameters.BlockSize) ||
                (parameters.Pool.Length > 0 && volume.Pool != parameters.Pool) ||
                ReplicasOf(volume) != parameters.Replicas)
            {
                throw new RpcException(new Status(
                    StatusCode.AlreadyExists,
                    $"volume {name} exists with {volume.SizeBytes} bytes, block size {volume.BlockSize}{(volume.Pool.Length > 0 ? $", pool {volume.Pool}" : "")}, " +
                    $"{ReplicasOf(volume)} replica(s), incompatible with this request"));
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"source of volume {name}: {e.Status.Detail}"));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            // What the class or the request asks cannot be had here, and no retry helps ("Invalid or unsupported
            // field", "Source incompatible or not supported"): more than one replica on a single storage server (a
            // cluster with too few usable nodes is RESOURCE_EXHAUSTED instead), a backend that cannot clone
            // (file/memory), or a pool parameter that contradicts the source's pool.
            throw Invalid($"cannot create volume {name}{(source is null ? "" : " from its source")}: {e.Status.Detail}");
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted)
        {
            // Fewer storage nodes up, active and with the pool than replicas asked (or a clone's pool too full):
            // the spec's "Unable to provision", whose recovery (fix what prevents it, retry with backoff) fits a
            // node that comes back or is undrained.
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"cannot place volume {name}: {e.Status.Detail}"));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            throw Invalid($"storage server refused volume {name}: {e.Status.Detail}");
        }

        // Built from what the server recorded, so a retry gets what the first call got (and ListVolumes as well).
        return new CreateVolumeResponse { Volume = ToCsiVolume(volume, requested) };
    }

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        if (!VolumeNaming.IsValidVolumeName(id, out _))
        {
            // Never issued by this driver, so it does not exist: deleting it succeeds.
            return new DeleteVolumeResponse();
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(id, ct);
        try
        {
            var volume = await storage.Volumes.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = id }, storage.Call(ct));
            if (volume.ConnectedHosts.Count > 0)
            {
                // Deleting it would pull the disk from under a running workload; the CO unpublishes first.
                throw new RpcException(new Status(
                    StatusCode.FailedPrecondition,
                    $"volume {id} is in use by connected hosts {string.Join(", ", volume.ConnectedHosts)}"));
            }

            await storage.Volumes.DeleteVolumeAsync(new Mgmt.DeleteVolumeRequest { Name = id }, storage.Call(ct));
            CsiLog.VolumeDeleted(logger, id);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // Already gone: DeleteVolume is idempotent.
        }

        return new DeleteVolumeResponse();
    }

    public override async Task<ValidateVolumeCapabilitiesResponse> ValidateVolumeCapabilities(ValidateVolumeCapabilitiesRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        if (request.VolumeCapabilities.Count == 0)
        {
            throw Invalid("volume_capabilities is required");
        }

        var volume = await GetVolumeOrNotFound(id, context.CancellationToken);
        var recorded = RecordedVolume.FromLabels(volume.Labels);
        var response = new ValidateVolumeCapabilitiesResponse();
        foreach (var capability in request.VolumeCapabilities)
        {
            if ((CapabilityRules.Check(capability) ?? recorded.Incompatibility(capability)) is { } error)
            {
                response.Message = error;
                return response;
            }
        }

        VolumeParameters.Parse(request.Parameters, out var parameterError);
        if (parameterError is not null)
        {
            response.Message = parameterError;
            return response;
        }

        VolumeParameters.ParseMutable(request.MutableParameters, out var mutableError);
        if (mutableError is not null)
        {
            response.Message = mutableError;
            return response;
        }

        // A context naming another subsystem belongs to another volume (say, one deleted and re-created).
        if (request.VolumeContext.TryGetValue(ContextNqn, out var nqn) && nqn != volume.SubsystemNqn)
        {
            response.Message = $"volume_context names subsystem {nqn}, but volume {id} is {volume.SubsystemNqn}";
            return response;
        }

        response.Confirmed = new ValidateVolumeCapabilitiesResponse.Types.Confirmed();
        response.Confirmed.VolumeCapabilities.Add(request.VolumeCapabilities);
        response.Confirmed.VolumeContext.Add(request.VolumeContext);
        response.Confirmed.Parameters.Add(request.Parameters);
        response.Confirmed.MutableParameters.Add(request.MutableParameters);
        return response;
    }

    public override async Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        if (request.MaxEntries < 0)
        {
            throw Invalid($"max_entries must not be negative ({request.MaxEntries})");
        }

        var after = ParseToken(request.StartingToken);
        var all = await storage.Volumes.ListVolumesAsync(new Mgmt.ListVolumesRequest(), storage.Call(context.CancellationToken));
        var page = Page(all.Volumes.OrderBy(v => v.Name, StringComparer.Ordinal), v => v.Name, after, request.MaxEntries, out var next);
        var response = new ListVolumesResponse { NextToken = next };
        foreach (var volume in page)
        {
            var status = new ListVolumesResponse.Types.VolumeStatus { VolumeCondition = VolumeConditions.Of(volume) };
            status.PublishedNodeIds.Add(volume.AllowedHosts);
            response.Entries.Add(new ListVolumesResponse.Types.Entry { Volume = ToCsiVolume(volume, null), Status = status });
        }

        return response;
    }

    public override async Task<ControllerGetVolumeResponse> ControllerGetVolume(ControllerGetVolumeRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        var volume = await GetVolumeOrNotFound(id, context.CancellationToken);
        var status = new ControllerGetVolumeResponse.Types.VolumeStatus { VolumeCondition = VolumeConditions.Of(volume) };
        status.PublishedNodeIds.Add(volume.AllowedHosts);
        return new ControllerGetVolumeResponse { Volume = ToCsiVolume(volume, null), Status = status };
    }

    public override async Task<GetCapacityResponse> GetCapacity(GetCapacityRequest request, ServerCallContext context)
    {
        var parameters = VolumeParameters.Parse(request.Parameters, out var parameterError);
        if (parameterError is not null)
        {
            throw Invalid(parameterError);
        }

        // Capacity that cannot hold a volume with these capabilities is none at all.
        if (request.VolumeCapabilities.Any(c => CapabilityRules.Check(c) is not null))
        {
            return new GetCapacityResponse { AvailableCapacity = 0 };
        }

        var nodes = (await storage.Nodes.ListNodesAsync(new Mgmt.ListNodesRequest(), storage.Call(context.CancellationToken))).Nodes;
        var available = NodeCapacity.AvailableBytes(nodes, parameters.Replicas, parameters.Pool, out var poolError)
                        ?? throw Invalid(poolError!);

        // Thin volumes reserve nothing at creation, so the free space is what is left to write, and a volume of
        // any size up to the server's maximum can be created whatever that space.
        return new GetCapacityResponse
        {
            AvailableCapacity = available,
            MaximumVolumeSize = CapacityRules.MaximumVolumeBytes,
            MinimumVolumeSize = CapacityRules.Granularity,
        };
    }

    public override async Task<ControllerExpandVolumeResponse> ControllerExpandVolume(ControllerExpandVolumeRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        if (request.CapacityRange is null || (request.CapacityRange.RequiredBytes == 0 && request.CapacityRange.LimitBytes == 0))
        {
            throw Invalid("capacity_range is required");
        }

        if (CapacityRules.CheckWellFormed(request.CapacityRange) is { } rangeError)
        {
            throw Invalid(rangeError);
        }

        if (request.VolumeCapability is not null && CapabilityRules.Check(request.VolumeCapability) is { } capabilityError)
        {
            throw Invalid(capabilityError);
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(id, ct);
        var volume = await GetVolumeOrNotFound(id, ct);
        if (request.VolumeCapability is not null && RecordedVolume.FromLabels(volume.Labels).Incompatibility(request.VolumeCapability) is { } incompatibility)
        {
            // "Exceeds capabilities" in the spec's table: a capability the volume was not created for.
            throw Invalid($"volume {id}: {incompatibility}");
        }

        var current = (long)volume.SizeBytes;
        var limit = request.CapacityRange.LimitBytes;
        if (limit > 0 && current > limit)
        {
            throw new RpcException(new Status(StatusCode.OutOfRange, $"volume {id} is already {current} bytes, more than limit_bytes {limit}; volumes do not shrink"));
        }

        var target = CapacityRules.Choose(request.CapacityRange, current, out var capacityError)
                     ?? throw new RpcException(new Status(StatusCode.OutOfRange, capacityError!));
        if (target > current)
        {
            volume = await storage.Volumes.ResizeVolumeAsync(new Mgmt.ResizeVolumeRequest { Name = id, SizeBytes = (ulong)target }, storage.Call(ct));
            CsiLog.VolumeExpanded(logger, id, (long)volume.SizeBytes);
        }

        return new ControllerExpandVolumeResponse
        {
            CapacityBytes = (long)volume.SizeBytes,
            // A block device grows by itself on the node (the kernel sees the namespace change); a filesystem
            // must be grown there. Without a capability the node decides, so ask for it.
            NodeExpansionRequired = request.VolumeCapability?.AccessTypeCase != VolumeCapability.AccessTypeOneofCase.Block,
        };
    }

    /// <summary>
    /// A VolumeAttributesClass's parameters applied to a volume: <c>replicas</c>, the number of storage nodes holding
    /// it. Returns once the storage has recorded the new count; the volume's primary then adds replicas on active nodes
    /// and rebuilds them while the volume serves, or removes the extra ones once as many as kept are in sync
    /// (ControllerGetVolume's condition says "2 of 3 replicas placed" or names the rebuilding one meanwhile). Hosts
    /// learn added and removed paths by themselves: the node plugin's path keeper reads the discovery logs.
    /// </summary>
    public override async Task<ControllerModifyVolumeResponse> ControllerModifyVolume(ControllerModifyVolumeRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        if (request.MutableParameters.Count == 0)
        {
            throw Invalid("mutable_parameters is required");
        }

        var replicas = VolumeParameters.ParseMutable(request.MutableParameters, out var mutableError);
        if (mutableError is not null)
        {
            throw Invalid(mutableError);
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(id, ct);
        var volume = await GetVolumeOrNotFound(id, ct);
        if (replicas is not { } count || ReplicasOf(volume) == count)
        {
            return new ControllerModifyVolumeResponse();
        }

        // More replicas than the storage has nodes is no class this storage can serve ("Parameters not supported"), and a
        // single server has one; fewer nodes up or active than that is a state that passes (RESOURCE_EXHAUSTED, retried).
        var nodes = (await storage.Nodes.ListNodesAsync(new Mgmt.ListNodesRequest(), storage.Call(ct))).Nodes;
        if (count > nodes.Count)
        {
            throw Invalid($"volume {id}: {count} replicas need {count} storage nodes, and the storage has {nodes.Count}");
        }

        try
        {
            volume = await storage.Volumes.SetReplicaCountAsync(new Mgmt.SetReplicaCountRequest { Name = id, Replicas = (uint)count }, storage.Call(ct));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"volume {id} not found"));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"cannot place the replicas of volume {id}: {e.Status.Detail}"));
        }

        CsiLog.VolumeReplicasChanged(logger, id, ReplicasOf(volume));
        return new ControllerModifyVolumeResponse();
    }

    /// <summary>
    /// Pagination tokens are "next:" + the last name returned: listing resumes after that name in name order,
    /// so a page boundary survives volumes being created or deleted between calls.
    /// </summary>
    private static string? ParseToken(string token)
    {
        if (token.Length == 0)
        {
            return null;
        }

        if (!token.StartsWith(TokenPrefix, StringComparison.Ordinal) || !VolumeNaming.IsValidVolumeName(token[TokenPrefix.Length..], out _))
        {
            throw new RpcException(new Status(StatusCode.Aborted, $"starting_token '{token}' was not issued by this driver"));
        }

        return token[TokenPrefix.Length..];
    }

    private static List<T> Page<T>(IEnumerable<T> sorted, Func<T, string> nameOf, string? after, int maxEntries, out string nextToken)
    {
        var remaining = after is null ? sorted : sorted.Where(item => string.CompareOrdinal(nameOf(item), after) > 0);
        var page = new List<T>();
        nextToken = string.Empty;
        foreach (var item in remaining)
        {
            if (maxEntries > 0 && page.Count == maxEntries)
            {
                nextToken = TokenPrefix + nameOf(page[^1]);
                break;
            }

            page.Add(item);
        }

        return page;
    }

    /// <summary>
    /// The CSI view of a volume. Node parameters and content source come from the volume's record; a volume without
    /// one (not created by this driver with labels) gets those of <paramref name="request"/> when there is one.
    /// </summary>
    private static CsiVolume ToCsiVolume(Mgmt.Volume volume, RecordedVolume? request)
    {
        var recorded = RecordedVolume.FromLabels(volume.Labels);
        var described = recorded.IsRecorded ? recorded : request;
        var nodeContext = described?.NodeContext;
        var result = new CsiVolume
        {
            VolumeId = volume.Name,
            CapacityBytes = (long)volume.SizeBytes,
        };
        result.VolumeContext[ContextNqn] = volume.SubsystemNqn;
        result.VolumeContext[ContextNguid] = volume.Nguid;
        result.VolumeContext[ContextUuid] = volume.Uuid;
        result.VolumeContext[ContextBlockSize] = volume.BlockSize.ToString(CultureInfo.InvariantCulture);
        if (nodeContext is not null)
        {
            foreach (var (key, value) in nodeContext)
            {
                result.VolumeContext[key] = value;
            }
        }

        // The node connects and expects a path per replica: a volume made with several without the parameter
        // (by hand, with the CLI) says so too, and one whose count changed since its creation says the count now.
        if (ReplicasOf(volume) > 1 || result.VolumeContext.ContainsKey(VolumeParameters.ReplicasKey))
        {
            result.VolumeContext[VolumeParameters.ReplicasKey] = ReplicasOf(volume).ToString(CultureInfo.InvariantCulture);
        }

        if (described?.ContentSource() is { } source)
        {
            result.ContentSource = source;
        }

        return result;
    }

    /// <summary>Copies the storage server keeps of the volume (1 on a single server).</summary>
    private static int ReplicasOf(Mgmt.Volume volume) => (int)Math.Max(1u, volume.ReplicaCount);

    private async Task<Mgmt.Volume> GetVolumeOrNotFound(string id, CancellationToken ct, string what = "volume")
    {
        if (!VolumeNaming.IsValidVolumeName(id, out _))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"{what} {id} not found"));
        }

        try
        {
            return await storage.Volumes.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = id }, storage.Call(ct));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"{what} {id} not found"));
        }
    }

    private static void CheckCapabilities(IReadOnlyCollection<VolumeCapability> capabilities)
    {
        if (capabilities.Count == 0)
        {
            throw Invalid("volume_capabilities is required");
        }

        foreach (var capability in capabilities)
        {
            if (CapabilityRules.Check(capability) is { } error)
            {
                throw Invalid(error);
            }
        }
    }

    private static string RequireVolumeId(string id) =>
        string.IsNullOrEmpty(id) ? throw Invalid("volume_id is required") : id;

    private static RpcException Invalid(string detail) => new(new Status(StatusCode.InvalidArgument, detail));
}
