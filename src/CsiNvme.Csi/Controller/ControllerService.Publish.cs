using System.Globalization;
using Csi.V1;
using CsiNvme.Api;
using CsiNvme.Csi.Authentication;
using CsiNvme.Csi.Hosting;
using Grpc.Core;
using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Controller;

/// <summary>ControllerPublishVolume and ControllerUnpublishVolume: a publication is the node's host NQN on the volume.</summary>
internal sealed partial class ControllerService
{
    public override async Task<ControllerPublishVolumeResponse> ControllerPublishVolume(ControllerPublishVolumeRequest request, ServerCallContext context)
    {
        // Missing and malformed fields first (INVALID_ARGUMENT), then what the request names: the volume, then
        // the node (NOT_FOUND), then whether the volume may go there (FAILED_PRECONDITION, RESOURCE_EXHAUSTED).
        var id = RequireVolumeId(request.VolumeId);
        if (string.IsNullOrEmpty(request.NodeId))
        {
            throw Invalid("node_id is required");
        }

        if (request.VolumeCapability is null)
        {
            throw Invalid("volume_capability is required");
        }

        if (CapabilityRules.Check(request.VolumeCapability) is { } capabilityError)
        {
            throw Invalid(capabilityError);
        }

        if (request.Readonly)
        {
            // PUBLISH_READONLY is not offered, so the CO must send false; publishing writable what was asked
            // read-only would hand out a disk the CO believes protected.
            throw Invalid("readonly publishing is not supported (no PUBLISH_READONLY capability)");
        }

        DhchapCsiSecrets? dhchap;
        try
        {
            // The StorageClass's csi.storage.k8s.io/controller-publish-secret-*: the node must authenticate with them.
            dhchap = DhchapCsiSecrets.From(request.Secrets);
        }
        catch (FormatException e)
        {
            throw Invalid(e.Message);
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(id, ct);
        var volume = await GetVolumeOrNotFound(id, ct);

        // Node ids are host NQNs, as NodeGetInfo reports them, admitted as they are on the subsystem. A node id
        // that is no NQN names no node this driver runs on: the node does not exist.
        if (!VolumeNaming.IsValidNqn(request.NodeId, out var nqnError))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"node {request.NodeId} does not exist: node ids are NVMe host NQNs ({nqnError})"));
        }

        var recorded = RecordedVolume.FromLabels(volume.Labels);
        if (recorded.Incompatibility(request.VolumeCapability) is { } incompatibility)
        {
            // The capability is well formed (that was INVALID_ARGUMENT above) but not what this volume is: the
            // volume's state, not the request alone, makes it wrong.
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"volume {id}: {incompatibility}"));
        }

        var mode = request.VolumeCapability.AccessMode.Mode;
        var others = volume.AllowedHosts.Where(h => h != request.NodeId).ToArray();
        if (others.Length > 0 && (recorded.IsSingleNodeOnly || CapabilityRules.IsSingleNode(mode)))
        {
            throw new RpcException(new Status(
                StatusCode.FailedPrecondition,
                $"volume {id} is published to {string.Join(", ", others)} and access mode {mode} allows a single node" +
                (recorded.IsSingleNodeOnly ? $" (the volume was created for {string.Join(", ", recorded.Capabilities)})" : "")));
        }

        if (dhchap is not null)
        {
            // Before the host is allowed, so there is no moment in which its NQN alone lets it in. Set on every publish:
            // the Secret may have changed since (rotation), and setting the same secrets again changes nothing.
            volume = await storage.Volumes.SetHostSecretAsync(new Mgmt.SetHostSecretRequest
            {
                Name = id,
                HostNqn = request.NodeId,
                Secret = dhchap.HostSecret,
                CtrlSecret = dhchap.CtrlSecret,
                Hash = dhchap.Hash,
                DhGroup = dhchap.DhGroup,
            }, storage.Call(ct));
            CsiLog.HostSecretSet(logger, id, request.NodeId, dhchap.IsBidirectional ? "bidirectional" : "host");
        }

        // Already published to this node: the same answer whatever the capability, as a publication is only the
        // node's host NQN on the volume (a retry at the limit must succeed too).
        if (!volume.AllowedHosts.Contains(request.NodeId))
        {
            // Publishes of other volumes to this node count the same volumes: one at a time per node.
            using var nodeHeld = await locks.AcquireAsync(NodeLockKey(request.NodeId), ct);
            await CheckAttachLimitAsync(request.NodeId, ct);
            volume = await storage.Volumes.AllowHostAsync(new Mgmt.HostAccessRequest { Name = id, HostNqn = request.NodeId }, storage.Call(ct));
            CsiLog.VolumePublished(logger, id, request.NodeId, CapabilityRules.Describe(request.VolumeCapability));
        }

        var response = new ControllerPublishVolumeResponse();
        response.PublishContext[ContextNqn] = volume.SubsystemNqn;
        response.PublishContext[ContextTargets] = string.Join(",", volume.ListenAddresses);
        response.PublishContext[ContextNguid] = volume.Nguid;
        response.PublishContext[ContextUuid] = volume.Uuid;
        // The count now, which volume_context (written at creation) no longer is after a ControllerModifyVolume.
        response.PublishContext[VolumeParameters.ReplicasKey] = ReplicasOf(volume).ToString(CultureInfo.InvariantCulture);
        return response;
    }

    public override async Task<ControllerUnpublishVolumeResponse> ControllerUnpublishVolume(ControllerUnpublishVolumeRequest request, ServerCallContext context)
    {
        var id = RequireVolumeId(request.VolumeId);
        if (!VolumeNaming.IsValidVolumeName(id, out _) ||
            (request.NodeId.Length > 0 && !VolumeNaming.IsValidNqn(request.NodeId, out _)))
        {
            // An unknown volume or node is not published: unpublishing it succeeds (spec: idempotent).
            return new ControllerUnpublishVolumeResponse();
        }

        var ct = context.CancellationToken;
        using var held = await locks.AcquireAsync(id, ct);
        try
        {
            var volume = await storage.Volumes.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = id }, storage.Call(ct));
            // No node id: unpublish from every node.
            var nodes = request.NodeId.Length > 0 ? [request.NodeId] : volume.AllowedHosts.ToArray();
            foreach (var node in nodes.Where(volume.AllowedHosts.Contains))
            {
                // The server also tears down that host's live controllers.
                await storage.Volumes.DenyHostAsync(new Mgmt.HostAccessRequest { Name = id, HostNqn = node }, storage.Call(ct));
                CsiLog.VolumeUnpublished(logger, id, node);
            }

            // A node no longer published keeps no secrets on the volume (denied first: it is out either way).
            foreach (var node in nodes.Where(n => volume.Authentication.Any(a => a.HostNqn == n)))
            {
                await storage.Volumes.ClearHostSecretAsync(new Mgmt.HostAccessRequest { Name = id, HostNqn = node }, storage.Call(ct));
                CsiLog.HostSecretCleared(logger, id, node);
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // The volume is gone, so it is published nowhere.
        }

        return new ControllerUnpublishVolumeResponse();
    }

    /// <summary>
    /// RESOURCE_EXHAUSTED when the node already has <see cref="CsiDriverOptions.MaxVolumesPerNode"/> volumes
    /// published: the volumes whose allowed hosts name it, as ListVolumes reports them, so the count survives
    /// a restarted controller and includes volumes published by hand.
    /// </summary>
    private async Task CheckAttachLimitAsync(string nodeId, CancellationToken ct)
    {
        var limit = options.MaxVolumesPerNode;
        if (limit <= 0)
        {
            return;
        }

        var volumes = (await storage.Volumes.ListVolumesAsync(new Mgmt.ListVolumesRequest(), storage.Call(ct))).Volumes;
        var attached = volumes.Count(v => v.AllowedHosts.Contains(nodeId));
        if (attached >= limit)
        {
            throw new RpcException(new Status(
                StatusCode.ResourceExhausted,
                $"node {nodeId} has {attached} volumes published, the most a node may have (--max-volumes-per-node {limit}): unpublish one first"));
        }
    }

    // Volume names hold no ':' and snapshot keys start with "snapshot:": node keys meet neither.
    private static string NodeLockKey(string nodeId) => "node:" + nodeId;
}
