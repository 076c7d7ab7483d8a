using System.Collections.Concurrent;
using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;
using CsiNvme.Volumes.Local;
using CsiNvme.Volumes.Pools;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes.Catalog;

/// <summary>
/// The volumes of a single storage server: records in its metadata store (embedded SQLite by default), each served by
/// this node (<see cref="LocalVolumes"/>). A record, its storage and its subsystem are created, changed and removed
/// together here. Mutations are serialized; reads are lock-free snapshots.
/// </summary>
public sealed class VolumeCatalog : IVolumeCatalog
{
    private readonly IMetadataStore _store;
    private readonly LocalVolumes _local;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _mutation = new(1, 1);
    private readonly ConcurrentDictionary<string, SnapshotRecord> _snapshots = new(StringComparer.Ordinal);

    public VolumeCatalog(IMetadataStore store, LocalVolumes local, ILogger<VolumeCatalog> logger)
    {
        _store = store;
        _local = local;
        _logger = logger;
    }

    public int Count => _local.Count;

    public int SnapshotCount => _snapshots.Count;

    /// <summary>
    /// Re-opens and exports every volume of the metadata store (server start). With pools, the store and the pools must
    /// agree first (<see cref="PoolReconciliation"/>); <paramref name="recoverMetadata"/> rebuilds the records the store
    /// lacks from the pools before that.
    /// </summary>
    public async Task LoadAsync(bool recoverMetadata = false, CancellationToken cancellationToken = default)
    {
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            PoolReconciliation? reconciliation = null;
            if (_local.Pools is { } pools)
            {
                reconciliation = new PoolReconciliation(_store, _local.Backend, pools, _logger);
                await reconciliation.PrepareAsync(recoverMetadata, cancellationToken);
            }
            else if (recoverMetadata)
            {
                throw new InvalidOperationException($"--recover-metadata rebuilds records from thin pools; the {_local.BackendName} backend has none");
            }

            foreach (var stored in await _store.ListVolumesAsync(cancellationToken))
            {
                var record = stored;
                var storage = _local.OpenStorage(record);
                try
                {
                    record = await ReconcileSizeAsync(record, storage);
                    _local.Export(record, storage, await LocalVolumes.LoadReservationsAsync(_store, record.Id, powerOn: true, cancellationToken));
                }
                catch
                {
                    storage.Dispose();
                    throw;
                }

                VolumeLog.VolumeLoaded(_logger, record.Name, record.Id, record.SizeBytes, VolumeNaming.SubsystemNqn(record.Id));
            }

            foreach (var snapshot in await _store.ListSnapshotsAsync(cancellationToken))
            {
                _snapshots[snapshot.Name] = snapshot;
            }

            if (reconciliation is not null)
            {
                await reconciliation.FinishAsync(_local.All.Select(v => v.Record).ToArray(), _snapshots.Values.ToArray(), cancellationToken);
            }
            else if (!_snapshots.IsEmpty)
            {
                throw new InvalidOperationException(
                    $"the metadata store has {_snapshots.Count} snapshots (e.g. {_snapshots.Keys.First()}), which the {_local.BackendName} backend cannot serve; start with --backend thin");
            }
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> CreateAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        var name = request.Name;
        VolumeRules.ValidateName(name);
        var labels = VolumeRules.ValidateLabels(request.Labels);
        var sourceSnapshot = string.IsNullOrEmpty(request.SourceSnapshot) ? null : request.SourceSnapshot;
        var sourceVolume = string.IsNullOrEmpty(request.SourceVolume) ? null : request.SourceVolume;
        if (sourceSnapshot is not null && sourceVolume is not null)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "give either a source snapshot or a source volume, not both");
        }

        if (sourceSnapshot is not null)
        {
            VolumeRules.ValidateName(sourceSnapshot, "source snapshot");
        }

        if (sourceVolume is not null)
        {
            VolumeRules.ValidateName(sourceVolume, "source volume");
        }

        if (request.Replicas > 1)
        {
            throw ReplicasNeedACluster(request.Replicas);
        }

        var isClone = sourceSnapshot is not null || sourceVolume is not null;
        var sizeBytes = isClone && request.SizeBytes == 0 ? 0 : VolumeRules.RoundSize(request.SizeBytes);
        var effectiveBlockSize = VolumeRules.ValidateBlockSize(request.BlockSize);
        var hosts = VolumeRules.ValidateHosts(request.AllowedHosts);
        var pool = request.Pool;

        await _mutation.WaitAsync(cancellationToken);
        try
        {
            if (_local.TryGet(name) is { } existing)
            {
                var r = existing.Record;
                throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists (id {r.Id}, {r.SizeBytes} bytes)");
            }

            var id = Guid.NewGuid();
            var createdAt = VolumeRules.Now();
            VolumeRecord RecordIn(string inPool, long size, int blockSize) =>
                new(id, name, size, blockSize, request.AllowAnyHost, hosts, createdAt) { Pool = inPool, Labels = labels };
            IBlockVolume storage;
            VolumeRecord record;
            if (isClone)
            {
                Guid sourceId;
                string sourceName, sourcePool, kind;
                long sourceSize;
                int sourceBlockSize;
                if (sourceSnapshot is not null)
                {
                    _local.SnapshotBackend("cloning a snapshot");
                    var snapshot = FindSnapshot(sourceSnapshot);
                    (sourceId, sourceName, sourcePool, sourceSize, sourceBlockSize, kind) =
                        (snapshot.Id, snapshot.Name, snapshot.Pool, snapshot.SizeBytes, snapshot.BlockSize, "snapshot");
                }
                else
                {
                    _local.SnapshotBackend("cloning a volume");
                    var volume = _local.Find(sourceVolume!).Record;
                    (sourceId, sourceName, sourcePool, sourceSize, sourceBlockSize, kind) =
                        (volume.Id, volume.Name, volume.Pool, volume.SizeBytes, volume.BlockSize, "volume");
                }

                if (!string.IsNullOrEmpty(pool) && pool != sourcePool)
                {
                    throw new VolumeException(
                        VolumeError.FailedPrecondition,
                        $"{kind} {sourceName} is in pool {sourcePool}; a clone shares its clusters and must be in the same pool, not {pool}");
                }

                if (sizeBytes == 0)
                {
                    sizeBytes = sourceSize;
                }
                else if (sizeBytes < sourceSize)
                {
                    throw new VolumeException(
                        VolumeError.InvalidArgument,
                        $"a clone must be at least as large as its source: {kind} {sourceName} is {sourceSize} bytes ({ByteSize.Format(sourceSize)}), {sizeBytes} asked");
                }

                if (request.BlockSize == 0)
                {
                    effectiveBlockSize = sourceBlockSize;
                }

                record = RecordIn(sourcePool, sizeBytes, effectiveBlockSize);
                storage = _local.CloneStorage(record, sourceSnapshot is not null, sourceId, sourceName);
            }
            else
            {
                record = RecordIn(_local.Backend.PlaceVolume(pool), sizeBytes, effectiveBlockSize);
                storage = _local.CreateStorage(record);
            }

            bool created;
            try
            {
                created = await _store.TryCreateVolumeAsync(record, CancellationToken.None);
            }
            catch (Exception e)
            {
                _local.DiscardStorage("create", record, storage);
                throw new VolumeException(VolumeError.Internal, $"recording volume {name} in the metadata store failed: {e.Message}", e);
            }

            if (!created)
            {
                _local.DiscardStorage("create", record, storage);
                throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists in the metadata store");
            }

            // Until here a crash leaves a pending image that the next start reclaims: the create was never acknowledged.
            _local.SettleState(record.Pool, id, "volume", name, ThinImageState.Committed);
            var local = _local.Export(record, storage, await LocalVolumes.LoadReservationsAsync(_store, record.Id, powerOn: true, CancellationToken.None));
            VolumeLog.VolumeCreated(_logger, name, id, sizeBytes, (long)request.SizeBytes, effectiveBlockSize, local.Subsystem.Nqn);
            if (isClone)
            {
                VolumeLog.VolumeCloned(_logger, name, sourceSnapshot is not null ? "snapshot" : "volume", sourceSnapshot ?? sourceVolume!, record.Pool);
            }

            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public Task<Volume> GetAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        return Task.FromResult(_local.Describe(_local.Find(name)));
    }

    public Task<Volume> SetReplicaCountAsync(string name, uint replicas, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateReplicaCount(replicas);
        var volume = _local.Find(name);
        if (replicas > 1)
        {
            throw ReplicasNeedACluster(replicas);
        }

        return Task.FromResult(_local.Describe(volume));
    }

    private static VolumeException ReplicasNeedACluster(uint replicas) => new(
        VolumeError.FailedPrecondition,
        $"{replicas} replicas need a storage cluster; this is a single storage server (start the servers with --etcd-endpoints to form one)");

    public Task<IReadOnlyList<Volume>> ListAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<Volume>>(_local.All.OrderBy(v => v.Record.Name, StringComparer.Ordinal).Select(_local.Describe).ToArray());

    public async Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;

            // The subsystem goes first: it tears down the controllers, so no host keeps writing to a volume
            // whose record is gone.
            _local.Unexport(local);
            try
            {
                _local.MarkDeleting(record.Pool, record.Id, "volume", name);
            }
            catch
            {
                _local.Reexport(local);
                throw;
            }

            try
            {
                await _store.DeleteVolumeAsync(name, CancellationToken.None);
            }
            catch (Exception e)
            {
                _local.Reexport(local);
                _local.SettleState(record.Pool, record.Id, "volume", name, ThinImageState.Committed);
                throw new VolumeException(VolumeError.Internal, $"removing volume {name} from the metadata store failed: {e.Message}", e);
            }

            _local.DiscardStorage("delete", record, local.Storage);
            VolumeLog.VolumeDeleted(_logger, name, record.Id);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> ResizeAsync(string name, ulong requestedSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        var newSize = VolumeRules.RoundSize(requestedSizeBytes);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;
            if (newSize < record.SizeBytes)
            {
                throw new VolumeException(
                    VolumeError.FailedPrecondition,
                    $"volume {name} is {record.SizeBytes} bytes ({ByteSize.Format(record.SizeBytes)}); it cannot shrink to {newSize} bytes: volumes only grow");
            }

            if (newSize == record.SizeBytes)
            {
                return _local.Describe(local);
            }

            try
            {
                local.Storage.Resize(newSize);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or ArgumentException)
            {
                throw new VolumeException(VolumeError.Internal, $"growing the storage of volume {name} failed: {e.Message}", e);
            }

            // If the store write fails the storage is already larger; the next start adopts the storage size.
            var updated = record with { SizeBytes = newSize };
            await UpdateRecordAsync(updated);
            local.Record = updated;
            local.Metrics.SetSize(newSize);
            local.Subsystem.NotifyNamespaceChanged(VolumeRules.NamespaceId);
            VolumeLog.VolumeResized(_logger, name, record.SizeBytes, newSize);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> AllowHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateHostNqn(hostNqn);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;
            if (record.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal))
            {
                return _local.Describe(local);
            }

            // Persist before granting, so access never exists that a restart would silently take away.
            var updated = record with { AllowedHosts = record.AllowedHosts.Append(hostNqn).Order(StringComparer.Ordinal).ToArray() };
            await UpdateRecordAsync(updated);
            local.Record = updated;
            local.Subsystem.AllowHost(hostNqn);
            VolumeLog.HostAllowed(_logger, name, hostNqn);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>
    /// Removes a host's access and returns once the host has no controller on the volume and every command it had in
    /// flight there has finished (<see cref="HostFencing"/>); the record changes only then, so a call that failed waiting
    /// is retried in full.
    /// </summary>
    public async Task<Volume> DenyHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateHostNqn(hostNqn);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;
            if (!record.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal))
            {
                if (!local.Subsystem.IsHostAllowed(hostNqn))
                {
                    // Removed already: still, return only once nothing of the host is running (a retry after a timeout).
                    await HostFencing.WaitAsync(local.Subsystem.WhenHostDrained(hostNqn), local.Subsystem, name, cancellationToken);
                }

                return _local.Describe(local);
            }

            // Revoke live access first: a denied host must lose its controllers even if persisting fails. Its commands
            // normally end within milliseconds (a replicated write waits for its replicas), so the lock is held for that.
            await HostFencing.WaitAsync(local.Subsystem.DenyHost(hostNqn), local.Subsystem, name, cancellationToken);
            var updated = record with { AllowedHosts = record.AllowedHosts.Where(h => h != hostNqn).ToArray() };
            try
            {
                await UpdateRecordAsync(updated);
            }
            catch
            {
                local.Subsystem.AllowHost(hostNqn);
                throw;
            }

            local.Record = updated;
            VolumeLog.HostDenied(_logger, name, hostNqn);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> SetHostSecretAsync(SetHostSecretRequest request, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(request.Name);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(request.Name);
            var record = local.Record;
            var entry = HostSecrets.Seal(_local.Secrets, record.Id, request.HostNqn, request.Secret, request.CtrlSecret, request.Hash, request.DhGroup);

            // Persist before applying: a restart never forgets a requirement the caller was told is in force.
            var updated = record with { HostSecrets = HostSecrets.With(record.HostSecrets, entry) };
            await UpdateRecordAsync(updated);
            local.Record = updated;
            HostSecrets.Apply(local.Subsystem, updated, _local.Secrets, _logger);
            VolumeLog.HostSecretSet(_logger, record.Name, entry.HostNqn, entry.Hash, entry.DhGroup, entry.SealedControllerSecret.Length > 0);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> ClearHostSecretAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateHostNqn(hostNqn);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;
            if (!record.HostSecrets.Any(h => h.HostNqn == hostNqn))
            {
                return _local.Describe(local);
            }

            var updated = record with { HostSecrets = HostSecrets.Without(record.HostSecrets, hostNqn) };
            await UpdateRecordAsync(updated);
            local.Record = updated;
            HostSecrets.Apply(local.Subsystem, updated, _local.Secrets, _logger);
            VolumeLog.HostSecretCleared(_logger, name, hostNqn);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public Task<Volume> SetHostTlsPskAsync(SetHostTlsPskRequest request, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(request.Name);
        return UpdateTlsAsync(request.Name, (local, record) =>
        {
            var entry = HostTlsPsks.Seal(_local.Secrets, record.Id, request.HostNqn, request.Psk);
            VolumeLog.TlsPskSet(_logger, record.Name, entry.HostNqn);
            return record with { TlsPsks = HostTlsPsks.With(record.TlsPsks, entry) };
        }, cancellationToken);
    }

    public Task<Volume> ClearHostTlsPskAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateHostNqn(hostNqn);
        return UpdateTlsAsync(name, (local, record) =>
        {
            if (!record.TlsPsks.Any(t => t.HostNqn == hostNqn))
            {
                return null;
            }

            VolumeLog.TlsPskCleared(_logger, name, hostNqn);
            return record with { TlsPsks = HostTlsPsks.Without(record.TlsPsks, hostNqn) };
        }, cancellationToken);
    }

    public Task<Volume> SetTlsRequiredAsync(string name, bool tlsRequired, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        return UpdateTlsAsync(name, (local, record) =>
        {
            if (record.TlsRequired == tlsRequired)
            {
                return null;
            }

            VolumeLog.TlsRequiredSet(_logger, name, tlsRequired);
            return record with { TlsRequired = tlsRequired };
        }, cancellationToken);
    }

    /// <summary>
    /// Persists a TLS change of the record, then applies it to the subsystem (a restart never forgets a requirement the
    /// caller was told is in force); <paramref name="change"/> returns null when there is nothing to change.
    /// </summary>
    private async Task<Volume> UpdateTlsAsync(string name, Func<LocalVolume, VolumeRecord, VolumeRecord?> change, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var updated = change(local, local.Record);
            if (updated is not null)
            {
                await UpdateRecordAsync(updated);
                local.Record = updated;
                HostTlsPsks.Apply(local.Subsystem, updated, _local.Secrets, _logger);
            }

            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> SetAllowAnyHostAsync(string name, bool allowAnyHost, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var local = _local.Find(name);
            var record = local.Record;
            if (record.AllowAnyHost == allowAnyHost)
            {
                return _local.Describe(local);
            }

            var updated = record with { AllowAnyHost = allowAnyHost };
            if (allowAnyHost)
            {
                await UpdateRecordAsync(updated);
                local.Subsystem.SetAllowAnyHost(true);
            }
            else
            {
                local.Subsystem.SetAllowAnyHost(false);
                try
                {
                    await HostFencing.WaitAsync(local.Subsystem.WhenDeniedHostsDrained(), local.Subsystem, name, cancellationToken);
                    await UpdateRecordAsync(updated);
                }
                catch
                {
                    local.Subsystem.SetAllowAnyHost(true);
                    throw;
                }
            }

            local.Record = updated;
            VolumeLog.AllowAnyHostChanged(_logger, name, allowAnyHost);
            return _local.Describe(local);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>Takes a snapshot of a volume: O(1), crash consistent, durable on return.</summary>
    public async Task<Snapshot> CreateSnapshotAsync(
        string volumeName,
        string snapshotName,
        IReadOnlyDictionary<string, string>? labels = null,
        CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(volumeName);
        VolumeRules.ValidateName(snapshotName, "snapshot name");
        labels = VolumeRules.ValidateLabels(labels);
        _local.SnapshotBackend("snapshots");
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var volume = _local.Find(volumeName).Record;
            if (_snapshots.TryGetValue(snapshotName, out var existing))
            {
                throw new VolumeException(
                    VolumeError.AlreadyExists,
                    $"snapshot {snapshotName} already exists (id {existing.Id}, of volume {existing.SourceVolumeName})");
            }

            var id = Guid.NewGuid();
            // A snapshot has its volume's size at the moment it is taken; the mutation lock keeps resizes out until then.
            var record = new SnapshotRecord(id, snapshotName, volume.Id, volume.Name, volume.SizeBytes, volume.BlockSize, VolumeRules.Now(), volume.Pool)
            {
                Labels = labels,
            };
            record = record with { SizeBytes = _local.SnapshotStorage(volume, record) };
            bool created;
            try
            {
                created = await _store.TryCreateSnapshotAsync(record, CancellationToken.None);
            }
            catch (Exception e)
            {
                _local.DiscardSnapshot(record);
                throw new VolumeException(VolumeError.Internal, $"recording snapshot {snapshotName} in the metadata store failed: {e.Message}", e);
            }

            if (!created)
            {
                _local.DiscardSnapshot(record);
                throw new VolumeException(VolumeError.AlreadyExists, $"snapshot {snapshotName} already exists in the metadata store");
            }

            _local.SettleState(record.Pool, id, "snapshot", snapshotName, ThinImageState.Committed);
            _snapshots[snapshotName] = record;
            VolumeLog.SnapshotCreated(_logger, snapshotName, id, volumeName, record.SizeBytes, volume.Pool);
            return _local.Describe(record);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public Task<Snapshot> GetSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name, "snapshot name");
        return Task.FromResult(_local.Describe(FindSnapshot(name)));
    }

    /// <summary>Every snapshot, or those taken of the volume named <paramref name="volumeName"/> (which may be gone since).</summary>
    public Task<IReadOnlyList<Snapshot>> ListSnapshotsAsync(string? volumeName = null, CancellationToken cancellationToken = default)
    {
        if (!string.IsNullOrEmpty(volumeName))
        {
            VolumeRules.ValidateName(volumeName);
        }

        IReadOnlyList<Snapshot> list = _snapshots.Values
            .Where(s => string.IsNullOrEmpty(volumeName) || s.SourceVolumeName == volumeName)
            .OrderBy(s => s.Name, StringComparer.Ordinal)
            .Select(_local.Describe)
            .ToArray();
        return Task.FromResult(list);
    }

    /// <summary>Deletes a snapshot; clones made from it keep working (the pool keeps the clusters they read).</summary>
    public async Task DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name, "snapshot name");
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var record = FindSnapshot(name);
            _local.MarkDeleting(record.Pool, record.Id, "snapshot", name);
            try
            {
                await _store.DeleteSnapshotAsync(name, CancellationToken.None);
            }
            catch (Exception e)
            {
                _local.SettleState(record.Pool, record.Id, "snapshot", name, ThinImageState.Committed);
                throw new VolumeException(VolumeError.Internal, $"removing snapshot {name} from the metadata store failed: {e.Message}", e);
            }

            _snapshots.TryRemove(name, out _);
            // The record is gone and the image marked deleting, so a failure here leaves an orphan the next start reclaims.
            _local.DiscardSnapshot(record);
            VolumeLog.SnapshotDeleted(_logger, name, record.Id);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>A single server keeps one copy: there is nothing to compare, and it is identical by definition.</summary>
    public Task<VerifyVolumeResponse> VerifyAsync(string name, uint regionSize, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        _local.Find(name);
        var response = new VerifyVolumeResponse
        {
            Identical = true,
            AllInSync = true,
            RegionSize = regionSize == 0 ? 1u << 20 : regionSize,
        };
        response.Nodes.Add("local");
        return Task.FromResult(response);
    }

    /// <summary>Pools with their space and how many volumes and snapshots each holds.</summary>
    public Task<IReadOnlyList<Pool>> ListPoolsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_local.ListPools(_local.All.Select(v => v.Record.Pool), _snapshots.Values.Select(s => s.Pool)));

    private SnapshotRecord FindSnapshot(string name) =>
        _snapshots.TryGetValue(name, out var snapshot)
            ? snapshot
            : throw new VolumeException(VolumeError.NotFound, $"snapshot {name} not found");

    private async Task UpdateRecordAsync(VolumeRecord updated)
    {
        bool found;
        try
        {
            found = await _store.UpdateVolumeAsync(updated, CancellationToken.None);
        }
        catch (Exception e)
        {
            throw new VolumeException(VolumeError.Internal, $"updating volume {updated.Name} in the metadata store failed: {e.Message}", e);
        }

        if (!found)
        {
            throw new VolumeException(VolumeError.Internal, $"volume {updated.Name} is missing from the metadata store");
        }

        _local.KeepRecoveryInfo(updated);
    }

    private async Task<VolumeRecord> ReconcileSizeAsync(VolumeRecord record, IBlockVolume storage)
    {
        if (storage.SizeBytes == record.SizeBytes)
        {
            return record;
        }

        if (storage.SizeBytes > record.SizeBytes)
        {
            // A resize grew the storage but did not reach the store; hosts may already have seen the new size.
            VolumeLog.VolumeSizeReconciled(_logger, record.Name, storage.SizeBytes, record.SizeBytes);
            var grown = record with { SizeBytes = storage.SizeBytes };
            await UpdateRecordAsync(grown);
            return grown;
        }

        // The storage is shorter than recorded (e.g. truncated by hand): grow it back, the missing tail reads as zeros.
        storage.Resize(record.SizeBytes);
        return record;
    }
}
