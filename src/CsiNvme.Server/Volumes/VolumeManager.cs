using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Server.Metrics;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;
using CsiNvme.Target;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server.Volumes;

/// <summary>
/// The one place where volume lifecycle lives: metadata record, backing storage, NVMe subsystem and
/// metrics are created, changed and removed together here. Mutations are serialized; reads are lock-free
/// snapshots.
/// </summary>
public sealed class VolumeManager : IAsyncDisposable
{
    /// <summary>VMs moving off SANs expect 512-byte logical blocks; 4096 is available on request.</summary>
    public const int DefaultBlockSize = 512;

    /// <summary>Sizes are rounded up to this, so every volume is whole 4 KiB blocks whatever its block size.</summary>
    public const long SizeGranularity = 4096;

    /// <summary>Largest volume accepted; beyond what a single sparse file on ext4 (16 TiB) or XFS handles comfortably.</summary>
    public const long MaxVolumeSizeBytes = 64L << 40;

    /// <summary>Every volume is exported as NSID 1 of its own subsystem.</summary>
    public const uint NamespaceId = 1;

    private readonly IMetadataStore _store;
    private readonly IVolumeBackend _backend;
    private readonly NvmeTarget _target;
    private readonly ServerMetrics _metrics;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _mutation = new(1, 1);
    private readonly ConcurrentDictionary<string, ManagedVolume> _volumes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SnapshotRecord> _snapshots = new(StringComparer.Ordinal);
    private string[] _listenAddresses = [];

    public VolumeManager(IMetadataStore store, IVolumeBackend backend, NvmeTarget target, ServerMetrics metrics, ILogger<VolumeManager> logger)
    {
        _store = store;
        _backend = backend;
        _target = target;
        _metrics = metrics;
        _logger = logger;
    }

    public int Count => _volumes.Count;

    public string BackendName => _backend.Name;

    public int SnapshotCount => _snapshots.Count;

    /// <summary>The NVMe/TCP endpoints reported in every volume's listen_addresses.</summary>
    public void SetListenAddresses(IEnumerable<IPEndPoint> endpoints) =>
        Volatile.Write(ref _listenAddresses, endpoints.Select(e => e.ToString()).ToArray());

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
            if (_backend is ISnapshotBackend pools)
            {
                reconciliation = new PoolReconciliation(_store, _backend, pools, _logger);
                await reconciliation.PrepareAsync(recoverMetadata, cancellationToken);
            }
            else if (recoverMetadata)
            {
                throw new InvalidOperationException($"--recover-metadata rebuilds records from thin pools; the {_backend.Name} backend has none");
            }

            foreach (var stored in await _store.ListVolumesAsync(cancellationToken))
            {
                var record = stored;
                IBlockVolume storage;
                try
                {
                    storage = _backend.Open(record.Pool, record.Id, record.BlockSize);
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"volume {record.Name} (id {record.Id}) cannot be opened: {e.Message}", e);
                }

                try
                {
                    record = await ReconcileSizeAsync(record, storage);
                    Export(record, storage, await LoadReservationsAsync(record.Id, cancellationToken));
                }
                catch
                {
                    storage.Dispose();
                    throw;
                }

