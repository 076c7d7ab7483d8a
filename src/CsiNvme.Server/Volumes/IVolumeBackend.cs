using CsiNvme.Storage;

namespace CsiNvme.Server.Volumes;

/// <summary>Creates, re-opens and removes the block storage behind volumes.</summary>
public interface IVolumeBackend
{
    /// <summary>"file" or "memory", as reported by the API.</summary>
    string Name { get; }

    IBlockVolume Create(Guid id, long sizeBytes, int blockSize);

    /// <summary>Re-opens the storage of an existing volume at server start.</summary>
    IBlockVolume Open(Guid id, int blockSize);

    /// <summary>Removes the storage of a deleted volume; the volume must be disposed first.</summary>
    void Delete(Guid id);
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

    public IBlockVolume Create(Guid id, long sizeBytes, int blockSize) => FileBlockVolume.Create(PathOf(id), sizeBytes, blockSize);

    public IBlockVolume Open(Guid id, int blockSize)
    {
        var path = PathOf(id);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"backing file {path} of volume {id} is missing", path);
        }

        return FileBlockVolume.Open(path, blockSize);
    }

    public void Delete(Guid id) => File.Delete(PathOf(id));
}

/// <summary>Volumes in RAM; nothing survives the process, so there is never anything to re-open.</summary>
public sealed class MemoryVolumeBackend : IVolumeBackend
{
    public string Name => "memory";

    public IBlockVolume Create(Guid id, long sizeBytes, int blockSize) => new MemoryBlockVolume(sizeBytes, blockSize);

    public IBlockVolume Open(Guid id, int blockSize) =>
        throw new InvalidOperationException($"volume {id} cannot be re-opened: the memory backend keeps nothing across restarts");

    public void Delete(Guid id)
    {
    }
}
