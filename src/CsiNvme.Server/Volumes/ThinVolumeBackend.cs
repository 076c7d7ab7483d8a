using System.Text.RegularExpressions;
using CsiNvme.Storage;
using CsiNvme.Storage.Thin;

namespace CsiNvme.Server.Volumes;

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

    private readonly (string Name, ThinPool Pool, string JournalPath)[] _pools;

    private ThinVolumeBackend((string Name, ThinPool Pool, string JournalPath)[] pools)
    {
        _pools = pools;
    }

    public string Name => "thin";

    /// <summary>
    /// Opens (creating when missing) every pool. With no definitions the embedded pool
    /// DATA_DIR/pools/default.pool is used, created sparse with the size of the file system's free space.
    /// </summary>
    public static ThinVolumeBackend Open(IReadOnlyList<PoolDefinition> definitions, string dataDirectory)
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

        var opened = new List<(string, ThinPool, string)>();
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

                if (opened.Any(p => p.Item1 == name))
                {
                    throw new ArgumentException($"two pools are named {name}; pool names come from the file names and must differ");
                }

                // A raw device has no file system beside it for the journal, so it goes into the data directory.
                var journalPath = IsDevice(dataPath) ? Path.Combine(poolsDirectory, name + ".journal") : dataPath + ".journal";
                try
                {
                    var pool = ThinPool.Open(new ThinPoolOptions { DataPath = dataPath, SizeBytes = definition.SizeBytes, JournalPath = journalPath });
                    opened.Add((name, pool, journalPath));
                }
                catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
                {
                    throw new IOException($"pool {name} ({dataPath}) cannot be opened: {e.Message}", e);
                }
            }
        }
        catch
        {
            foreach (var (_, pool, _) in opened)
            {
                pool.Dispose();
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
            return new PoolStatus(p.Name, p.Pool.DataPath, p.JournalPath, p.Pool.ClusterSize, capacity, used, capacity - used);
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

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize) =>
        PoolNamed(pool).CreateVolume(id, name, sizeBytes, blockSize);

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

    public long CreateSnapshot(string pool, Guid volumeId, Guid snapshotId, string name) =>
        PoolNamed(pool).CreateSnapshot(volumeId, snapshotId, name).SizeBytes;

    public void DeleteSnapshot(string pool, Guid snapshotId) => PoolNamed(pool).DeleteSnapshot(snapshotId);

    public IBlockVolume CloneFromSnapshot(string pool, Guid id, string name, Guid snapshotId, long sizeBytes, int blockSize) =>
        PoolNamed(pool).CloneFromSnapshot(id, name, snapshotId, sizeBytes, blockSize);

    public IBlockVolume CloneFromVolume(string pool, Guid id, string name, Guid sourceVolumeId, long sizeBytes, int blockSize) =>
        PoolNamed(pool).CloneFromVolume(id, name, sourceVolumeId, sizeBytes, blockSize);

    public IReadOnlyList<PoolImage> ListImages(string pool) =>
        PoolNamed(pool).ListImages().Where(i => !i.Deleted).Select(i => new PoolImage(i.Id, i.Kind == ThinImageKind.Snapshot)).ToArray();

    /// <summary>Commits and closes every pool.</summary>
    public void Dispose()
    {
        List<Exception>? errors = null;
        foreach (var (_, pool, _) in _pools)
        {
            try
            {
                pool.Dispose();
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

    private ThinPool? TryPool(string name)
    {
        foreach (var (poolName, pool, _) in _pools)
        {
            if (poolName == name)
            {
                return pool;
            }
        }

        return null;
    }

    private ThinPool PoolNamed(string name) =>
        TryPool(name) ?? throw new InvalidOperationException(
            $"pool {name} is not configured; give it with --pool (configured: {string.Join(", ", _pools.Select(p => p.Name))})");

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex PoolName();
}
