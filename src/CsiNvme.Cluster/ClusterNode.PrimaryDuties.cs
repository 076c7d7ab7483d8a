using CsiNvme.Metadata;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>What a primary does besides serving I/O: hands over when its node drains, keeps its replica count.</summary>
public sealed partial class ClusterNode
{
    /// <summary>
    /// Duties of each primary here: hand the role over when this node drains, keep the replica count on active nodes
    /// (move replicas off draining nodes, add or remove replicas after a count change), start or retry rebuilds of
    /// replicas that are out of sync on live nodes.
    /// </summary>
    private async Task CheckPrimariesAsync(CancellationToken cancellationToken)
    {
        if (!IsDraining(Name))
        {
            // An undrain ends the waits of handovers; a later drain waits afresh.
            _handoverWaitSince.Clear();
        }

        foreach (var volume in _volumes.Values.Where(v => v.Role == VolumeRole.Primary).ToArray())
        {
            if (RecordOf(volume.Name) is not { } record || record.Primary != Name)
            {
                continue;
            }

            // A draining primary with no replica ready to take the role keeps its other duties, since they make one:
            // a replica that fell out of sync is rebuilt, one on another draining node moves to an active node.
            if (IsDraining(Name) && await HandOverAsync(volume, record, cancellationToken).ConfigureAwait(false))
            {
                continue;
            }

            await KeepReplicaCountAsync(volume, record, cancellationToken).ConfigureAwait(false);
            StartRebuilds(volume, record);
        }
    }

    /// <summary>
    /// Keeps the volume's replica count on active nodes. A replica on a draining node moves: a new replica goes to an
    /// active node without one (prepared there, added out of sync, rebuilt), and once the active nodes hold as many
    /// in-sync replicas as the volume wants, the draining nodes' replicas leave the record. This node's own replica
    /// counts as one to move when this node drains and no active node holds one yet (a volume with one replica, or
    /// whose other replicas are on draining nodes too): the new replica then takes the primary role by handover, and
    /// the new primary removes this one. A raised count adds replicas the same way; a lowered one removes the extra
    /// replicas once the ones kept are in sync. Without a node to move to, a replica stays (the drain reports it).
    /// </summary>
    private async Task KeepReplicaCountAsync(ClusterVolume volume, VolumeRecord record, CancellationToken cancellationToken)
    {
        var wanted = Math.Max(1, record.ReplicaCount);
        var onActive = record.Replicas.Where(r => !IsDraining(r.Node)).ToArray();
        if (onActive.Count(r => r.State == ReplicaState.InSync) >= wanted)
        {
            await RemoveExtraReplicasAsync(volume, record, wanted, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (onActive.Length >= wanted)
        {
            // Every replica wanted is there, being rebuilt or on a node that is down: nothing to add.
            return;
        }

        var candidates = Placement.Candidates(Nodes, Records);
        var chosen = Placement.Choose(candidates, 1, record.Replicas.Select(r => r.Node).ToArray(), record.SizeBytes);
        if (chosen is null)
        {
            var leaving = record.Replicas.Where(r => IsDraining(r.Node)).Select(r => r.Node).ToArray();
            Quietly($"move:{record.Name}", () => ClusterLog.MoveBlocked(_logger, record.Name, leaving.Length > 0 ? string.Join(",", leaving) : "(none: replica count raised)"));
            return;
        }

        var node = chosen[0].Name;
        string pool;
        try
        {
            pool = await Agents.PrepareReplicaAsync(this, node, record, null, null, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            ClusterLog.MoveFailed(_logger, record.Name, node, e.Message);
            return;
        }

        var current = await _store.GetVolumeAsync(record.Name, cancellationToken).ConfigureAwait(false);
        if (current is null || current.Primary != Name || current.Replicas.Any(r => r.Node == node)
            || !await _store.TryUpdateVolumeAsync(current with { Replicas = [.. current.Replicas, new ReplicaRecord(node, pool, ReplicaState.OutOfSync, 0)] }, current.Revision, cancellationToken).ConfigureAwait(false))
        {
            await Agents.DiscardReplicaAsync(this, node, record.Id, cancellationToken).ConfigureAwait(false);
            return;
        }

        ClusterLog.ReplicaAdded(_logger, record.Name, node, pool, onActive.Length < record.Replicas.Count ? "moving replicas off draining nodes" : $"replica count raised to {wanted}");
    }

    /// <summary>
    /// The active nodes hold as many in-sync replicas as wanted: the record keeps this primary and, while this node is
    /// active, the in-sync replicas on active nodes up to the count (lowest ordinals first); the rest leave it
    /// (replicas on draining nodes, and those beyond a lowered count), and their nodes delete their copies. A draining
    /// primary (its handover still pending) removes only other draining nodes' replicas: the new primary trims the rest.
    /// </summary>
    private async Task RemoveExtraReplicasAsync(ClusterVolume volume, VolumeRecord record, int wanted, CancellationToken cancellationToken)
    {
        if (record.Replicas.Count <= wanted && !record.Replicas.Any(r => r.Node != Name && IsDraining(r.Node)))
        {
            return;
        }

        var fresh = await _store.GetVolumeAsync(record.Name, cancellationToken).ConfigureAwait(false);
        if (fresh is null || fresh.Primary != Name || fresh.Epoch != volume.PrimaryEpoch)
        {
            return;
        }

        ReplicaRecord[] kept;
        if (IsDraining(Name))
        {
            kept = [.. fresh.Replicas.Where(r => !IsDraining(r.Node) || r.Node == Name)];
        }
        else
        {
            var others = fresh.Replicas
                .Where(r => r.Node != Name && !IsDraining(r.Node) && r.State == ReplicaState.InSync)
                .OrderBy(r => OrdinalOf(r.Node))
                .Take(wanted - 1)
                .ToHashSet();
            kept = [.. fresh.Replicas.Where(r => r.Node == Name || others.Contains(r))];
        }

        if (kept.Length == fresh.Replicas.Count || !await _store.TryUpdateVolumeAsync(fresh with { Replicas = kept }, fresh.Revision, cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        foreach (var removed in fresh.Replicas.Where(r => !kept.Contains(r)))
        {
            if (IsDraining(removed.Node))
            {
                ClusterLog.ReplicaMovedOff(_logger, record.Name, removed.Node);
            }
            else
            {
                ClusterLog.ReplicaBeyondCountRemoved(_logger, record.Name, removed.Node, wanted);
            }
        }
    }
}
