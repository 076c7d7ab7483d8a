using CsiNvme.Api.V1.Agent;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Logs;
using CsiNvme.Replication;
using CsiNvme.Storage.Thin;
using CsiNvme.Volumes;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>What other nodes ask of this one (node_agent.proto): the work on this node's copies.</summary>
public sealed partial class ClusterNode
{
    /// <summary>
    /// What a node answers to a primary-only call for a volume it does not serve as primary; the catalog retries on it
    /// for a while, since right after a handover or promotion the record already names a node that is still taking over.
    /// </summary>
    internal const string NotPrimaryPhrase = "is not the primary of volume";

    private const int VerifyBatchRegions = 16;
    private const int MaxMismatchesReported = 100;

    private ClusterVolume FindVolume(string volumeId)
    {
        var id = ParseId(volumeId);
        return _volumes.Values.FirstOrDefault(v => v.Id == id)
            ?? throw new VolumeException(VolumeError.NotFound, $"node {Name} holds no replica of volume {volumeId}");
    }

    private ClusterVolume FindPrimary(string volumeName)
    {
        if (!_volumes.TryGetValue(volumeName, out var volume) || volume.Role != VolumeRole.Primary || volume.Replicated is null)
        {
            throw new VolumeException(VolumeError.FailedPrecondition, $"node {Name} {NotPrimaryPhrase} {volumeName}");
        }

        return volume;
    }

    private static Guid ParseId(string text) =>
        Guid.TryParse(text, out var id) ? id : throw new VolumeException(VolumeError.InvalidArgument, $"'{text}' is not a volume id");

    /// <summary>Creates this node's copy of a volume (empty or a local clone), pending until a record names this node.</summary>
    public Task<string> PrepareReplicaAsync(PrepareReplicaRequest request)
    {
        var id = ParseId(request.VolumeId);
        if (_volumes.Values.FirstOrDefault(v => v.Id == id) is { } open)
        {
            return Task.FromResult(open.Record.Pool);
        }

        if (FindImage(id) is { } existing)
        {
            return Task.FromResult(existing.Pool);
        }

        var record = new VolumeRecord(id, request.VolumeName, (long)request.SizeBytes, (int)request.BlockSize, false, [], VolumeRules.Now());
        Storage.IBlockVolume storage;
        if (request.SourceSnapshotId.Length > 0 || request.SourceVolumeId.Length > 0)
        {
            var fromSnapshot = request.SourceSnapshotId.Length > 0;
            var sourceId = ParseId(fromSnapshot ? request.SourceSnapshotId : request.SourceVolumeId);
            var source = FindImage(sourceId) ?? throw new VolumeException(VolumeError.NotFound, $"node {Name} holds no {(fromSnapshot ? "snapshot" : "volume")} {sourceId} to clone");
            record = record with { Pool = source.Pool };
            storage = _local.CloneStorage(record, fromSnapshot, sourceId, source.Image.Name);
        }
        else
        {
            record = record with { Pool = _local.Backend.PlaceVolume(string.IsNullOrEmpty(request.Pool) ? null : request.Pool) };
            storage = _local.CreateStorage(record);
        }

        storage.Dispose();
        ClusterLog.ReplicaPrepared(_logger, record.Name, id, record.Pool);
        return Task.FromResult(record.Pool);
    }

    /// <summary>Removes a prepared copy no record names (a create that failed); an exported one stays.</summary>
    public Task DiscardReplicaAsync(DiscardReplicaRequest request)
    {
        var id = ParseId(request.VolumeId);
        if (_volumes.Values.All(v => v.Id != id) && FindImage(id) is { Image.State: ThinImageState.Pending } pending)
        {
            _local.Backend.Delete(pending.Pool, id);
        }

        return Task.CompletedTask;
    }

