using CsiNvme.Api;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Logs;
using CsiNvme.Replication;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;
using CsiNvme.Target.Subsystems;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Local;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

public sealed partial class ClusterNode
{
    /// <summary>
    /// Makes this node's part of a volume match its record: the copy opened (or created empty and recorded out of sync
    /// when it is missing), both subsystems exported, hosts, size, peers and fence current, and the role the record
    /// gives this node taken. A volume this node no longer holds is torn down and its copy removed.
    /// </summary>
    internal async Task ReconcileAsync(string name, CancellationToken cancellationToken)
    {
        var record = RecordOf(name);
        var mine = record?.Replicas.FirstOrDefault(r => r.Node == Name);
        _volumes.TryGetValue(name, out var volume);
        if (volume is not null && (mine is null || volume.Id != record!.Id))
        {
            await RemoveAsync(volume, record is null ? "the volume was deleted" : mine is null ? "its replica moved off this node" : "the volume was recreated", cancellationToken).ConfigureAwait(false);
            volume = null;
        }

        if (mine is null || record is null)
        {
            return;
        }

        if (volume is null)
        {
            // The watch loop and the checks both reconcile: one opens, the other finds it open.
            await _openGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!_volumes.TryGetValue(name, out volume))
                {
                    volume = await OpenAsync(record, mine, cancellationToken).ConfigureAwait(false);
                }
            }
            finally
            {
                _openGate.Release();
            }

