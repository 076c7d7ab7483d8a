using CsiNvme.Storage;
using CsiNvme.Storage.Thin;

namespace CsiNvme.Volumes.Backends;

/// <summary>
/// Space of one storage pool, as reported by the API and metrics. <paramref name="ReserveBytes"/> is the free space
/// snapshots may not promise away (--pool-reserve); <paramref name="OutOfSpace"/> is set from a write that failed for
/// lack of space until space comes back.
/// </summary>
public sealed record PoolStatus(
    string Name,
    string DataPath,
    string JournalPath,
    int ClusterSize,
    long CapacityBytes,
    long UsedBytes,
    long FreeBytes,
    Guid Id = default,
    long ReserveBytes = 0,
    bool OutOfSpace = false);

/// <summary>
/// An image (volume or snapshot) found in a pool, with what the pool records about it: for reconciling pools with the
/// metadata store and for rebuilding lost records (<paramref name="Annotation"/> holds the rest of the record).
/// </summary>
public sealed record PoolImage(
    Guid Id,
    bool IsSnapshot,
    string Name,
    long SizeBytes,
    int BlockSize,
    DateTimeOffset CreatedAt,
    ThinImageState State,
    string Annotation)
{
    public string Kind => IsSnapshot ? "snapshot" : "volume";
}

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

    /// <summary>
    /// Creates the storage of a new volume. Backends with pools keep <paramref name="annotation"/> with it and create
    /// it pending (see <see cref="ISnapshotBackend.SetImageState"/>); the others ignore both.
    /// </summary>
    IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize, string annotation);

    /// <summary>Re-opens the storage of an existing volume at server start.</summary>
    IBlockVolume Open(string pool, Guid id, int blockSize);

    /// <summary>Removes the storage of a deleted volume; the volume must be disposed first.</summary>
    void Delete(string pool, Guid id);

    /// <summary>Pool space held by the image's own clusters; 0 when the backend does not track it.</summary>
    long AllocatedBytes(string pool, Guid id);
}

/// <summary>
/// A backend that can snapshot and clone volumes, within one pool, and that keeps with every image (volume or
/// snapshot) a lifecycle state and an annotation. New images are pending until <see cref="SetImageState"/> commits them.
/// </summary>
public interface ISnapshotBackend
{
    /// <summary>
    /// Durable on return; returns the snapshot's size in bytes. Refused (RESOURCE_EXHAUSTED) when the pool's free space
    /// beyond its reserve could not take an overwrite of everything the volume would then share with the snapshot.
    /// </summary>
    long CreateSnapshot(string pool, Guid volumeId, Guid snapshotId, string name, string annotation);

    void DeleteSnapshot(string pool, Guid snapshotId);

    IBlockVolume CloneFromSnapshot(string pool, Guid id, string name, Guid snapshotId, long sizeBytes, int blockSize, string annotation);

    /// <summary>Takes a hidden snapshot of the source, so it is refused as <see cref="CreateSnapshot"/> is.</summary>
    IBlockVolume CloneFromVolume(string pool, Guid id, string name, Guid sourceVolumeId, long sizeBytes, int blockSize, string annotation);

    /// <summary>Live (not deleted) images of a pool.</summary>
    IReadOnlyList<PoolImage> ListImages(string pool);

    /// <summary>Durable on return.</summary>
    void SetImageState(string pool, Guid id, ThinImageState state);

    /// <summary>The image's annotation; "" when it has none or does not exist.</summary>
    string GetImageAnnotation(string pool, Guid id);

    /// <summary>Replaces the image's annotation; durable on return.</summary>
    void SetImageAnnotation(string pool, Guid id, string annotation);

    /// <summary>What the pool keeps about its owner (the metadata store it is used with); "" when nothing.</summary>
    string GetPoolAnnotation(string pool);

    /// <summary>Durable on return.</summary>
    void SetPoolAnnotation(string pool, string annotation);
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

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize, string annotation) =>
        FileBlockVolume.Create(PathOf(id), sizeBytes, blockSize);

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

    public IBlockVolume Create(string pool, Guid id, string name, long sizeBytes, int blockSize, string annotation) =>
        new MemoryBlockVolume(sizeBytes, blockSize);

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