    private (string Pool, Volumes.Backends.PoolImage Image)? FindImage(Guid id)
    {
        if (_local.Pools is not { } pools)
        {
            return null;
        }

        foreach (var pool in _local.Backend.GetPools())
        {
            if (pools.ListImages(pool.Name).FirstOrDefault(i => i.Id == id) is { } image)
            {
                return (pool.Name, image);
            }
        }

        return null;
    }

    /// <summary>
    /// A snapshot of a volume this node is primary of, at one point of its write order on every in-sync replica: changes
    /// are held while each copy takes its snapshot, then the record lists the nodes that have it.
    /// </summary>
    public async Task<SnapshotVolumeResponse> SnapshotVolumeAsync(SnapshotVolumeRequest request, CancellationToken cancellationToken)
    {
        var volume = FindPrimary(request.VolumeName);
        var snapshotId = ParseId(request.SnapshotId);
        await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var replicated = volume.Replicated ?? throw new VolumeException(VolumeError.FailedPrecondition, $"node {Name} {NotPrimaryPhrase} {request.VolumeName}");
            var record = volume.Record;
            var linked = replicated.Replicas.Where(r => r.Mode == ReplicaMode.InSync).Select(r => r.Node).ToArray();
            var snapshot = new SnapshotRecord(snapshotId, request.SnapshotName, record.Id, record.Name, record.SizeBytes, record.BlockSize, VolumeRules.Now(), record.Pool)
            {
                Labels = new Dictionary<string, string>(request.Labels, StringComparer.Ordinal),
            };
            var nodes = new List<string> { Name };
            await replicated.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            try
            {
                snapshot = snapshot with { SizeBytes = _local.SnapshotStorage(record, snapshot) };
                var replicaTasks = linked.Select(async node =>
                {
                    try
                    {
                        await Agents.For(this, node).SnapshotReplicaAsync(
                            new SnapshotReplicaRequest { VolumeId = record.Id.ToString("D"), SnapshotId = snapshotId.ToString("D"), SnapshotName = request.SnapshotName },
                            Agents.Call(cancellationToken)).ConfigureAwait(false);
                        return node;
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        ClusterLog.SnapshotReplicaFailed(_logger, request.SnapshotName, node, e.Message);
                        return null;
                    }
                }).ToArray();
                nodes.AddRange((await Task.WhenAll(replicaTasks).ConfigureAwait(false)).OfType<string>());
            }
            finally
            {
                replicated.Resume();
            }

            snapshot = snapshot with { Nodes = nodes };
            bool created;
            try
            {
                created = await _store.TryCreateSnapshotAsync(snapshot, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                await DiscardSnapshotImagesAsync(snapshot).ConfigureAwait(false);
                throw new VolumeException(VolumeError.Internal, $"recording snapshot {request.SnapshotName} failed: {e.Message}", e);
            }

            if (!created)
            {
                await DiscardSnapshotImagesAsync(snapshot).ConfigureAwait(false);
                throw new VolumeException(VolumeError.AlreadyExists, $"snapshot {request.SnapshotName} already exists");
            }

            _snapshots[snapshot.Name] = snapshot;
            await CommitSnapshotImagesAsync(cancellationToken).ConfigureAwait(false);
            VolumeLog.SnapshotCreated(_logger, snapshot.Name, snapshot.Id, record.Name, snapshot.SizeBytes, record.Pool);
            var response = new SnapshotVolumeResponse { SizeBytes = (ulong)snapshot.SizeBytes };
            response.Nodes.AddRange(nodes);
            return response;
        }
        finally
        {
            volume.Gate.Release();
        }
    }

    private async Task DiscardSnapshotImagesAsync(SnapshotRecord snapshot)
    {
        DeleteSnapshotImage(snapshot with { Nodes = [Name] });
        foreach (var node in snapshot.Nodes.Where(n => n != Name))
        {
            try
            {
                await Agents.For(this, node).DeleteSnapshotImageAsync(new DeleteSnapshotImageRequest { SnapshotId = snapshot.Id.ToString("D") }, Agents.Call(CancellationToken.None)).ConfigureAwait(false);
            }
            catch (Grpc.Core.RpcException)
            {
                // A pending snapshot image left there is reclaimed by that node's next start.
            }
        }
    }

