using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Logs;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;
using CsiNvme.Target;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Subsystems;
using CsiNvme.Volumes.Backends;
using CsiNvme.Volumes.Pools;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes.Local;

/// <summary>
/// The volumes this node serves: their storage in the backend's pools (with the pool images' lifecycle states and
/// recovery data), the NVMe subsystem each is exported as, and their metrics. It keeps no records of its own: the
/// catalog (single server) or the cluster reconciler decides what exists and calls in here.
/// </summary>
public sealed class LocalVolumes : IAsyncDisposable
{
    private readonly IVolumeBackend _backend;
    private readonly NvmeTarget _target;
    private readonly IVolumeMetricsFactory _metrics;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, LocalVolume> _volumes = new(StringComparer.Ordinal);
    private string[] _listenAddresses = [];

    public LocalVolumes(IVolumeBackend backend, NvmeTarget target, IVolumeMetricsFactory metrics, ILogger logger)
    {
        _backend = backend;
        _target = target;
        _metrics = metrics;
        _logger = logger;
    }

    public IVolumeBackend Backend => _backend;

    /// <summary>Opens the hosts' DH-HMAC-CHAP secrets of the records; null when the server has no secret key.</summary>
    public SecretSealer? Secrets { get; init; }

    public NvmeTarget Target => _target;

    public string BackendName => _backend.Name;

    /// <summary>The pools when the backend has them (thin); null otherwise.</summary>
    public ISnapshotBackend? Pools => _backend as ISnapshotBackend;

    public int Count => _volumes.Count;

    public IEnumerable<LocalVolume> All => _volumes.Values;

    /// <summary>This node's NVMe/TCP endpoints, reported in the listen addresses of the volumes it serves.</summary>
    public IReadOnlyList<string> ListenAddresses => Volatile.Read(ref _listenAddresses);

    public void SetListenAddresses(IEnumerable<IPEndPoint> endpoints) =>
        Volatile.Write(ref _listenAddresses, endpoints.Select(e => e.ToString()).ToArray());

    public LocalVolume? TryGet(string name) => _volumes.TryGetValue(name, out var volume) ? volume : null;

    public LocalVolume Find(string name) =>
        TryGet(name) ?? throw new VolumeException(VolumeError.NotFound, $"volume {name} not found");

    public LocalVolume? FindById(Guid id) => _volumes.Values.FirstOrDefault(v => v.Record.Id == id);

    /// <summary>The pools, or FAILED_PRECONDITION naming <paramref name="what"/> needs them.</summary>
    public ISnapshotBackend SnapshotBackend(string what) =>
        Pools ?? throw new VolumeException(
            VolumeError.FailedPrecondition,
            $"{what} needs the thin backend; this server runs the {_backend.Name} backend (start it with --backend thin)");

    /// <summary>What the storage layers throw for a request they cannot carry out; anything else is a bug and propagates.</summary>
    public static bool IsStorageFailure(Exception e) =>
        e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or KeyNotFoundException;

    // ---- storage ----

    /// <summary>Creates the storage of a new (empty) volume, pending in its pool until <see cref="SettleState"/> commits it.</summary>
    public IBlockVolume CreateStorage(VolumeRecord record)
    {
        try
        {
            return _backend.Create(record.Pool, record.Id, record.Name, record.SizeBytes, record.BlockSize, ImageRecoveryInfo.Of(record, null));
        }
        catch (Exception e) when (IsStorageFailure(e) || e is OutOfMemoryException)
        {
            throw new VolumeException(VolumeError.Internal, $"creating the storage of volume {record.Name} failed: {e.Message}", e);
        }
    }

    /// <summary>Creates the storage of a clone of a snapshot or a volume of the same pool, pending like a new volume.</summary>
    public IBlockVolume CloneStorage(VolumeRecord record, bool fromSnapshot, Guid sourceId, string sourceName)
    {
        var snapshots = SnapshotBackend(fromSnapshot ? "cloning a snapshot" : "cloning a volume");
        var kind = fromSnapshot ? "snapshot" : "volume";
        var annotation = ImageRecoveryInfo.Of(record, $"{kind} {sourceName}");
        try
        {
            return fromSnapshot
                ? snapshots.CloneFromSnapshot(record.Pool, record.Id, record.Name, sourceId, record.SizeBytes, record.BlockSize, annotation)
                : snapshots.CloneFromVolume(record.Pool, record.Id, record.Name, sourceId, record.SizeBytes, record.BlockSize, annotation);
        }
        catch (Exception e) when (IsStorageFailure(e))
        {
            throw new VolumeException(VolumeError.Internal, $"cloning {kind} {sourceName} into volume {record.Name} failed: {e.Message}", e);
        }
    }

