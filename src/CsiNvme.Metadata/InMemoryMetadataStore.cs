namespace CsiNvme.Metadata;

/// <summary>A store that lives and dies with the process, for the in-memory backend and tests.</summary>
public sealed class InMemoryMetadataStore : IMetadataStore
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, VolumeRecord> _volumes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SnapshotRecord> _snapshots = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PoolBinding> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<Guid, byte[]> _reservations = new();

    public string Description => "memory";

    public Guid StoreId { get; } = Guid.NewGuid();

    public Task<IReadOnlyList<PoolBinding>> ListPoolBindingsAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            IReadOnlyList<PoolBinding> list = _pools.Values.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
            return Task.FromResult(list);
        }
    }

    public Task SetPoolBindingAsync(PoolBinding binding, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(binding);
        ArgumentException.ThrowIfNullOrEmpty(binding.Name);
        lock (_lock)
        {
            _pools[binding.Name] = binding;
            return Task.CompletedTask;
        }
    }

    public Task<VolumeRecord?> GetVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult(_volumes.GetValueOrDefault(name));
        }
    }

    public Task<IReadOnlyList<VolumeRecord>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            IReadOnlyList<VolumeRecord> list = _volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).ToArray();
            return Task.FromResult(list);
        }
    }

    public Task<bool> TryCreateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord stored = VolumeRecordNormalization.Normalize(volume);
        lock (_lock)
        {
            if (_volumes.Values.Any(v => v.Id == stored.Id))
            {
                throw new InvalidOperationException($"A volume with id {stored.Id} already exists.");
            }

            return Task.FromResult(_volumes.TryAdd(stored.Name, stored));
        }
    }

    public Task<bool> UpdateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord update = VolumeRecordNormalization.Normalize(volume);
        lock (_lock)
        {
            if (!_volumes.TryGetValue(update.Name, out VolumeRecord? existing))
            {
                return Task.FromResult(false);
            }

            // Identity, creation time, pool and labels are fixed at creation; only the mutable fields are replaced.
            _volumes[update.Name] = update with { Id = existing.Id, CreatedAt = existing.CreatedAt, Pool = existing.Pool, Labels = existing.Labels };
            return Task.FromResult(true);
        }
    }

    public Task<bool> DeleteVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (!_volumes.Remove(name, out VolumeRecord? removed))
            {
                return Task.FromResult(false);
            }

            _reservations.Remove(removed.Id);
            return Task.FromResult(true);
        }
    }

    public Task<byte[]?> GetReservationStateAsync(Guid volumeId, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult(_reservations.TryGetValue(volumeId, out byte[]? state) ? (byte[]?)state.ToArray() : null);
        }
    }

    public Task SaveReservationStateAsync(Guid volumeId, byte[] state, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        lock (_lock)
        {
            if (!_volumes.Values.Any(v => v.Id == volumeId))
            {
                throw new InvalidOperationException($"no volume has id {volumeId}");
            }

            _reservations[volumeId] = state.ToArray();
            return Task.CompletedTask;
        }
    }

    public Task<SnapshotRecord?> GetSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult(_snapshots.GetValueOrDefault(name));
        }
    }

    public Task<IReadOnlyList<SnapshotRecord>> ListSnapshotsAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            IReadOnlyList<SnapshotRecord> list = _snapshots.Values.OrderBy(s => s.Name, StringComparer.Ordinal).ToArray();
            return Task.FromResult(list);
        }
    }

    public Task<bool> TryCreateSnapshotAsync(SnapshotRecord snapshot, CancellationToken cancellationToken = default)
    {
        SnapshotRecord stored = VolumeRecordNormalization.Normalize(snapshot);
        lock (_lock)
        {
            if (_snapshots.Values.Any(s => s.Id == stored.Id))
            {
                throw new InvalidOperationException($"A snapshot with id {stored.Id} already exists.");
            }

            return Task.FromResult(_snapshots.TryAdd(stored.Name, stored));
        }
    }

    public Task<bool> DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult(_snapshots.Remove(name));
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
