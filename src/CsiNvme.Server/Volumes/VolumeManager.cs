using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Server.Metrics;
using CsiNvme.Storage;
using CsiNvme.Target;
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

    /// <summary>The NVMe/TCP endpoints reported in every volume's listen_addresses.</summary>
    public void SetListenAddresses(IEnumerable<IPEndPoint> endpoints) =>
        Volatile.Write(ref _listenAddresses, endpoints.Select(e => e.ToString()).ToArray());

    /// <summary>Re-opens and exports every volume of the metadata store (server start).</summary>
    public async Task LoadAsync(CancellationToken cancellationToken = default)
    {
        await _mutation.WaitAsync(cancellationToken);
        try
        {
            foreach (var stored in await _store.ListVolumesAsync(cancellationToken))
            {
                var record = stored;
                IBlockVolume storage;
                try
                {
                    storage = _backend.Open(record.Id, record.BlockSize);
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"volume {record.Name} (id {record.Id}) cannot be opened: {e.Message}", e);
                }

                try
                {
                    record = await ReconcileSizeAsync(record, storage);
                    Export(record, storage);
                }
                catch
                {
                    storage.Dispose();
                    throw;
                }

                ServerLog.VolumeLoaded(_logger, record.Name, record.Id, record.SizeBytes, VolumeNaming.SubsystemNqn(record.Id));
            }

            _metrics.SetVolumeCount(_volumes.Count);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<Volume> CreateAsync(
        string name,
        ulong requestedSizeBytes,
        uint blockSize,
        bool allowAnyHost,
        IEnumerable<string> allowedHosts,
        CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        var sizeBytes = RoundSize(requestedSizeBytes);
        var effectiveBlockSize = blockSize switch
        {
            0 => DefaultBlockSize,
            512 or 4096 => (int)blockSize,
            _ => throw new VolumeException(VolumeError.InvalidArgument, $"block size {blockSize} is not supported; use 512 or 4096"),
        };
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
            IBlockVolume storage;
            try
            {
                storage = _backend.Create(id, sizeBytes, effectiveBlockSize);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or OutOfMemoryException or ArgumentException)
            {
                throw new VolumeException(VolumeError.Internal, $"creating the storage of volume {name} failed: {e.Message}", e);
            }

            var record = new VolumeRecord(
                id,
                name,
                sizeBytes,
                effectiveBlockSize,
                allowAnyHost,
                hosts.ToArray(),
                DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
            bool created;
            try
            {
                created = await _store.TryCreateVolumeAsync(record, CancellationToken.None);
            }
            catch (Exception e)
            {
                DiscardStorage("create", name, id, storage);
                throw new VolumeException(VolumeError.Internal, $"recording volume {name} in the metadata store failed: {e.Message}", e);
            }

            if (!created)
            {
                DiscardStorage("create", name, id, storage);
                throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists in the metadata store");
            }

            var managed = Export(record, storage);
            _metrics.SetVolumeCount(_volumes.Count);
            ServerLog.VolumeCreated(_logger, name, id, sizeBytes, (long)requestedSizeBytes, effectiveBlockSize, managed.Subsystem.Nqn);
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
                await _store.DeleteVolumeAsync(name, CancellationToken.None);
            }
            catch (Exception e)
            {
                _target.AddSubsystem(managed.Subsystem);
                throw new VolumeException(VolumeError.Internal, $"removing volume {name} from the metadata store failed: {e.Message}", e);
            }

            _volumes.TryRemove(name, out _);
            managed.Metrics.Remove();
            _metrics.SetVolumeCount(_volumes.Count);
            DiscardStorage("delete", name, record.Id, managed.Storage);
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
        }
        finally
        {
            _mutation.Release();
        }
    }

    internal IBlockVolume? FindStorage(string name) => _volumes.TryGetValue(name, out var v) ? v.Storage : null;

    private static void ValidateName(string name)
    {
        if (!VolumeNaming.IsValidVolumeName(name, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, error!);
        }
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

    private ManagedVolume Export(VolumeRecord record, IBlockVolume storage)
    {
        var metrics = _metrics.ForVolume(record.Name, record.SizeBytes);
        var ns = new TargetNamespace(NamespaceId, storage, record.Id) { Metrics = metrics };
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

    private void DiscardStorage(string operation, string name, Guid id, IBlockVolume storage)
    {
        try
        {
            storage.Dispose();
            _backend.Delete(id);
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
        };
        volume.AllowedHosts.AddRange(record.AllowedHosts);
        volume.ListenAddresses.AddRange(Volatile.Read(ref _listenAddresses));
        volume.ConnectedHosts.AddRange(managed.Subsystem.ConnectedHosts);
        return volume;
    }
}
