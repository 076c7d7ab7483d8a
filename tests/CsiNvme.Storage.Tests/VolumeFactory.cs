namespace CsiNvme.Storage.Tests;

/// <summary>Lets the same behavioural tests run against every backend.</summary>
public enum Backend
{
    File,
    Memory,
}

internal static class VolumeFactory
{
    public static IBlockVolume Create(Backend backend, TempDirectory dir, long sizeBytes, int blockSize = 512) => backend switch
    {
        Backend.File => FileBlockVolume.Create(dir.Combine($"vol-{Guid.NewGuid():N}.img"), sizeBytes, blockSize),
        Backend.Memory => new MemoryBlockVolume(sizeBytes, blockSize),
        _ => throw new ArgumentOutOfRangeException(nameof(backend)),
    };

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        var random = new Random(seed);
        random.NextBytes(data);
        return data;
    }
}
