using System.Text.RegularExpressions;
using CsiNvme.Api;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes.Backends;

/// <summary>
/// Thin volumes, snapshots and clones in one or more <see cref="ThinPool"/>s. A volume lives in one pool for its
/// whole life; snapshots and clones stay in their source's pool because they share its clusters.
/// </summary>
public sealed partial class ThinVolumeBackend : IVolumeBackend, ISnapshotBackend
{
    public const string DefaultPoolName = "default";
    public const string PoolsDirectoryName = "pools";

    /// <summary>The embedded pool is refused below this: a few volumes' worth of clusters and metadata.</summary>
    public const long MinimumDefaultPoolBytes = 64L << 20;

    private readonly PoolEntry[] _pools;

    private ThinVolumeBackend(PoolEntry[] pools)
    {
        _pools = pools;
    }

    private sealed record PoolEntry(string Name, ThinPool Pool, string JournalPath, PoolReserve Reserve)
    {
        public long ReserveBytes => Reserve.BytesOf(Pool.CapacityBytes);
    }

    public string Name => "thin";

    /// <summary>
    /// Opens (creating when missing) every pool. With no definitions the embedded pool
    /// DATA_DIR/pools/default.pool is used, created sparse with the size of the file system's free space.
    /// Running out of space, and having space again, is logged once per change with the pool's name.
    /// </summary>
    public static ThinVolumeBackend Open(IReadOnlyList<PoolDefinition> definitions, string dataDirectory, IReadOnlyList<PoolReserve> reserves, ILogger logger)
    {
        var poolsDirectory = Path.Combine(dataDirectory, PoolsDirectoryName);
        Directory.CreateDirectory(poolsDirectory);
        if (definitions.Count == 0)
        {
            var path = Path.Combine(poolsDirectory, DefaultPoolName + ".pool");
            long? size = null;
            if (!File.Exists(path))
            {
                // Sparse: the pool costs nothing until written, and thin volumes may promise more than this anyway.
                var free = new DriveInfo(poolsDirectory).AvailableFreeSpace;
                if (free < MinimumDefaultPoolBytes)
                {
                    throw new IOException($"{poolsDirectory} has {free} bytes free; the default pool needs at least {MinimumDefaultPoolBytes}");
                }

                size = free / (1L << 20) * (1L << 20);
            }

            definitions = [new PoolDefinition(path, size)];
        }

        var names = definitions.Select(d => PoolNameOf(Path.GetFullPath(d.Path))).ToArray();
        foreach (var reserve in reserves.Where(r => r.Pool is not null && !names.Contains(r.Pool)))
        {
            throw new ArgumentException($"--pool-reserve {reserve}: there is no pool named {reserve.Pool}; pools: {string.Join(", ", names)}");
        }

        var opened = new List<PoolEntry>();
        try
        {
            foreach (var definition in definitions)
            {
                var dataPath = Path.GetFullPath(definition.Path);
                var name = PoolNameOf(dataPath);
                if (!IsValidPoolName(name))
                {
                    throw new ArgumentException($"pool {dataPath}: its name '{name}' (the file name without extension) must be 1 to 64 of [A-Za-z0-9._-]");
                }

                if (opened.Any(p => p.Name == name))
                {
                    throw new ArgumentException($"two pools are named {name}; pool names come from the file names and must differ");
                }

                // A raw device has no file system beside it for the journal, so it goes into the data directory.
                var journalPath = IsDevice(dataPath) ? Path.Combine(poolsDirectory, name + ".journal") : dataPath + ".journal";
                try
                {
                    var pool = ThinPool.Open(new ThinPoolOptions
                    {
                        DataPath = dataPath,
                        SizeBytes = definition.SizeBytes,
                        JournalPath = journalPath,
                        SpaceObserver = new PoolSpaceLog(name, logger),
                    });
                    opened.Add(new PoolEntry(name, pool, journalPath, PoolReserve.For(name, reserves)));
                }
                catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
                {
                    throw new IOException($"pool {name} ({dataPath}) cannot be opened: {e.Message}", e);
                }
            }
        }
        catch
        {
            foreach (var entry in opened)
            {
                entry.Pool.Dispose();
            }

            throw;
        }

        return new ThinVolumeBackend([.. opened]);
    }

