using CsiNvme.Api.V1.Agent;
using CsiNvme.Metadata;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>A draining node's primaries move to in-sync replicas on active nodes, once the hosts can follow.</summary>
public sealed partial class ClusterNode
{
    private readonly Dictionary<string, DateTime> _handoverWaitSince = new(StringComparer.Ordinal);

    /// <summary>
    /// Planned handover (this node drains): changes are held and flushed everywhere (so no replica has unflushed
    /// regions to resync), the record names an in-sync replica on an active node primary at the next epoch, and this
    /// node stops: the held changes fail with a path status and the hosts send them to the new primary once its path
    /// turns optimized. False when no replica can take the role yet.
    /// </summary>
    private async Task<bool> HandOverAsync(ClusterVolume volume, VolumeRecord record, CancellationToken cancellationToken)
    {
        var target = record.Replicas
            .Where(r => r.Node != Name && r.State == ReplicaState.InSync && IsLive(r.Node) && !IsDraining(r.Node))
            .OrderBy(r => OrdinalOf(r.Node))
            .Select(r => r.Node)
            .FirstOrDefault();
        if (target is null)
        {
            Quietly($"handover:{volume.Name}", () => ClusterLog.HandoverBlocked(_logger, volume.Name));
            return false;
        }

        if (!await HostsReachAsync(volume, target, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (volume.Replicated is not { } replicated || volume.Role != VolumeRole.Primary)
            {
                return true;
            }

            var handedOver = false;
            try
            {
                await replicated.PauseAndFlushAsync().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
                var fresh = await _store.GetVolumeAsync(volume.Name, cancellationToken).ConfigureAwait(false);
                if (fresh is not null && fresh.Primary == Name && fresh.Epoch == volume.PrimaryEpoch
                    && fresh.Replicas.Any(r => r.Node == target && r.State == ReplicaState.InSync))
                {
                    handedOver = await _store.TryUpdateVolumeAsync(fresh with { Primary = target, Epoch = fresh.Epoch + 1 }, fresh.Revision, cancellationToken).ConfigureAwait(false);
                }
            }
            finally
            {
                if (!handedOver)
                {
                    replicated.Resume();
                }
            }

            if (handedOver)
            {
                ClusterLog.HandedOver(_logger, volume.Name, target, volume.PrimaryEpoch + 1);
                PrimaryChanged?.Invoke(volume.Name, Name, target, TimeSpan.Zero, "handover");
                await DemoteAsync(volume, $"handed over to {target} (drain)").ConfigureAwait(false);
            }

            return true;
        }
        finally
        {
            volume.Gate.Release();
        }
    }

    /// <summary>
    /// Whether the handover to <paramref name="target"/> may go on as far as hosts go: every host connected here is
    /// connected there too, so its I/O moves with the ANA change instead of waiting for a path (the usual case for a
    /// volume with several replicas; a replica just added, as when a volume with one replica moves, has none until the
    /// hosts' node plugins connect it). Held for at most <see cref="ClusterNodeOptions.HandoverHostWait"/>; a host that
    /// never connects (one without native multipath) does not hold a drain forever.
    /// </summary>
    private async Task<bool> HostsReachAsync(ClusterVolume volume, string target, CancellationToken cancellationToken)
    {
        var here = volume.Host?.Subsystem.ConnectedHosts ?? [];
        string[] missing = [];
        if (here.Count > 0)
        {
            try
            {
                var status = await Agents.For(this, target).GetVolumeStatusAsync(new GetVolumeStatusRequest { VolumeId = volume.Id.ToString("D") }, Agents.Call(cancellationToken)).ConfigureAwait(false);
                missing = [.. here.Except(status.ConnectedHosts, StringComparer.Ordinal).Order(StringComparer.Ordinal)];
            }
            catch (RpcException)
            {
                missing = [.. here.Order(StringComparer.Ordinal)];
            }
        }

        if (missing.Length == 0)
        {
            _handoverWaitSince.Remove(volume.Name);
            return true;
        }

        var now = DateTime.UtcNow;
        if (!_handoverWaitSince.TryGetValue(volume.Name, out var since))
        {
            _handoverWaitSince[volume.Name] = since = now;
        }

        var left = _options.HandoverHostWait - (now - since);
        if (left > TimeSpan.Zero)
        {
            Quietly($"handover-hosts:{volume.Name}", () => ClusterLog.HandoverWaitsForHosts(_logger, volume.Name, target, string.Join(",", missing), left.TotalSeconds));
            return false;
        }

        _handoverWaitSince.Remove(volume.Name);
        ClusterLog.HandoverWithoutHostPaths(_logger, volume.Name, target, string.Join(",", missing));
        return true;
    }
}