                ServerLog.VolumeLoaded(_logger, record.Name, record.Id, record.SizeBytes, VolumeNaming.SubsystemNqn(record.Id));
            }

            foreach (var snapshot in await _store.ListSnapshotsAsync(cancellationToken))
            {
                _snapshots[snapshot.Name] = snapshot;
            }

            if (reconciliation is not null)
            {
                await reconciliation.FinishAsync(_volumes.Values.Select(v => v.Record).ToArray(), _snapshots.Values.ToArray(), cancellationToken);
            }
            else if (!_snapshots.IsEmpty)
            {
                throw new InvalidOperationException(
                    $"the metadata store has {_snapshots.Count} snapshots (e.g. {_snapshots.Keys.First()}), which the {_backend.Name} backend cannot serve; start with --backend thin");
            }

            _metrics.SetVolumeCount(_volumes.Count);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>
    /// Creates an empty volume, or a clone of <paramref name="sourceSnapshot"/> / <paramref name="sourceVolume"/> (at most
    /// one; then a size of 0 means the source's size and a block size of 0 the source's block size).
    /// </summary>
    public async Task<Volume> CreateAsync(
        string name,
        ulong requestedSizeBytes,
        uint blockSize,
        bool allowAnyHost,
        IEnumerable<string> allowedHosts,
        string? sourceSnapshot = null,
        string? sourceVolume = null,
        string? pool = null,
        IReadOnlyDictionary<string, string>? labels = null,
        CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        labels = ValidateLabels(labels);
        sourceSnapshot = string.IsNullOrEmpty(sourceSnapshot) ? null : sourceSnapshot;
        sourceVolume = string.IsNullOrEmpty(sourceVolume) ? null : sourceVolume;
        if (sourceSnapshot is not null && sourceVolume is not null)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "give either a source snapshot or a source volume, not both");
        }

        if (sourceSnapshot is not null)
        {
            ValidateName(sourceSnapshot, "source snapshot");
        }

        if (sourceVolume is not null)
        {
            ValidateName(sourceVolume, "source volume");
        }

        var isClone = sourceSnapshot is not null || sourceVolume is not null;
        var sizeBytes = isClone && requestedSizeBytes == 0 ? 0 : RoundSize(requestedSizeBytes);
        if (blockSize is not (0 or 512 or 4096))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"block size {blockSize} is not supported; use 512 or 4096");
        }

        var effectiveBlockSize = blockSize == 0 ? DefaultBlockSize : (int)blockSize;
        var hosts = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var host in allowedHosts)
        {
            ValidateHostNqn(host);
            hosts.Add(host);
        }

        await _mutation.WaitAsync(cancellationToken);
        try
        {
            if (_volumes.TryGetValue(name, out var existing))
            {
                var r = existing.Record;
                throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists (id {r.Id}, {r.SizeBytes} bytes)");
            }

            var id = Guid.NewGuid();
            var createdAt = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            VolumeRecord RecordIn(string pool, long size, int blockSize) =>
                new(id, name, size, blockSize, allowAnyHost, hosts.ToArray(), createdAt) { Pool = pool, Labels = labels };
            IBlockVolume storage;
            string placedIn;
            string? clonedFrom = null;
            if (isClone)
            {
                var snapshots = SnapshotBackend(sourceSnapshot is not null ? "cloning a snapshot" : "cloning a volume");
                Guid sourceId;
                string sourceName, sourcePool, kind;
                long sourceSize;
                int sourceBlockSize;
                if (sourceSnapshot is not null)
                {
                    var snapshot = FindSnapshot(sourceSnapshot);
                    (sourceId, sourceName, sourcePool, sourceSize, sourceBlockSize, kind) =
                        (snapshot.Id, snapshot.Name, snapshot.Pool, snapshot.SizeBytes, snapshot.BlockSize, "snapshot");
                }
                else
                {
                    var volume = Find(sourceVolume!).Record;
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

                if (blockSize == 0)
                {
                    effectiveBlockSize = sourceBlockSize;
                }

                placedIn = sourcePool;
                clonedFrom = $"{kind} {sourceName}";
                var annotation = ImageRecoveryInfo.Of(RecordIn(placedIn, sizeBytes, effectiveBlockSize), clonedFrom);
                try
                {
                    storage = sourceSnapshot is not null
                        ? snapshots.CloneFromSnapshot(sourcePool, id, name, sourceId, sizeBytes, effectiveBlockSize, annotation)
                        : snapshots.CloneFromVolume(sourcePool, id, name, sourceId, sizeBytes, effectiveBlockSize, annotation);
                }
                catch (Exception e) when (IsStorageFailure(e))
                {
                    throw new VolumeException(VolumeError.Internal, $"cloning {kind} {sourceName} into volume {name} failed: {e.Message}", e);
                }
            }
            else
            {
                placedIn = _backend.PlaceVolume(pool);
                try
                {
                    storage = _backend.Create(placedIn, id, name, sizeBytes, effectiveBlockSize, ImageRecoveryInfo.Of(RecordIn(placedIn, sizeBytes, effectiveBlockSize), null));
                }
                catch (Exception e) when (IsStorageFailure(e) || e is OutOfMemoryException)
                {
                    throw new VolumeException(VolumeError.Internal, $"creating the storage of volume {name} failed: {e.Message}", e);
                }
            }

            var record = RecordIn(placedIn, sizeBytes, effectiveBlockSize);
            bool created;
            try
            {
                created = await _store.TryCreateVolumeAsync(record, CancellationToken.None);
            }
            catch (Exception e)
            {
                DiscardStorage("create", name, record, storage);
                throw new VolumeException(VolumeError.Internal, $"recording volume {name} in the metadata store failed: {e.Message}", e);
            }

            if (!created)
            {
                DiscardStorage("create", name, record, storage);
                throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists in the metadata store");
            }

            // Until here a crash leaves a pending image that the next start reclaims: the create was never acknowledged.
            SettleState(record.Pool, id, "volume", name, ThinImageState.Committed);
            var managed = Export(record, storage, await LoadReservationsAsync(record.Id, CancellationToken.None));
            _metrics.SetVolumeCount(_volumes.Count);
            ServerLog.VolumeCreated(_logger, name, id, sizeBytes, (long)requestedSizeBytes, effectiveBlockSize, managed.Subsystem.Nqn);
            if (isClone)
            {
                ServerLog.VolumeCloned(_logger, name, sourceSnapshot is not null ? "snapshot" : "volume", sourceSnapshot ?? sourceVolume!, placedIn);
            }

            return Describe(managed);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public Volume Get(string name)
    {
        ValidateName(name);
        return Describe(Find(name));
    }

    public IReadOnlyList<Volume> List() =>
        _volumes.Values.OrderBy(v => v.Record.Name, StringComparer.Ordinal).Select(Describe).ToArray();

    public async Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var managed = Find(name);
            var record = managed.Record;

            // The subsystem goes first: it tears down the controllers, so no host keeps writing to a volume
            // whose record is gone.
            _target.RemoveSubsystem(managed.Subsystem.Nqn);
            try
            {
                MarkDeleting(record.Pool, record.Id, "volume", name);
            }
            catch
            {
                _target.AddSubsystem(managed.Subsystem);
                throw;
            }

            try
            {
                await _store.DeleteVolumeAsync(name, CancellationToken.None);
            }
            catch (Exception e)
            {
                _target.AddSubsystem(managed.Subsystem);
                SettleState(record.Pool, record.Id, "volume", name, ThinImageState.Committed);
                throw new VolumeException(VolumeError.Internal, $"removing volume {name} from the metadata store failed: {e.Message}", e);
            }

            _volumes.TryRemove(name, out _);
            managed.Metrics.Remove();
            _metrics.SetVolumeCount(_volumes.Count);
            DiscardStorage("delete", name, record, managed.Storage);
            ServerLog.VolumeDeleted(_logger, name, record.Id);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> ResizeAsync(string name, ulong requestedSizeBytes, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        var newSize = RoundSize(requestedSizeBytes);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var managed = Find(name);
            var record = managed.Record;
            if (newSize < record.SizeBytes)
            {
                throw new VolumeException(
                    VolumeError.FailedPrecondition,
                    $"volume {name} is {record.SizeBytes} bytes ({ByteSize.Format(record.SizeBytes)}); it cannot shrink to {newSize} bytes: volumes only grow");
            }

            if (newSize == record.SizeBytes)
            {
                return Describe(managed);
            }

            try
            {
                managed.Storage.Resize(newSize);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or ArgumentException)
            {
                throw new VolumeException(VolumeError.Internal, $"growing the storage of volume {name} failed: {e.Message}", e);
            }

            // If the store write fails the storage is already larger; the next start adopts the storage size.
            var updated = record with { SizeBytes = newSize };
            await UpdateRecordAsync(updated);
            managed.Record = updated;
            managed.Metrics.SetSize(newSize);
            managed.Subsystem.NotifyNamespaceChanged(NamespaceId);
            ServerLog.VolumeResized(_logger, name, record.SizeBytes, newSize);
            return Describe(managed);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> AllowHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        ValidateHostNqn(hostNqn);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var managed = Find(name);
            var record = managed.Record;
            if (record.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal))
            {
                return Describe(managed);
            }

            // Persist before granting, so access never exists that a restart would silently take away.
            var updated = record with { AllowedHosts = record.AllowedHosts.Append(hostNqn).Order(StringComparer.Ordinal).ToArray() };
            await UpdateRecordAsync(updated);
            managed.Record = updated;
            managed.Subsystem.AllowHost(hostNqn);
            ServerLog.HostAllowed(_logger, name, hostNqn);
            return Describe(managed);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> DenyHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        ValidateHostNqn(hostNqn);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var managed = Find(name);
            var record = managed.Record;
            if (!record.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal))
            {
                return Describe(managed);
            }

            // Revoke live access first: a denied host must lose its controllers even if persisting fails.
            managed.Subsystem.DenyHost(hostNqn);
            var updated = record with { AllowedHosts = record.AllowedHosts.Where(h => h != hostNqn).ToArray() };
            try
            {
                await UpdateRecordAsync(updated);
            }
            catch
            {
                managed.Subsystem.AllowHost(hostNqn);
                throw;
            }

            managed.Record = updated;
            ServerLog.HostDenied(_logger, name, hostNqn);
            return Describe(managed);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> SetAllowAnyHostAsync(string name, bool allowAnyHost, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var managed = Find(name);
            var record = managed.Record;
            if (record.AllowAnyHost == allowAnyHost)
            {
                return Describe(managed);
            }

            var updated = record with { AllowAnyHost = allowAnyHost };
            if (allowAnyHost)
            {
                await UpdateRecordAsync(updated);
                managed.Subsystem.SetAllowAnyHost(true);
            }
            else
            {
                managed.Subsystem.SetAllowAnyHost(false);
                try
                {
                    await UpdateRecordAsync(updated);
                }
                catch
                {
                    managed.Subsystem.SetAllowAnyHost(true);
                    throw;
                }
            }

            managed.Record = updated;
            ServerLog.AllowAnyHostChanged(_logger, name, allowAnyHost);
            return Describe(managed);
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
        ValidateName(volumeName);
        ValidateName(snapshotName, "snapshot name");
        labels = ValidateLabels(labels);
        var snapshots = SnapshotBackend("snapshots");
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var volume = Find(volumeName).Record;
            if (_snapshots.TryGetValue(snapshotName, out var existing))
            {
                throw new VolumeException(
                    VolumeError.AlreadyExists,
                    $"snapshot {snapshotName} already exists (id {existing.Id}, of volume {existing.SourceVolumeName})");
            }

            var id = Guid.NewGuid();
            // A snapshot has its volume's size at the moment it is taken; the mutation lock keeps resizes out until then.
            var record = new SnapshotRecord(
                id,
                snapshotName,
                volume.Id,
                volume.Name,
                volume.SizeBytes,
                volume.BlockSize,
                DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()),
                volume.Pool)
            {
                Labels = labels,
            };
            try
            {
                record = record with { SizeBytes = snapshots.CreateSnapshot(volume.Pool, volume.Id, id, snapshotName, ImageRecoveryInfo.Of(record)) };
            }
            catch (Exception e) when (IsStorageFailure(e))
            {
                throw new VolumeException(VolumeError.Internal, $"taking snapshot {snapshotName} of volume {volumeName} failed: {e.Message}", e);
            }

            var sizeBytes = record.SizeBytes;
            bool created;
            try
            {
                created = await _store.TryCreateSnapshotAsync(record, CancellationToken.None);
            }
            catch (Exception e)
            {
                DiscardSnapshot(record);
                throw new VolumeException(VolumeError.Internal, $"recording snapshot {snapshotName} in the metadata store failed: {e.Message}", e);
            }

            if (!created)
            {
                DiscardSnapshot(record);
                throw new VolumeException(VolumeError.AlreadyExists, $"snapshot {snapshotName} already exists in the metadata store");
            }

            SettleState(record.Pool, id, "snapshot", snapshotName, ThinImageState.Committed);
            _snapshots[snapshotName] = record;
            ServerLog.SnapshotCreated(_logger, snapshotName, id, volumeName, sizeBytes, volume.Pool);
            return Describe(record);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public Snapshot GetSnapshot(string name)
    {
        ValidateName(name, "snapshot name");
        return Describe(FindSnapshot(name));
    }

    /// <summary>Every snapshot, or those taken of the volume named <paramref name="volumeName"/> (which may be gone since).</summary>
    public IReadOnlyList<Snapshot> ListSnapshots(string? volumeName = null)
    {
        if (!string.IsNullOrEmpty(volumeName))
        {
            ValidateName(volumeName);
        }

        return _snapshots.Values
            .Where(s => string.IsNullOrEmpty(volumeName) || s.SourceVolumeName == volumeName)
            .OrderBy(s => s.Name, StringComparer.Ordinal)
            .Select(Describe)
            .ToArray();
    }

    /// <summary>Deletes a snapshot; clones made from it keep working (the pool keeps the clusters they read).</summary>
    public async Task DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        ValidateName(name, "snapshot name");
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            var record = FindSnapshot(name);
            MarkDeleting(record.Pool, record.Id, "snapshot", name);
            try
            {
                await _store.DeleteSnapshotAsync(name, CancellationToken.None);
            }
            catch (Exception e)
            {
                SettleState(record.Pool, record.Id, "snapshot", name, ThinImageState.Committed);
                throw new VolumeException(VolumeError.Internal, $"removing snapshot {name} from the metadata store failed: {e.Message}", e);
            }

            _snapshots.TryRemove(name, out _);
            // The record is gone and the image marked deleting, so a failure here leaves an orphan the next start reclaims.
            DiscardSnapshot(record);
            ServerLog.SnapshotDeleted(_logger, name, record.Id);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>Pools with their space and how many volumes and snapshots each holds.</summary>
    public IReadOnlyList<Pool> ListPools()
    {
        var volumesByPool = _volumes.Values.GroupBy(v => v.Record.Pool).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var snapshotsByPool = _snapshots.Values.GroupBy(s => s.Pool).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        return _backend.GetPools().Select(p => new Pool
        {
            Name = p.Name,
            Path = p.DataPath,
            JournalPath = p.JournalPath,
            ClusterSize = (uint)p.ClusterSize,
            CapacityBytes = (ulong)p.CapacityBytes,
            UsedBytes = (ulong)p.UsedBytes,
            FreeBytes = (ulong)p.FreeBytes,
            ReserveBytes = (ulong)p.ReserveBytes,
            OutOfSpace = p.OutOfSpace,
            VolumeCount = (uint)volumesByPool.GetValueOrDefault(p.Name),
            SnapshotCount = (uint)snapshotsByPool.GetValueOrDefault(p.Name),
        }).ToArray();
    }

    /// <summary>Flushes and closes every volume. The target must be disposed first so no I/O is in flight.</summary>
    public async ValueTask DisposeAsync()
    {
        await _mutation.WaitAsync();
        try
        {
            foreach (var managed in _volumes.Values)
            {
                var status = managed.Storage.Flush();
                if (status != StorageStatus.Success)
                {
                    ServerLog.FlushAtShutdownFailed(_logger, managed.Record.Name, status.ToString());
                }

                managed.Storage.Dispose();
            }

            _volumes.Clear();
            _backend.Dispose();
        }
        finally
        {
            _mutation.Release();
        }
    }

    internal IBlockVolume? FindStorage(string name) => _volumes.TryGetValue(name, out var v) ? v.Storage : null;

    private static void ValidateName(string name, string? what = null)
    {
        if (!VolumeNaming.IsValidVolumeName(name, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, what is null ? error! : $"{what}: {error}");
        }
    }

    /// <summary>What the storage layers throw for a request they cannot carry out; anything else is a bug and propagates.</summary>
    private static bool IsStorageFailure(Exception e) =>
        e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or KeyNotFoundException;

    private ISnapshotBackend SnapshotBackend(string what) =>
        _backend as ISnapshotBackend ?? throw new VolumeException(
            VolumeError.FailedPrecondition,
            $"{what} needs the thin backend; this server runs the {_backend.Name} backend (start it with --backend thin)");

    private SnapshotRecord FindSnapshot(string name) =>
        _snapshots.TryGetValue(name, out var snapshot)
            ? snapshot
            : throw new VolumeException(VolumeError.NotFound, $"snapshot {name} not found");

    /// <summary>
    /// Moves a pool image to another lifecycle state. After the record was written (committed) or could not be removed
    /// (committed again), a failure only leaves a state the next start settles, so it is logged, not raised.
    /// </summary>
    private void SettleState(string pool, Guid id, string kind, string name, ThinImageState state)
    {
        if (_backend is not ISnapshotBackend pools)
        {
            return;
        }

        try
        {
            pools.SetImageState(pool, id, state);
        }
        catch (Exception e) when (IsStorageFailure(e) || e is ObjectDisposedException)
        {
            ServerLog.ImageStateNotRecorded(_logger, e, pool, kind, name, id, state.ToString().ToLowerInvariant());
        }
    }

    /// <summary>
    /// Before a record is removed its image is marked deleting, so that a crash after the removal leaves an image the
    /// next start may reclaim; without the mark it would be a committed image without a record, which stops the start.
    /// </summary>
    private void MarkDeleting(string pool, Guid id, string kind, string name)
    {
        if (_backend is not ISnapshotBackend pools)
        {
            return;
        }

        try
        {
            pools.SetImageState(pool, id, ThinImageState.Deleting);
        }
        catch (Exception e) when (IsStorageFailure(e) || e is ObjectDisposedException)
        {
            throw new VolumeException(VolumeError.Internal, $"marking {kind} {name} for deletion in pool {pool} failed: {e.Message}", e);
        }
    }

    /// <summary>Keeps the pool's copy of what rebuilds the record current, so --recover-metadata restores today's access.</summary>
    private void KeepRecoveryInfo(VolumeRecord record)
    {
        if (_backend is not ISnapshotBackend pools)
        {
            return;
        }

        try
        {
            var clonedFrom = ImageRecoveryInfo.Read(pools.GetImageAnnotation(record.Pool, record.Id), out _)?.ClonedFrom;
            pools.SetImageAnnotation(record.Pool, record.Id, ImageRecoveryInfo.Of(record, clonedFrom));
        }
        catch (Exception e) when (IsStorageFailure(e) || e is ObjectDisposedException)
        {
            throw new VolumeException(VolumeError.Internal, $"recording volume {record.Name} in pool {record.Pool} failed: {e.Message}", e);
        }
    }

    private static IReadOnlyDictionary<string, string> ValidateLabels(IReadOnlyDictionary<string, string>? labels)
    {
        if (!VolumeLabels.IsValid(labels, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, error!);
        }

        return labels is null ? new Dictionary<string, string>() : new Dictionary<string, string>(labels, StringComparer.Ordinal);
    }

    private static void ValidateHostNqn(string hostNqn)
    {
        if (!VolumeNaming.IsValidNqn(hostNqn, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"host NQN: {error}");
        }
    }

    private static long RoundSize(ulong requested)
    {
        if (requested == 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "size must be greater than zero");
        }

        if (requested > (ulong)MaxVolumeSizeBytes)
        {
            throw new VolumeException(
                VolumeError.InvalidArgument,
                $"size {requested} bytes is larger than the maximum of {MaxVolumeSizeBytes} bytes ({ByteSize.Format(MaxVolumeSizeBytes)})");
        }

        return ((long)requested + SizeGranularity - 1) / SizeGranularity * SizeGranularity;
    }

    private ManagedVolume Find(string name) =>
        _volumes.TryGetValue(name, out var managed)
            ? managed
            : throw new VolumeException(VolumeError.NotFound, $"volume {name} not found");

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

        KeepRecoveryInfo(updated);
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
            ServerLog.VolumeSizeReconciled(_logger, record.Name, storage.SizeBytes, record.SizeBytes);
            var grown = record with { SizeBytes = storage.SizeBytes };
            await UpdateRecordAsync(grown);
            return grown;
        }

        // The storage is shorter than recorded (e.g. truncated by hand): grow it back, the missing tail reads as zeros.
        storage.Resize(record.SizeBytes);
        return record;
    }

    /// <summary>
    /// The namespace's NVMe reservations as saved in the metadata store, which then receives every change. A start of
    /// the server is a power on: without PTPL the saved reservations are released (NVM command set 1.0, 3.2.5).
    /// </summary>
    private Task<NamespaceReservations> LoadReservationsAsync(Guid volumeId, CancellationToken cancellationToken) =>
        NamespaceReservations.LoadAsync(volumeId, new MetadataReservationStore(_store), powerOn: true, cancellationToken);

    private ManagedVolume Export(VolumeRecord record, IBlockVolume storage, NamespaceReservations reservations)
    {
        var metrics = _metrics.ForVolume(record.Name, record.SizeBytes);
        var ns = new TargetNamespace(NamespaceId, storage, record.Id) { Metrics = metrics, Reservations = reservations };
        var subsystem = new Subsystem(VolumeNaming.SubsystemNqn(record.Id), SerialNumberOf(record.Id), record.AllowAnyHost, record.AllowedHosts);
        subsystem.AddNamespace(ns);
        try
        {
            _target.AddSubsystem(subsystem);
        }
        catch
        {
            metrics.Remove();
            throw;
        }

        var managed = new ManagedVolume(record, storage, subsystem, ns, metrics);
        _volumes[record.Name] = managed;
        return managed;
    }

    /// <summary>Identify Controller SN is 20 ASCII characters: the first 20 hex digits of the volume id.</summary>
    internal static string SerialNumberOf(Guid id) => id.ToString("N")[..20];

    private void DiscardStorage(string operation, string name, VolumeRecord record, IBlockVolume storage)
    {
        try
        {
            storage.Dispose();
            _backend.Delete(record.Pool, record.Id);
        }
        catch (Exception e)
        {
            ServerLog.CleanupFailed(_logger, e, operation, name);
        }
    }

    private Volume Describe(ManagedVolume managed)
    {
        var record = managed.Record;
        var volume = new Volume
        {
            Name = record.Name,
            Id = record.Id.ToString("D"),
            SizeBytes = (ulong)record.SizeBytes,
            BlockSize = (uint)record.BlockSize,
            SubsystemNqn = managed.Subsystem.Nqn,
            Nguid = managed.Namespace.NguidHex,
            Uuid = managed.Namespace.Uuid.ToString("D"),
            AllowAnyHost = record.AllowAnyHost,
            Backend = _backend.Name,
            CreatedUnixMs = record.CreatedAt.ToUnixTimeMilliseconds(),
            Pool = record.Pool,
            AllocatedBytes = (ulong)_backend.AllocatedBytes(record.Pool, record.Id),
        };
        volume.AllowedHosts.AddRange(record.AllowedHosts);
        foreach (var (key, value) in record.Labels)
        {
            volume.Labels[key] = value;
        }

        volume.ListenAddresses.AddRange(Volatile.Read(ref _listenAddresses));
        volume.ConnectedHosts.AddRange(managed.Subsystem.ConnectedHosts);
        return volume;
    }

    private void DiscardSnapshot(SnapshotRecord record)
    {
        try
        {
            ((ISnapshotBackend)_backend).DeleteSnapshot(record.Pool, record.Id);
        }
        catch (Exception e)
        {
            ServerLog.CleanupFailed(_logger, e, "snapshot", record.Name);
        }
    }

    private Snapshot Describe(SnapshotRecord record)
    {
        var snapshot = new Snapshot
        {
        Name = record.Name,
        Id = record.Id.ToString("D"),
        SourceVolume = record.SourceVolumeName,
        SourceVolumeId = record.SourceVolumeId.ToString("D"),
        SizeBytes = (ulong)record.SizeBytes,
        BlockSize = (uint)record.BlockSize,
        Pool = record.Pool,
        CreatedUnixMs = record.CreatedAt.ToUnixTimeMilliseconds(),
        AllocatedBytes = (ulong)_backend.AllocatedBytes(record.Pool, record.Id),
        };
        foreach (var (key, value) in record.Labels)
        {
            snapshot.Labels[key] = value;
        }

        return snapshot;
    }
}