            if (volume is null)
            {
                return;
            }
        }

        await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // The record may have changed while waiting; always apply the latest.
            var latest = RecordOf(name);
            if (latest is null || latest.Id != volume.Id || latest.Replicas.All(r => r.Node != Name))
            {
                return;
            }

            await ApplyRecordAsync(volume, latest, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            ClusterLog.ReconcileFailed(_logger, name, e);
        }
        finally
        {
            volume.Gate.Release();
        }
    }

    private static VolumeRecord Here(VolumeRecord record, ReplicaRecord mine) => record with { Pool = mine.Pool };

    /// <summary>Opens (or creates) this node's copy and exports it; null when that failed (logged, retried on the next change).</summary>
    private async Task<ClusterVolume?> OpenAsync(VolumeRecord record, ReplicaRecord mine, CancellationToken cancellationToken)
    {
        var here = Here(record, mine);
        IBlockVolume storage;
        var missing = false;
        try
        {
            storage = _local.Backend.Open(mine.Pool, record.Id, record.BlockSize);
        }
        catch (Exception e) when (LocalVolumes.IsStorageFailure(e) || e is FileNotFoundException)
        {
            // The record names this node but its copy is gone (a replaced node, a lost pool): start empty, never in sync.
            ClusterLog.ReplicaMissing(_logger, record.Name, mine.Pool, e.Message);
            var pool = string.IsNullOrEmpty(mine.Pool) ? _local.Backend.PlaceVolume(null) : mine.Pool;
            here = here with { Pool = pool };
            try
            {
                storage = _local.CreateStorage(here);
            }
            catch (VolumeException create)
            {
                ClusterLog.ReconcileFailed(_logger, record.Name, create);
                return null;
            }

            missing = true;
        }

        if (storage.SizeBytes < record.SizeBytes)
        {
            storage.Resize(record.SizeBytes);
        }

        // The record names this node: its image is no longer a pending create that a restart may reclaim.
        _local.SettleState(here.Pool, record.Id, "volume", record.Name, ThinImageState.Committed);
        var volume = new ClusterVolume(here, storage);
        // A node start is no power loss of the volume (the other nodes kept serving it): the reservations stay as saved.
        var reservations = await LocalVolumes.LoadReservationsAsync(_store, record.Id, powerOn: false, cancellationToken).ConfigureAwait(false);
        volume.Host = _local.Export(here, storage, reservations, volume.Switch, ClusterNodeOptions.AnaGroupOf(Ordinal), AnaState.Inaccessible);
        var replica = new Subsystem(volume.ReplicaNqn, VolumeRules.SerialNumberOf(record.Id), allowAnyHost: false, StorageNodeHosts()) { Fence = volume.Fence };
        replica.AddNamespace(new TargetNamespace(VolumeRules.NamespaceId, volume.Tracked, record.Id));
        _local.Target.AddSubsystem(replica);
        volume.ReplicaSubsystem = replica;
        _volumes[record.Name] = volume;
        ClusterLog.ReplicaOpened(_logger, record.Name, record.Id, mine.Pool, mine.State.ToString());
        if (missing && mine.State != ReplicaState.OutOfSync)
        {
            await ReportOwnReplicaOutOfSyncAsync(record.Name, "its copy was missing on this node", cancellationToken).ConfigureAwait(false);
        }

        return volume;
    }

    /// <summary>Host NQNs of every storage node known to the cluster: who may connect to a replica subsystem.</summary>
    private IEnumerable<string> StorageNodeHosts() =>
        _nodes.Keys.Append(Name).Distinct(StringComparer.Ordinal).Select(n => VolumeNaming.StorageNodeHostNqn(_store.ClusterId, n));

    private async Task ApplyRecordAsync(ClusterVolume volume, VolumeRecord record, CancellationToken cancellationToken)
    {
        var mine = record.Replicas.First(r => r.Node == Name);
        var previous = volume.Record;
        var here = Here(record, mine) with { Pool = previous.Pool.Length > 0 ? previous.Pool : mine.Pool };
        volume.Record = here;
        volume.Host!.Record = here;

        // Size: grown on every node (the primary grew its own and its in-sync replicas' already, in the write order).
        if (record.SizeBytes > volume.Storage.SizeBytes)
        {
            volume.Storage.Resize(record.SizeBytes);
        }

        if (record.SizeBytes != previous.SizeBytes)
        {
            volume.Host.Metrics.SetSize(record.SizeBytes);
            volume.Host.Subsystem.NotifyNamespaceChanged(VolumeRules.NamespaceId);
            volume.ReplicaSubsystem!.NotifyNamespaceChanged(VolumeRules.NamespaceId);
        }

        ApplyHostAccess(volume, record);
        HostSecrets.Apply(volume.Host!.Subsystem, record, _local.Secrets, _logger);
        HostTlsPsks.Apply(volume.Host!.Subsystem, record, _local.Secrets, _logger);

        // Peers: every other replica node's listeners as hosts reach them, in the discovery log of this node's path.
        var peers = record.Replicas
            .Where(r => r.Node != Name)
            .SelectMany(r => HostListenersOf(r.Node).Select((endpoint, i) => new PeerPort(endpoint, (ushort)(ClusterNodeOptions.PortIdBaseOf(NodeOf(r.Node)?.Ordinal ?? 0) + i))))
            .ToArray();
        if (volume.Host.Subsystem.SetPeerPorts(peers))
        {
            _local.Target.NotifyDiscoveryChanged();
        }

        foreach (var host in StorageNodeHosts())
        {
            volume.ReplicaSubsystem!.AllowHost(host);
        }

        // A promotion elsewhere: fence the older primary's replication connections to this node at once.
        if (volume.Fence.Raise(record.Epoch))
        {
            volume.ReplicaSubsystem!.FenceBelow(record.Epoch);
        }

        if (record.Primary == Name)
        {
            if (volume.Role == VolumeRole.Primary && volume.PrimaryEpoch != record.Epoch)
            {
                await DemoteAsync(volume, $"epoch changed from {volume.PrimaryEpoch} to {record.Epoch}").ConfigureAwait(false);
            }

            if (volume.Role != VolumeRole.Primary)
            {
                await BecomePrimaryAsync(volume, record, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await SyncReplicasAsync(volume, record).ConfigureAwait(false);
            }
        }
        else if (volume.Role == VolumeRole.Primary)
        {
            await DemoteAsync(volume, record.Primary.Length == 0 ? "the volume has no primary" : $"{record.Primary} is primary at epoch {record.Epoch}").ConfigureAwait(false);
        }
    }

    /// <summary>Allowed hosts and allow-any-host as recorded; a removed host's controllers are torn down here.</summary>
    private static void ApplyHostAccess(ClusterVolume volume, VolumeRecord record)
    {
        var subsystem = volume.Host!.Subsystem;
        var wanted = record.AllowedHosts.ToHashSet(StringComparer.Ordinal);
        foreach (var host in wanted)
        {
            subsystem.AllowHost(host);
        }

        if (subsystem.AllowAnyHost != record.AllowAnyHost)
        {
            subsystem.SetAllowAnyHost(record.AllowAnyHost);
        }

        foreach (var host in subsystem.AllowedHosts.Where(h => !wanted.Contains(h)).ToArray())
        {
            subsystem.DenyHost(host);
        }
    }

    /// <summary>
    /// Takes the primary role at the record's epoch: the fence is already raised, so the older primary's replication here
    /// is refused. Connects to every in-sync replica with the new epoch (which fences the older primary there too),
    /// copies to them the regions any of them changed since its last flush, then serves: ANA optimized, with a change
    /// notice to every host.
    /// </summary>
    private async Task BecomePrimaryAsync(ClusterVolume volume, VolumeRecord record, CancellationToken cancellationToken)
    {
        if (!IsJoined)
        {
            return;
        }

        var epoch = record.Epoch;
        var recorder = new ReplicaStateRecorder(_store, record.Name, Name, epoch);
        var replicated = new ReplicatedVolume(volume.Tracked, _lease, recorder, _options.Replication, _loggerFactory.CreateLogger<ReplicatedVolume>())
        {
            Observer = ReplicationObserverFor?.Invoke(record.Name),
        };
        volume.UnknownDirty.Clear();
        var linked = new List<string>();
        foreach (var replica in record.Replicas.Where(r => r.Node != Name))
        {
            ReplicaLink? link = null;
            if (replica.State == ReplicaState.InSync && IsLive(replica.Node))
            {
                link = await TryLinkAsync(volume, replica.Node, epoch, cancellationToken).ConfigureAwait(false);
                if (link is null)
                {
                    try
                    {
                        await recorder.MarkOutOfSyncAsync(replica.Node, "unreachable when this node became primary", cancellationToken).ConfigureAwait(false);
                    }
                    catch (NotPrimaryException e)
                    {
                        ClusterLog.PromotionAbandoned(_logger, record.Name, e.Message);
                        replicated.Dispose();
                        return;
                    }
                }
            }

            if (link is null)
            {
                replicated.AddReplica(replica.Node, ReplicaMode.OutOfSync, null);
                volume.UnknownDirty[replica.Node] = true;
            }
            else
            {
                replicated.AddReplica(replica.Node, ReplicaMode.InSync, link);
                linked.Add(replica.Node);
            }
        }

        await ResyncAfterPromotionAsync(volume, replicated, linked, cancellationToken).ConfigureAwait(false);

        // The reservations the old primary saved (registrations, the holder) are the ones this path enforces from now on.
        if (volume.Host!.Namespace.Reservations is { } reservations)
        {
            await reservations.ReloadAsync(powerOn: false, cancellationToken).ConfigureAwait(false);
        }

        replicated.ReplicaDropped += (_, _, _) => _wake.Release();
        volume.Replicated = replicated;
        volume.Recorder = recorder;
        volume.PrimaryEpoch = epoch;
        volume.Role = VolumeRole.Primary;
        volume.Switch.SwitchTo(replicated);
        volume.Host!.Subsystem.SetAnaState(AnaState.Optimized);
        ClusterLog.BecamePrimary(_logger, record.Name, epoch, string.Join(",", linked));
        _wake.Release();
    }

    /// <summary>
    /// A change in flight when the old primary failed may have reached some replicas and not others; each replica knows
    /// what it changed since its last flush, which covers any such change, so the union of those regions is copied from
    /// this node's copy to every linked replica before any host writes.
    /// </summary>
    private async Task ResyncAfterPromotionAsync(ClusterVolume volume, ReplicatedVolume replicated, List<string> linked, CancellationToken cancellationToken)
    {
        var union = volume.Tracked.UnflushedRegions();
        foreach (var node in linked.ToArray())
        {
            try
            {
                var regions = await Agents.UnflushedRegionsAsync(this, node, volume.Id, cancellationToken).ConfigureAwait(false);
                if (regions is not null)
                {
                    union.Grow(regions.RegionCount * (long)regions.RegionSize);
                    union.UnionWith(regions);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                ClusterLog.ResyncQueryFailed(_logger, volume.Name, node, e.Message);
            }
        }

        var count = union.MarkedCount;
        if (count == 0 || linked.Count == 0)
        {
            return;
        }

        foreach (var node in linked)
        {
            foreach (var region in union.Marked())
            {
                var start = region * union.RegionSize;
                var end = Math.Min(start + union.RegionSize, volume.Storage.SizeBytes);
                for (var offset = start; offset < end; offset += _options.Rebuild.ChunkSize)
                {
                    var length = (int)Math.Min(_options.Rebuild.ChunkSize, end - offset);
                    if (!await replicated.CopyAsync(node, offset, length).ConfigureAwait(false))
                    {
                        // The replica dropped out: it is recorded out of sync and rebuilt later.
                        break;
                    }
                }
            }
        }

        ClusterLog.PromotionResynced(_logger, volume.Name, count, linked.Count);
    }

    private async Task<ReplicaLink?> TryLinkAsync(ClusterVolume volume, string node, long epoch, CancellationToken cancellationToken)
    {
        // A few tries: the replica node may not have exported the volume yet (it learns of a new record at about the
        // same moment as this node), or may be restarting.
        for (var attempt = 0; attempt < LinkAttempts; attempt++)
        {
            foreach (var endpoint in ListenersOf(node))
            {
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(TimeSpan.FromSeconds(10));
                    return await ReplicaLink.ConnectAsync(node, endpoint, volume.ReplicaNqn, epoch, LinkOptions(), _loggerFactory, timeout.Token).ConfigureAwait(false);
                }
                catch (ReplicaFencedException e)
                {
                    // The replica has seen a newer epoch: this node is no longer primary there.
                    ClusterLog.LinkFailed(_logger, volume.Name, node, e.Message);
                    return null;
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    if (attempt == LinkAttempts - 1)
                    {
                        ClusterLog.LinkFailed(_logger, volume.Name, node, e.Message);
                    }
                }
            }

            if (!IsLive(node))
            {
                return null;
            }

            await Task.Delay(LinkRetryDelay, cancellationToken).ConfigureAwait(false);
        }

        return null;
    }

    private const int LinkAttempts = 10;
    private static readonly TimeSpan LinkRetryDelay = TimeSpan.FromMilliseconds(200);

    /// <summary>Replicas added to or removed from the record while this node is primary.</summary>
    private async Task SyncReplicasAsync(ClusterVolume volume, VolumeRecord record)
    {
        var replicated = volume.Replicated!;
        var present = replicated.Replicas.Select(r => r.Node).ToHashSet(StringComparer.Ordinal);
        foreach (var replica in record.Replicas.Where(r => r.Node != Name && !present.Contains(r.Node)))
        {
            // A new replica (a move, a replacement): what it holds is unknown, so it is compared before the rebuild.
            replicated.AddReplica(replica.Node, ReplicaMode.OutOfSync, null);
            volume.UnknownDirty[replica.Node] = true;
            _wake.Release();
        }

        foreach (var gone in present.Where(n => record.Replicas.All(r => r.Node != n)).ToArray())
        {
            if (volume.Rebuilds.TryRemove(gone, out var run))
            {
                await run.Cancel.CancelAsync().ConfigureAwait(false);
            }

            await replicated.RemoveReplicaAsync(gone).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops serving as primary: the path goes inaccessible (hosts move to the new primary), new changes are refused,
    /// those in flight finish, then the copy is served alone again (behind the inaccessible path).
    /// </summary>
    private async Task DemoteAsync(ClusterVolume volume, string reason)
    {
        volume.Host?.Subsystem.SetAnaState(AnaState.Inaccessible);
        if (volume.Replicated is { } replicated)
        {
            foreach (var run in volume.Rebuilds.Values)
            {
                await run.Cancel.CancelAsync().ConfigureAwait(false);
            }

            volume.Rebuilds.Clear();
            try
            {
                await replicated.CloseAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                ClusterLog.DemoteSlow(_logger, volume.Name);
            }

            volume.Switch.SwitchTo(volume.Tracked);
            replicated.Dispose();
        }

        volume.Replicated = null;
        volume.Recorder = null;
        volume.Role = VolumeRole.Replica;
        volume.PrimaryEpoch = 0;
        ClusterLog.Demoted(_logger, volume.Name, reason);
    }

    /// <summary>Tears this node's part of a volume down and removes its copy.</summary>
    private async Task RemoveAsync(ClusterVolume volume, string reason, CancellationToken cancellationToken)
    {
        await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (volume.Role == VolumeRole.Primary)
            {
                await DemoteAsync(volume, reason).ConfigureAwait(false);
            }

            if (volume.Host is { } host)
            {
                _local.Unexport(host);
            }

            if (volume.ReplicaSubsystem is { } replica)
            {
                _local.Target.RemoveSubsystem(replica.Nqn);
            }

            _volumes.TryRemove(volume.Name, out _);
            var record = volume.Record;
            try
            {
                _local.MarkDeleting(record.Pool, record.Id, "volume", record.Name);
            }
            catch (VolumeException e)
            {
                ClusterLog.ReconcileFailed(_logger, record.Name, e);
            }

            _local.DiscardStorage("removal", record, volume.Storage);
            ClusterLog.ReplicaRemoved(_logger, record.Name, record.Id, reason);
        }
        finally
        {
            volume.Gate.Release();
        }
    }

    /// <summary>This node found its own copy unusable: records its replica out of sync (not as primary: any node may say this of itself).</summary>
    private async Task ReportOwnReplicaOutOfSyncAsync(string name, string reason, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var record = await _store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false);
            var mine = record?.Replicas.FirstOrDefault(r => r.Node == Name);
            if (record is null || mine is null || mine.State == ReplicaState.OutOfSync)
            {
                return;
            }

            var updated = record with { Replicas = record.Replicas.Select(r => r.Node == Name ? r with { State = ReplicaState.OutOfSync } : r).ToArray() };
            if (await _store.TryUpdateVolumeAsync(updated, record.Revision, cancellationToken).ConfigureAwait(false))
            {
                ClusterLog.OwnReplicaOutOfSync(_logger, name, reason);
                return;
            }
        }
    }

    /// <summary>Snapshot images this node holds become committed once their record exists.</summary>
    private Task CommitSnapshotImagesAsync(CancellationToken cancellationToken)
    {
        if (_local.Pools is not { } pools)
        {
            return Task.CompletedTask;
        }

        foreach (var snapshot in _snapshots.Values.Where(s => s.Nodes.Contains(Name)))
        {
            foreach (var pool in _local.Backend.GetPools())
            {
                var image = pools.ListImages(pool.Name).FirstOrDefault(i => i.Id == snapshot.Id);
                if (image is not null && image.State != ThinImageState.Committed)
                {
                    _local.SettleState(pool.Name, snapshot.Id, "snapshot", snapshot.Name, ThinImageState.Committed);
                }
            }
        }

        return Task.CompletedTask;
    }

    private void DeleteSnapshotImage(SnapshotRecord snapshot)
    {
        if (_local.Pools is not { } pools || !snapshot.Nodes.Contains(Name))
        {
            return;
        }

        foreach (var pool in _local.Backend.GetPools())
        {
            if (pools.ListImages(pool.Name).Any(i => i.Id == snapshot.Id))
            {
                _local.DiscardSnapshot(snapshot with { Pool = pool.Name });
            }
        }
    }
}