    /// <summary>Re-opens a volume's storage at start.</summary>
    public IBlockVolume OpenStorage(VolumeRecord record)
    {
        try
        {
            return _backend.Open(record.Pool, record.Id, record.BlockSize);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"volume {record.Name} (id {record.Id}) cannot be opened: {e.Message}", e);
        }
    }

    /// <summary>Takes a snapshot of a volume's storage, pending until committed; returns its size.</summary>
    public long SnapshotStorage(VolumeRecord volume, SnapshotRecord snapshot)
    {
        var snapshots = SnapshotBackend("snapshots");
        try
        {
            return snapshots.CreateSnapshot(volume.Pool, volume.Id, snapshot.Id, snapshot.Name, ImageRecoveryInfo.Of(snapshot));
        }
        catch (Exception e) when (IsStorageFailure(e))
        {
            throw new VolumeException(VolumeError.Internal, $"taking snapshot {snapshot.Name} of volume {volume.Name} failed: {e.Message}", e);
        }
    }

    /// <summary>Closes and removes storage whose volume is gone or was never recorded; a failure is logged.</summary>
    public void DiscardStorage(string operation, VolumeRecord record, IBlockVolume storage)
    {
        try
        {
            storage.Dispose();
            _backend.Delete(record.Pool, record.Id);
        }
        catch (Exception e)
        {
            VolumeLog.CleanupFailed(_logger, e, operation, record.Name);
        }
    }

    public void DiscardSnapshot(SnapshotRecord record)
    {
        try
        {
            SnapshotBackend("snapshots").DeleteSnapshot(record.Pool, record.Id);
        }
        catch (Exception e)
        {
            VolumeLog.CleanupFailed(_logger, e, "snapshot", record.Name);
        }
    }

    /// <summary>
    /// Moves a pool image to another lifecycle state. After the record was written (committed) or could not be removed
    /// (committed again), a failure only leaves a state the next start settles, so it is logged, not raised.
    /// </summary>
    public void SettleState(string pool, Guid id, string kind, string name, ThinImageState state)
    {
        if (Pools is not { } pools)
        {
            return;
        }

        try
        {
            pools.SetImageState(pool, id, state);
        }
        catch (Exception e) when (IsStorageFailure(e) || e is ObjectDisposedException)
        {
            VolumeLog.ImageStateNotRecorded(_logger, e, pool, kind, name, id, state.ToString().ToLowerInvariant());
        }
    }

    /// <summary>
    /// Before a record is removed its image is marked deleting, so that a crash after the removal leaves an image the
    /// next start may reclaim; without the mark it would be a committed image without a record, which stops the start.
    /// </summary>
    public void MarkDeleting(string pool, Guid id, string kind, string name)
    {
        if (Pools is not { } pools)
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
    public void KeepRecoveryInfo(VolumeRecord record)
    {
        if (Pools is not { } pools)
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

    // ---- exports ----

    /// <summary>
    /// Exports a volume as its NVMe subsystem (namespace 1 over <paramref name="exported"/>, or the storage itself) and
    /// starts serving it. In a cluster every replica node exports it in its own ANA group, in the state given, so that
    /// no host sees a path optimized that is not.
    /// </summary>
    public LocalVolume Export(
        VolumeRecord record,
        IBlockVolume storage,
        NamespaceReservations reservations,
        IBlockVolume? exported = null,
        uint anaGroupId = 1,
        AnaState anaState = AnaState.Optimized)
    {
        var metrics = _metrics.ForVolume(record.Name, record.SizeBytes);
        var ns = new TargetNamespace(VolumeRules.NamespaceId, exported ?? storage, record.Id) { Metrics = metrics, Reservations = reservations };
        var subsystem = new Subsystem(VolumeNaming.SubsystemNqn(record.Id), VolumeRules.SerialNumberOf(record.Id), record.AllowAnyHost, record.AllowedHosts)
        {
            AnaGroupId = anaGroupId,
        };
        subsystem.SetAnaState(anaState);
        HostSecrets.Apply(subsystem, record, Secrets, _logger);
        HostTlsPsks.Apply(subsystem, record, Secrets, _logger);
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

        var local = new LocalVolume(record, storage, subsystem, ns, metrics);
        _volumes[record.Name] = local;
        _metrics.SetVolumeCount(_volumes.Count);
        return local;
    }

    /// <summary>Stops serving a volume: its subsystem goes (tearing down the controllers) and it leaves this node's list.</summary>
    public void Unexport(LocalVolume local)
    {
        _target.RemoveSubsystem(local.Subsystem.Nqn);
        if (_volumes.TryRemove(new KeyValuePair<string, LocalVolume>(local.Record.Name, local)))
        {
            local.Metrics.Remove();
            _metrics.SetVolumeCount(_volumes.Count);
        }
    }

    /// <summary>
    /// The namespace's NVMe reservations as saved in the metadata store, which then receives every change.
    /// <paramref name="powerOn"/>: a start of the server, where without PTPL the saved reservations are released
    /// (NVM command set 1.0, 3.2.5); a new primary in a cluster takes them over as they are.
    /// </summary>
    public static Task<NamespaceReservations> LoadReservationsAsync(IMetadataStore store, Guid volumeId, bool powerOn, CancellationToken cancellationToken) =>
        NamespaceReservations.LoadAsync(volumeId, new MetadataReservationStore(store), powerOn, cancellationToken);

    /// <summary>Serves the subsystem again after an <see cref="Unexport"/> whose follow-up failed.</summary>
    public void Reexport(LocalVolume local)
    {
        _target.AddSubsystem(local.Subsystem);
        _volumes[local.Record.Name] = local;
        _metrics.SetVolumeCount(_volumes.Count);
    }

    // ---- descriptions ----

    /// <summary>The API view of a served volume, as this node sees it.</summary>
    public Volume Describe(LocalVolume local)
    {
        var record = local.Record;
        var volume = new Volume
        {
            Name = record.Name,
            Id = record.Id.ToString("D"),
            SizeBytes = (ulong)record.SizeBytes,
            BlockSize = (uint)record.BlockSize,
            SubsystemNqn = local.Subsystem.Nqn,
            Nguid = local.Namespace.NguidHex,
            Uuid = local.Namespace.Uuid.ToString("D"),
            AllowAnyHost = record.AllowAnyHost,
            Backend = _backend.Name,
            CreatedUnixMs = record.CreatedAt.ToUnixTimeMilliseconds(),
            Pool = record.Pool,
            AllocatedBytes = (ulong)_backend.AllocatedBytes(record.Pool, record.Id),
            ReplicaCount = (uint)Math.Max(1, record.ReplicaCount),
        };
        volume.AllowedHosts.AddRange(record.AllowedHosts);
        foreach (var (key, value) in record.Labels)
        {
            volume.Labels[key] = value;
        }

        volume.ListenAddresses.AddRange(ListenAddresses);
        volume.ConnectedHosts.AddRange(local.Subsystem.ConnectedHosts);
        HostSecrets.Describe(volume, record, local.Subsystem);
        HostTlsPsks.Describe(volume, record);
        return volume;
    }

    public Snapshot Describe(SnapshotRecord record)
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

    /// <summary>Pools with their space and how many of the given volumes and snapshots each holds.</summary>
    public IReadOnlyList<Pool> ListPools(IEnumerable<string> volumePools, IEnumerable<string> snapshotPools)
    {
        var volumesByPool = volumePools.GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var snapshotsByPool = snapshotPools.GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
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

    /// <summary>Flushes and closes every volume and the backend. The target must be disposed first so no I/O is in flight.</summary>
    public ValueTask DisposeAsync()
    {
        foreach (var local in _volumes.Values)
        {
            var status = local.Storage.Flush();
            if (status != StorageStatus.Success)
            {
                VolumeLog.FlushAtShutdownFailed(_logger, local.Record.Name, status.ToString());
            }

            local.Storage.Dispose();
        }

        _volumes.Clear();
        _backend.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A volume this node serves: the record it serves it by, and the live objects built from it.</summary>
public sealed class LocalVolume(VolumeRecord record, IBlockVolume storage, Subsystem subsystem, TargetNamespace ns, IVolumeMetrics metrics)
{
    private VolumeRecord _record = record;

    /// <summary>The record as last applied; replaced (never mutated) by whoever owns the volume's changes.</summary>
    public VolumeRecord Record
    {
        get => Volatile.Read(ref _record);
        set => Volatile.Write(ref _record, value);
    }

    public IBlockVolume Storage { get; } = storage;

    public Subsystem Subsystem { get; } = subsystem;

    public TargetNamespace Namespace { get; } = ns;

    public IVolumeMetrics Metrics { get; } = metrics;
}
