using CsiNvme.Api.V1.Agent;
using CsiNvme.Metadata;
using CsiNvme.Replication;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

public sealed partial class ClusterNode
{
    private readonly Dictionary<string, DateTime> _primaryDownSince = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTime> _quietUntil = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTime> _handoverWaitSince = new(StringComparer.Ordinal);

    internal bool IsDraining(string node) => NodeOf(node)?.AdminState == NodeAdminState.Draining;

    private int OrdinalOf(string node) => node == Name ? Ordinal : NodeOf(node)?.Ordinal ?? int.MaxValue;

    /// <summary>
    /// For every volume whose primary is gone (its lease expired) and of which this node holds an in-sync replica: the
    /// live in-sync replicas line up by ordinal, active nodes before draining ones; the first promotes itself at once,
    /// each next one only after a further <see cref="ClusterNodeOptions.PromotionStagger"/> (in case those before it are
    /// gone too). The promotion itself is one compare-and-swap.
    /// </summary>
    private async Task CheckPromotionsAsync(CancellationToken cancellationToken)
    {
        if (!IsJoined)
        {
            return;
        }

        foreach (var record in _records.Values)
        {
            var mine = record.Replicas.FirstOrDefault(r => r.Node == Name);
            if (mine is null || record.Primary == Name || (record.Primary.Length > 0 && IsLive(record.Primary)))
            {
                _primaryDownSince.Remove(record.Name);
                continue;
            }

            if (mine.State != ReplicaState.InSync)
            {
                continue;
            }

            if (!_primaryDownSince.TryGetValue(record.Name, out var since))
            {
                since = DateTime.UtcNow;
                _primaryDownSince[record.Name] = since;
            }

            var line = record.Replicas
                .Where(r => r.Node != record.Primary && r.State == ReplicaState.InSync && IsLive(r.Node))
                .OrderBy(r => IsDraining(r.Node) ? 1 : 0)
                .ThenBy(r => OrdinalOf(r.Node))
                .Select(r => r.Node)
                .ToList();
            var rank = line.IndexOf(Name);
            if (rank < 0 || DateTime.UtcNow - since < rank * _options.PromotionStagger)
            {
                continue;
            }

            await TryPromoteAsync(record.Name, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task TryPromoteAsync(string name, CancellationToken cancellationToken)
    {
        var fresh = await _store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false);
        var mine = fresh?.Replicas.FirstOrDefault(r => r.Node == Name);
        if (fresh is null || mine is null || mine.State != ReplicaState.InSync || fresh.Primary == Name || (fresh.Primary.Length > 0 && IsLive(fresh.Primary)))
        {
            return;
        }

        var old = fresh.Primary;
        var promoted = fresh with
        {
            Primary = Name,
            Epoch = fresh.Epoch + 1,
            // The old primary may hold changes it applied but never completed: it is rebuilt when it returns.
            Replicas = fresh.Replicas.Select(r => r.Node == old && r.State != ReplicaState.OutOfSync ? r with { State = ReplicaState.OutOfSync } : r).ToArray(),
        };
        if (!await _store.TryUpdateVolumeAsync(promoted, fresh.Revision, cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        var downFor = _primaryDownSince.TryGetValue(name, out var since) ? DateTime.UtcNow - since : TimeSpan.Zero;
        ClusterLog.Promoted(_logger, name, promoted.Epoch, old.Length == 0 ? "(none)" : old, downFor.TotalMilliseconds);
        PrimaryChanged?.Invoke(name, old, Name, downFor, "promotion");
        if (await _store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false) is { } current)
        {
            _records[name] = current;
        }

        await ReconcileAsync(name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Raised when a volume's primary role moved by this node's doing: volume, old primary, new primary, how long the
    /// volume was without a serving primary as this node saw it (zero for a handover), and why ("promotion", "handover").
    /// </summary>
    public event Action<string, string, string, TimeSpan, string>? PrimaryChanged;

    /// <summary>Gives the replication-latency observer of a volume this node becomes primary of (metrics); set before <see cref="StartAsync"/>.</summary>
    public Func<string, IReplicationObserver?>? ReplicationObserverFor { get; set; }

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

    /// <summary>Logs a repeating condition at most once a minute per key.</summary>
    private void Quietly(string key, Action log)
    {
        if (_quietUntil.TryGetValue(key, out var until) && DateTime.UtcNow < until)
        {
            return;
        }

        _quietUntil[key] = DateTime.UtcNow.AddMinutes(1);
        log();
    }
}