    /// <summary>This replica's snapshot, asked by the primary while it holds the volume's changes.</summary>
    public Task<SnapshotReplicaResponse> SnapshotReplicaAsync(SnapshotReplicaRequest request)
    {
        var volume = FindVolume(request.VolumeId);
        var record = volume.Record;
        var snapshot = new SnapshotRecord(ParseId(request.SnapshotId), request.SnapshotName, record.Id, record.Name, record.SizeBytes, record.BlockSize, VolumeRules.Now(), record.Pool);
        var size = _local.SnapshotStorage(record, snapshot);
        return Task.FromResult(new SnapshotReplicaResponse { SizeBytes = (ulong)size, Pool = record.Pool });
    }

    public Task DeleteSnapshotImageAsync(DeleteSnapshotImageRequest request)
    {
        var id = ParseId(request.SnapshotId);
        if (FindImage(id) is { } image && image.Image.IsSnapshot)
        {
            _local.SnapshotBackend("snapshots").DeleteSnapshot(image.Pool, id);
        }

        return Task.CompletedTask;
    }

    /// <summary>Grows a volume this node is primary of, on every in-sync replica at one point of the write order.</summary>
    public async Task ResizeVolumeAsync(Api.V1.Agent.ResizeVolumeRequest request, CancellationToken cancellationToken)
    {
        var volume = FindPrimary(request.VolumeName);
        var size = (long)request.SizeBytes;
        await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var replicated = volume.Replicated!;
            if (size <= volume.Storage.SizeBytes)
            {
                return;
            }

            var linked = replicated.Replicas.Where(r => r.Mode != ReplicaMode.OutOfSync).Select(r => r.Node).ToArray();
            await replicated.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            try
            {
                replicated.Resize(size);
                await Task.WhenAll(linked.Select(node => Agents.For(this, node).ResizeReplicaAsync(
                    new ResizeReplicaRequest { VolumeId = volume.Id.ToString("D"), SizeBytes = (ulong)size }, Agents.Call(cancellationToken)).ResponseAsync)).ConfigureAwait(false);
                for (var attempt = 0; ; attempt++)
                {
                    var fresh = await _store.GetVolumeAsync(volume.Name, cancellationToken).ConfigureAwait(false)
                        ?? throw new VolumeException(VolumeError.NotFound, $"volume {volume.Name} not found");
                    if (fresh.SizeBytes >= size || await _store.TryUpdateVolumeAsync(fresh with { SizeBytes = size }, fresh.Revision, cancellationToken).ConfigureAwait(false))
                    {
                        break;
                    }

                    if (attempt > 100)
                    {
                        throw new VolumeException(VolumeError.Internal, $"volume {volume.Name}: its record kept changing while it was resized");
                    }
                }
            }
            finally
            {
                replicated.Resume();
            }

            volume.Record = volume.Record with { SizeBytes = size };
            volume.Host!.Metrics.SetSize(size);
            volume.Host.Subsystem.NotifyNamespaceChanged(VolumeRules.NamespaceId);
            VolumeLog.VolumeResized(_logger, volume.Name, volume.Record.SizeBytes, size);
        }
        finally
        {
            volume.Gate.Release();
        }
    }

    public Task ResizeReplicaAsync(ResizeReplicaRequest request)
    {
        var volume = FindVolume(request.VolumeId);
        if ((long)request.SizeBytes > volume.Storage.SizeBytes)
        {
            volume.Tracked.Resize((long)request.SizeBytes);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Compares every region of the volume on this primary and its in-sync replicas, a few regions at a time with the
    /// changes held, so the copies are read at one point of the write order.
    /// </summary>
    public async Task<Api.V1.Agent.VerifyVolumeResponse> VerifyVolumeAsync(Api.V1.Agent.VerifyVolumeRequest request, CancellationToken cancellationToken)
    {
        var volume = FindPrimary(request.VolumeName);
        var regionSize = request.RegionSize == 0 ? RegionMap.DefaultRegionSize : (int)request.RegionSize;
        if (regionSize < 64 * 1024 || regionSize > 64 << 20 || (regionSize & (regionSize - 1)) != 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"region size {regionSize} must be a power of two from 64 KiB to 64 MiB");
        }

        var replicated = volume.Replicated!;
        var response = new Api.V1.Agent.VerifyVolumeResponse();
        var compared = replicated.Replicas.Where(r => r.Mode == ReplicaMode.InSync).Select(r => r.Node).ToArray();
        response.Nodes.Add(Name);
        response.Nodes.AddRange(compared);
        foreach (var other in replicated.Replicas.Where(r => r.Mode != ReplicaMode.InSync))
        {
            // The replica's link mode spelled as the replica states of the API ("out-of-sync", "rebuilding").
            var state = other.Mode == ReplicaMode.Rebuilding ? ReplicaState.Rebuilding : ReplicaState.OutOfSync;
            response.Skipped.Add($"{other.Node}: {state.Name()}");
        }

        var size = volume.Storage.SizeBytes;
        for (long offset = 0; offset < size; offset += (long)VerifyBatchRegions * regionSize)
        {
            var length = Math.Min((long)VerifyBatchRegions * regionSize, size - offset);
            ulong[] local;
            ulong[][] remote;
            await replicated.PauseAsync().WaitAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            try
            {
                var remoteTasks = compared.Select(node => Agents.ChecksumReplicaAsync(this, node, volume.Id, offset, length, regionSize, cancellationToken)).ToArray();
                local = RegionChecksums.Compute(volume.Tracked, offset, length, regionSize);
                remote = await Task.WhenAll(remoteTasks).ConfigureAwait(false);
            }
            finally
            {
                replicated.Resume();
            }

            for (var i = 0; i < local.Length; i++)
            {
                response.RegionsCompared++;
                if (remote.All(r => i < r.Length && r[i] == local[i]))
                {
                    continue;
                }

                response.MismatchCount++;
                if (response.Mismatches.Count < MaxMismatchesReported)
                {
                    var mismatch = new Api.V1.Agent.VerifyVolumeResponse.Types.Mismatch
                    {
                        Offset = (ulong)(offset + (long)i * regionSize),
                        Length = (ulong)Math.Min(regionSize, size - (offset + (long)i * regionSize)),
                    };
                    mismatch.Checksums.Add(local[i]);
                    mismatch.Checksums.AddRange(remote.Select(r => i < r.Length ? r[i] : 0));
                    response.Mismatches.Add(mismatch);
                }
            }
        }

        return response;
    }

    public Task<ChecksumReplicaResponse> ChecksumReplicaAsync(ChecksumReplicaRequest request) =>
        Task.Run(() =>
        {
            var volume = FindVolume(request.VolumeId);
            var response = new ChecksumReplicaResponse();
            response.Checksums.AddRange(RegionChecksums.Compute(volume.Tracked, (long)request.Offset, (long)request.Length, (int)request.RegionSize));
            return response;
        });

    public Task<UnflushedRegionsResponse> UnflushedRegionsAsync(UnflushedRegionsRequest request)
    {
        var volume = FindVolume(request.VolumeId);
        var map = volume.Tracked.UnflushedRegions();
        return Task.FromResult(new UnflushedRegionsResponse
        {
            RegionSize = (uint)map.RegionSize,
            VolumeSize = (ulong)volume.Storage.SizeBytes,
            Bitmap = ByteString.CopyFrom(map.ToBytes()),
        });
    }

    /// <summary>
    /// Applies the volume's recorded host access on this node and returns once no controller of a host that lost access
    /// is left here and every command such a host had in flight on this node has finished (<see cref="HostFencing"/>).
    /// </summary>
    public async Task ApplyHostAccessAsync(ApplyHostAccessRequest request, CancellationToken cancellationToken)
    {
        var id = ParseId(request.VolumeId);
        var record = _records.Values.FirstOrDefault(r => r.Id == id);
        if (record is not null && await _store.GetVolumeAsync(record.Name, cancellationToken).ConfigureAwait(false) is { } fresh)
        {
            _records[fresh.Name] = fresh;
            await ReconcileAsync(fresh.Name, cancellationToken).ConfigureAwait(false);
        }

        if (_volumes.Values.FirstOrDefault(v => v.Id == id) is not { Host: { } host } volume)
        {
            return;
        }

        await HostFencing.WaitAsync(host.Subsystem.WhenDeniedHostsDrained(), host.Subsystem, volume.Record.Name, cancellationToken, $" on node {Name}").ConfigureAwait(false);
    }

    public Task<VolumeStatus> GetVolumeStatusAsync(GetVolumeStatusRequest request)
    {
        var status = new VolumeStatus { Role = "none", AnaState = "inaccessible" };
        if (_volumes.Values.FirstOrDefault(v => v.Id == ParseId(request.VolumeId)) is not { } volume)
        {
            return Task.FromResult(status);
        }

        status.Role = volume.Role == VolumeRole.Primary ? "primary" : "replica";
        status.AnaState = volume.AnaState switch
        {
            AnaState.Optimized => "optimized",
            AnaState.NonOptimized => "non-optimized",
            AnaState.Change => "change",
            _ => "inaccessible",
        };
        status.Epoch = (ulong)Math.Max(0, volume.PrimaryEpoch);
        status.ConnectedHosts.AddRange(volume.Host?.Subsystem.ConnectedHosts ?? []);
        status.AllocatedBytes = (ulong)_local.Backend.AllocatedBytes(volume.Record.Pool, volume.Id);
        if (volume.Replicated is { } replicated)
        {
            foreach (var replica in replicated.Replicas)
            {
                var entry = new VolumeStatus.Types.ReplicaReplication
                {
                    Node = replica.Node,
                    Mode = replica.Mode.ToString(),
                    DirtyRegions = (ulong)replica.DirtyRegions,
                };
                if (volume.Rebuilds.TryGetValue(replica.Node, out var run) && run.Task is { IsCompleted: false })
                {
                    entry.RebuildRegionsDone = (ulong)run.Progress.RegionsDone;
                    entry.RebuildRegionsTotal = (ulong)run.Progress.RegionsTotal;
                    entry.RebuildBytesCopied = (ulong)run.Progress.BytesCopied;
                    entry.RebuildBytesPerSecond = run.Progress.BytesPerSecond;
                }

                status.Replicas.Add(entry);
            }
        }

        return Task.FromResult(status);
    }

    /// <summary>A snapshot of how this node serves each volume it holds, for metrics.</summary>
    public IReadOnlyList<VolumeServing> VolumeStatuses() =>
        _volumes.Values.Select(v => new VolumeServing(
            v.Name,
            v.Role == VolumeRole.Primary,
            v.Rebuilds.Where(r => r.Value.Task is { IsCompleted: false })
                .Select(r => new RebuildServing(r.Key, r.Value.Progress.RegionsDone, r.Value.Progress.RegionsTotal, r.Value.Progress.BytesPerSecond))
                .ToArray())).ToArray();
}

/// <summary>How this node serves one volume (metrics).</summary>
public sealed record VolumeServing(string Name, bool IsPrimary, IReadOnlyList<RebuildServing> Rebuilds);

/// <summary>A rebuild this node runs (metrics).</summary>
public sealed record RebuildServing(string Node, long Done, long Total, double BytesPerSecond);