    /// <summary>"/srv/fast.img" is pool "fast", "/dev/sdb" is pool "sdb".</summary>
    public static string PoolNameOf(string path) => Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path));

    public static bool IsValidPoolName(string name) => PoolName().IsMatch(name);

    public static bool IsDevice(string path) => path.StartsWith("/dev/", StringComparison.Ordinal);

    public IReadOnlyList<PoolStatus> GetPools() =>
        _pools.Select(p =>
        {
            // One read each: used and free must add up to capacity even while writes allocate.
            var capacity = p.Pool.CapacityBytes;
            var used = p.Pool.UsedBytes;
            return new PoolStatus(
                p.Name, p.Pool.DataPath, p.JournalPath, p.Pool.ClusterSize, capacity, used, capacity - used, p.Pool.PoolId, p.ReserveBytes, p.Pool.IsOutOfSpace);
        }).ToArray();

    public string PlaceVolume(string? requested)
    {
        if (!string.IsNullOrEmpty(requested))
        {
            return _pools.Any(p => p.Name == requested)
                ? requested
                : throw new VolumeException(VolumeError.InvalidArgument, $"there is no pool named {requested}; pools: {string.Join(", ", _pools.Select(p => p.Name))}");
        }

        // Most free space first; ties go to the pool listed first.
        var best = _pools[0];
        foreach (var candidate in _pools.Skip(1))
        {
            if (candidate.Pool.FreeBytes > best.Pool.FreeBytes)
            {
                best = candidate;
            }
        }

        return best.Name;
    }

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize, string annotation) =>
        PoolNamed(pool).CreateVolume(id, name, sizeBytes, blockSize, ThinImageState.Pending, annotation);

    public IBlockVolume Open(string pool, Guid id, int blockSize)
    {
        if (pool.Length == 0)
        {
            throw new InvalidOperationException("it has no pool: it was created by the file backend; start the server with --backend file to serve it");
        }

        var volume = PoolNamed(pool).OpenVolume(id);
        if (volume.BlockSize != blockSize)
        {
            throw new InvalidDataException($"pool {pool} holds it with {volume.BlockSize}-byte blocks, the metadata says {blockSize}");
        }

        return volume;
    }

    public void Delete(string pool, Guid id) => PoolNamed(pool).DeleteVolume(id);

    public long AllocatedBytes(string pool, Guid id) => TryPool(pool)?.GetImage(id)?.OwnedBytes ?? 0;

    public long CreateSnapshot(string pool, Guid volumeId, Guid snapshotId, string name, string annotation)
    {
        var entry = EntryNamed(pool);
        EnsureOverwritesFit(entry, volumeId, source => $"snapshot {name} of volume {source} refused", "the snapshot");
        return entry.Pool.CreateSnapshot(volumeId, snapshotId, name, ThinImageState.Pending, annotation).SizeBytes;
    }

    public void DeleteSnapshot(string pool, Guid snapshotId) => PoolNamed(pool).DeleteSnapshot(snapshotId);

    public IBlockVolume CloneFromSnapshot(string pool, Guid id, string name, Guid snapshotId, long sizeBytes, int blockSize, string annotation) =>
        PoolNamed(pool).CloneFromSnapshot(id, name, snapshotId, sizeBytes, blockSize, ThinImageState.Pending, annotation);

    public IBlockVolume CloneFromVolume(string pool, Guid id, string name, Guid sourceVolumeId, long sizeBytes, int blockSize, string annotation)
    {
        var entry = EntryNamed(pool);
        EnsureOverwritesFit(entry, sourceVolumeId, source => $"cloning volume {source} into volume {name} refused", "the clone");
        return entry.Pool.CloneFromVolume(id, name, sourceVolumeId, sizeBytes, blockSize, ThinImageState.Pending, annotation);
    }

    public IReadOnlyList<PoolImage> ListImages(string pool) =>
        PoolNamed(pool).ListImages()
            .Where(i => !i.Deleted)
            .Select(i => new PoolImage(i.Id, i.Kind == ThinImageKind.Snapshot, i.Name, i.SizeBytes, i.BlockSize, i.CreatedAt, i.State, i.Annotation))
            .ToArray();

    public void SetImageState(string pool, Guid id, ThinImageState state) => PoolNamed(pool).SetImageState(id, state);

    public string GetImageAnnotation(string pool, Guid id) => TryPool(pool)?.GetImage(id)?.Annotation ?? "";

    public void SetImageAnnotation(string pool, Guid id, string annotation) => PoolNamed(pool).SetImageAnnotation(id, annotation);

    public string GetPoolAnnotation(string pool) => PoolNamed(pool).Annotation;

    public void SetPoolAnnotation(string pool, string annotation) => PoolNamed(pool).SetAnnotation(annotation);

    /// <summary>
    /// After a snapshot (or the hidden one of a clone from a volume) every cluster the volume owns is shared, so each
    /// overwrite of it needs a new cluster: refused unless the pool's free space beyond its reserve covers them all,
    /// so a snapshot cannot leave the pool unable to take the volume's writes. Checked before, not atomically with,
    /// the snapshot: writes in between are the usual thin-provisioning risk that the reserve is there for.
    /// </summary>
    private static void EnsureOverwritesFit(PoolEntry entry, Guid volumeId, Func<string, string> refused, string sharer)
    {
        var volume = entry.Pool.GetImage(volumeId);
        if (volume is null || volume.Kind != ThinImageKind.Volume)
        {
            // The pool's own call reports it.
            return;
        }

        var shared = volume.OwnedBytes;
        var free = entry.Pool.FreeBytes;
        var reserve = entry.ReserveBytes;
        var beyondReserve = Math.Max(0, free - reserve);
        if (shared == 0 || shared <= beyondReserve)
        {
            return;
        }

        throw new VolumeException(
            VolumeError.ResourceExhausted,
            $"{refused(volume.Name)}: pool {entry.Name} has {ByteSize.Format(free)} free and keeps {ByteSize.Format(reserve)} of it in reserve " +
            $"(--pool-reserve {entry.Reserve.Amount}); " +
            $"overwriting volume {volume.Name} afterwards can need up to {ByteSize.Format(shared)} of new space (the data it would share with {sharer}), " +
            $"more than the {ByteSize.Format(beyondReserve)} beyond the reserve. Free space in pool {entry.Name} (delete snapshots or volumes it holds) or lower its reserve");
    }

    /// <summary>Commits and closes every pool.</summary>
    public void Dispose()
    {
        List<Exception>? errors = null;
        foreach (var entry in _pools)
        {
            try
            {
                entry.Pool.Dispose();
            }
            catch (Exception e)
            {
                (errors ??= []).Add(e);
            }
        }

        if (errors is not null)
        {
            throw new AggregateException("closing the pools failed", errors);
        }
    }

    private ThinPool? TryPool(string name) => Array.Find(_pools, p => p.Name == name)?.Pool;

    private ThinPool PoolNamed(string name) => EntryNamed(name).Pool;

    private PoolEntry EntryNamed(string name) =>
        Array.Find(_pools, p => p.Name == name) ?? throw new InvalidOperationException(
            $"pool {name} is not configured; give it with --pool (configured: {string.Join(", ", _pools.Select(p => p.Name))})");

    /// <summary>Logs a pool running out of space once, with the volume whose write found none, and once when space is back.</summary>
    private sealed class PoolSpaceLog(string poolName, ILogger logger) : IThinPoolSpaceObserver
    {
        public void OutOfSpace(ThinPool pool, string imageName, bool noFreeCluster)
        {
            if (noFreeCluster)
            {
                VolumeLog.PoolFull(logger, poolName, imageName, pool.CapacityBytes);
            }
            else
            {
                VolumeLog.PoolFileSystemFull(logger, poolName, imageName, pool.DataPath, pool.FreeBytes);
            }
        }

        public void SpaceAvailable(ThinPool pool) => VolumeLog.PoolSpaceAvailable(logger, poolName, pool.FreeBytes, pool.CapacityBytes);
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex PoolName();
}
