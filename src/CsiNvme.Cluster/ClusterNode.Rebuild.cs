using CsiNvme.Metadata;
using CsiNvme.Replication;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

public sealed partial class ClusterNode
{
    private static readonly TimeSpan _rebuildRetry = TimeSpan.FromSeconds(3);

    /// <summary>Regions compared per pause when a replica's dirty map is unknown: small, so the pause stays short.</summary>
    private const int ChecksumBatchRegions = 16;

    /// <summary>Starts a rebuild for every replica out of sync on a live node that has none running (primary only).</summary>
    private void StartRebuilds(ClusterVolume volume, VolumeRecord record)
    {
        foreach (var replica in record.Replicas)
        {
            if (replica.Node == Name || replica.State == ReplicaState.InSync || !IsLive(replica.Node) || IsDraining(replica.Node) && record.Replicas.Count > Math.Max(1, record.ReplicaCount))
            {
                continue;
            }

            if (volume.Rebuilds.TryGetValue(replica.Node, out var running) && running.Task is { IsCompleted: false })
            {
                continue;
            }

            if (volume.RebuildRetryAt.TryGetValue(replica.Node, out var retryAt) && DateTime.UtcNow < retryAt)
            {
                continue;
            }

            var run = new RebuildRun();
            volume.Rebuilds[replica.Node] = run;
            var node = replica.Node;
            var epoch = volume.PrimaryEpoch;
            run.Task = Task.Run(() => RebuildAsync(volume, node, epoch, run), CancellationToken.None);
            _ = run.Task.ContinueWith(_ => _wake.Release(), TaskScheduler.Default);
        }
    }

    /// <summary>
    /// Brings one replica back: links it with this primary's epoch, records it rebuilding, lets it receive every change,
    /// finds what differs (the dirty map when this primary saw what it missed, checksums per region otherwise), copies
    /// and verifies that (<see cref="RebuildJob"/>), then records it in sync.
    /// </summary>
    private async Task<RebuildResult> RebuildAsync(ClusterVolume volume, string node, long epoch, RebuildRun run)
    {
        var cancel = run.Cancel.Token;
        var failed = new RebuildResult(false, 0, 0, 0, TimeSpan.Zero, null);
        if (volume.Replicated is not { } replicated || volume.Recorder is not { } recorder || volume.PrimaryEpoch != epoch)
        {
            return failed;
        }

        var link = await TryLinkAsync(volume, node, epoch, cancel).ConfigureAwait(false);
        if (link is null)
        {
            volume.RebuildRetryAt[node] = DateTime.UtcNow + _rebuildRetry;
            return failed;
        }

        try
        {
            replicated.StartRebuilding(node, link);
        }
        catch (InvalidOperationException e)
        {
            await link.DisposeAsync().ConfigureAwait(false);
            ClusterLog.RebuildFailed(_logger, volume.Name, node, e.Message);
            volume.RebuildRetryAt[node] = DateTime.UtcNow + _rebuildRetry;
            return failed;
        }

        try
        {
            await recorder.MarkRebuildingAsync(node, cancel).ConfigureAwait(false);
            if (volume.UnknownDirty.ContainsKey(node))
            {
                await CompareByChecksumsAsync(volume, replicated, node, cancel).ConfigureAwait(false);
                volume.UnknownDirty.TryRemove(node, out _);
            }

            var job = new RebuildJob(replicated, node, _options.Rebuild, _loggerFactory.CreateLogger<RebuildJob>());
            var progress = new Progress<RebuildProgress>(p =>
            {
                run.Progress = p;
                RebuildProgressed?.Invoke(volume.Name, node, p);
            });
            var result = await job.RunAsync(progress, cancel).ConfigureAwait(false);
            if (!result.Succeeded)
            {
                volume.RebuildRetryAt[node] = DateTime.UtcNow + _rebuildRetry;
                await TryMarkOutOfSyncAsync(recorder, node, "its rebuild failed").ConfigureAwait(false);
                return result;
            }

            replicated.MarkInSync(node);
            await recorder.MarkInSyncAsync(node, cancel).ConfigureAwait(false);
            ClusterLog.ReplicaInSync(_logger, volume.Name, node, result.RegionsCopied, result.BytesCopied, result.Duration.TotalSeconds);
            RebuildFinished?.Invoke(volume.Name, node, result);
            return result;
        }
        catch (Exception e) when (e is NotPrimaryException or OperationCanceledException or InvalidOperationException or IOException or Grpc.Core.RpcException)
        {
            ClusterLog.RebuildFailed(_logger, volume.Name, node, e.Message);
            volume.RebuildRetryAt[node] = DateTime.UtcNow + _rebuildRetry;
            await replicated.RemoveReplicaAsync(node).ConfigureAwait(false);
            if (RecordOf(volume.Name)?.Replicas.Any(r => r.Node == node) == true && volume.Replicated == replicated)
            {
                replicated.AddReplica(node, ReplicaMode.OutOfSync, null);
                volume.UnknownDirty[node] = true;
            }

            await TryMarkOutOfSyncAsync(recorder, node, "its rebuild failed").ConfigureAwait(false);
            return failed;
        }
    }

    private async Task TryMarkOutOfSyncAsync(ReplicaStateRecorder recorder, string node, string reason)
    {
        try
        {
            await recorder.MarkOutOfSyncAsync(node, reason, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NotPrimaryException or InvalidOperationException or IOException)
        {
            // No longer primary, or the store is away: the next primary or the next check records it.
        }
    }

    /// <summary>
    /// For a replica whose dirty map is unknown: compares the checksums of every region on both copies, a few regions
    /// at a time with the volume's changes held (so both copies are read at one point of the write order), and leaves
    /// marked only the regions that differ. A new replica thus gets only the regions that are not zero on the primary.
    /// </summary>
    private async Task CompareByChecksumsAsync(ClusterVolume volume, ReplicatedVolume replicated, string node, CancellationToken cancellationToken)
    {
        var dirty = replicated.DirtyRegions(node);
        var regionSize = dirty.RegionSize;
        var size = volume.Storage.SizeBytes;
        long differing = 0;
        for (long region = 0; region * regionSize < size; region += ChecksumBatchRegions)
        {
            var offset = region * regionSize;
            var length = Math.Min((long)ChecksumBatchRegions * regionSize, size - offset);
            ulong[] local;
            ulong[] remote;
            await replicated.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            try
            {
                var remoteTask = Agents.ChecksumReplicaAsync(this, node, volume.Id, offset, length, regionSize, cancellationToken);
                local = RegionChecksums.Compute(volume.Tracked, offset, length, regionSize);
                remote = await remoteTask.ConfigureAwait(false);
            }
            finally
            {
                replicated.Resume();
            }

            for (var i = 0; i < local.Length; i++)
            {
                if (i < remote.Length && local[i] == remote[i])
                {
                    dirty.Clear(region + i);
                }
                else
                {
                    dirty.MarkRegion(region + i);
                    differing++;
                }
            }
        }

        ClusterLog.ChecksumCompared(_logger, volume.Name, node, dirty.RegionCount, differing);
    }

    /// <summary>Progress of a rebuild this node runs: volume, replica node, progress.</summary>
    public event Action<string, string, RebuildProgress>? RebuildProgressed;

    /// <summary>A rebuild this node ran finished and the replica is in sync: volume, replica node, result.</summary>
    public event Action<string, string, RebuildResult>? RebuildFinished;
}
