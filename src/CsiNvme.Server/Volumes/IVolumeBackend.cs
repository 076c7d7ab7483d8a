using CsiNvme.Storage;

namespace CsiNvme.Server.Volumes;

/// <summary>Space of one storage pool, as reported by the API and metrics.</summary>
public sealed record PoolStatus(string Name, string DataPath, string JournalPath, int ClusterSize, long CapacityBytes, long UsedBytes, long FreeBytes);

/// <summary>An image (volume or snapshot) found in a pool, for reconciling pools with the metadata store.</summary>
public sealed record PoolImage(Guid Id, bool IsSnapshot);

/// <summary>Creates, re-opens and removes the block storage behind volumes.</summary>
public interface IVolumeBackend : IDisposable
{
    /// <summary>"thin", "file" or "memory", as reported by the API.</summary>
    string Name { get; }

    /// <summary>Storage pools with their current space; empty for backends without pools.</summary>
    IReadOnlyList<PoolStatus> GetPools();

    /// <summary>
    /// The pool a new volume goes to: <paramref name="requested"/> when given (it must exist), otherwise the
    /// backend's choice; "" for backends without pools.
    /// </summary>
    string PlaceVolume(string? requested);

    IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize);

    /// <summary>Re-opens the storage of an existing volume at server start.</summary>
    IBlockVolume Open(string pool, Guid id, int blockSize);

    /// <summary>Removes the storage of a deleted volume; the volume must be disposed first.</summary>
    void Delete(string pool, Guid id);

    /// <summary>Pool space held by the image's own clusters; 0 when the backend does not track it.</summary>
    long AllocatedBytes(string pool, Guid id);
}

/// <summary>A backend that can snapshot and clone volumes, within one pool.</summary>
public interface ISnapshotBackend
{
    /// <summary>Durable on return; returns the snapshot's size in bytes.</summary>
    long CreateSnapshot(string pool, Guid volumeId, Guid snapshotId, string name);

    void DeleteSnapshot(string pool, Guid snapshotId);

    IBlockVolume CloneFromSnapshot(string pool, Guid id, string name, Guid snapshotId, long sizeBytes, int blockSize);

    IBlockVolume CloneFromVolume(string pool, Guid id, string name, Guid sourceVolumeId, long sizeBytes, int blockSize);

    /// <summary>Live (not deleted) images of a pool.</summary>
    IReadOnlyList<PoolImage> ListImages(string pool);
}

/// <summary>One sparse file per volume: DataDirectory/volumes/&lt;id&gt;.img.</summary>
public sealed class FileVolumeBackend : IVolumeBackend
{
    public FileVolumeBackend(string volumesDirectory)
    {
        VolumesDirectory = volumesDirectory;
        Directory.CreateDirectory(volumesDirectory);
    }

    public string Name => "file";

    public string VolumesDirectory { get; }

    public string PathOf(Guid id) => Path.Combine(VolumesDirectory, $"{id:D}.img");

    public IReadOnlyList<PoolStatus> GetPools() => [];

    public string PlaceVolume(string? requested) => NoPools.Place(Name, requested);

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize) => FileBlockVolume.Create(PathOf(id), sizeBytes, blockSize);

    public IBlockVolume Open(string pool, Guid id, int blockSize)
    {
        NoPools.RequireNone(Name, pool);
        var path = PathOf(id);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"backing file {path} of volume {id} is missing", path);
        }

        return FileBlockVolume.Open(path, blockSize);
    }

    public void Delete(string pool, Guid id) => File.Delete(PathOf(id));

    public long AllocatedBytes(string pool, Guid id) => 0;

    public void Dispose()
    {
    }
}

/// <summary>Volumes in RAM; nothing survives the process, so there is never anything to re-open.</summary>
public sealed class MemoryVolumeBackend : IVolumeBackend
{
    public string Name => "memory";

    public IReadOnlyList<PoolStatus> GetPools() => [];

    public string PlaceVolume(string? requested) => NoPools.Place(Name, requested);

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize) => new MemoryBlockVolume(sizeBytes, blockSize);

    public IBlockVolume Open(string pool, Guid id, int blockSize) =>
        throw new InvalidOperationException($"volume {id} cannot be re-opened: the memory backend keeps nothing across restarts");

    public void Delete(string pool, Guid id)
    {
    }

    public long AllocatedBytes(string pool, Guid id) => 0;

    public void Dispose()
    {
    }
}

internal static class NoPools
{
    public static string Place(string backend, string? requested) =>
        string.IsNullOrEmpty(requested)
            ? ""
            : throw new VolumeException(VolumeError.FailedPrecondition, $"the {backend} backend has no pools; pool {requested} needs --backend thin");

    /// <summary>A record with a pool was written by the thin backend; serving it from files would serve nothing.</summary>
    public static void RequireNone(string backend, string pool)
    {
        if (pool.Length > 0)
        {
            throw new InvalidOperationException($"it lives in thin pool {pool}; start the server with --backend thin to serve it, not --backend {backend}");
        }
    }
}
