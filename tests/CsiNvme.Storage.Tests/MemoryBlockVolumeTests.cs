namespace CsiNvme.Storage.Tests;

public sealed class MemoryBlockVolumeTests
{
    private const long TiB = 1L << 40;

    [Test]
    public void AHugeVolumeCostsNothingUntilWrittenAndDeallocateFreesWholeChunks()
    {
        using var volume = new MemoryBlockVolume(TiB, 4096);
        Assert.That(volume.AllocatedBytes, Is.Zero);

        byte[] data = VolumeFactory.Pattern(4096, 11);
        Assert.That(volume.Write(TiB - 4096, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Write(MemoryBlockVolume.ChunkSize * 7L, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.AllocatedBytes, Is.EqualTo(2L * MemoryBlockVolume.ChunkSize));

        // A partial chunk is zeroed in place; only a whole chunk is released.
        Assert.That(volume.Deallocate(MemoryBlockVolume.ChunkSize * 7L, 4096), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.AllocatedBytes, Is.EqualTo(2L * MemoryBlockVolume.ChunkSize));
        Assert.That(volume.Deallocate(TiB - MemoryBlockVolume.ChunkSize, MemoryBlockVolume.ChunkSize), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.AllocatedBytes, Is.EqualTo(1L * MemoryBlockVolume.ChunkSize));

        var back = new byte[4096];
        Assert.That(volume.Read(TiB - 4096, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.All.EqualTo(0));
    }

    [Test]
    public void ConcurrentFirstWritesToOneChunkKeepEveryWrite()
    {
        // All threads race to allocate the same chunk; the loser's block must not land in a discarded array.
        for (int round = 0; round < 20; round++)
        {
            using var volume = new MemoryBlockVolume(MemoryBlockVolume.ChunkSize, 512);
            Parallel.For(0, 16, i =>
            {
                byte[] data = VolumeFactory.Pattern(512, i);
                Assert.That(volume.Write(i * 512L, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            });

            var back = new byte[512];
            for (int i = 0; i < 16; i++)
            {
                Assert.That(volume.Read(i * 512L, back), Is.EqualTo(StorageStatus.Success));
                Assert.That(back, Is.EqualTo(VolumeFactory.Pattern(512, i)), $"round {round} block {i}");
            }
        }
    }

    [Test]
    public void PrefetchIsOnlyAHintForAnyRange()
    {
        using var volume = new MemoryBlockVolume(4L * MemoryBlockVolume.ChunkSize, 512);
        byte[] data = VolumeFactory.Pattern(8192, 5);
        Assert.That(volume.Write(MemoryBlockVolume.ChunkSize - 4096, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        long allocated = volume.AllocatedBytes;

        // Written, spanning two chunks, a hole, past the end, negative, empty: none fails, allocates or changes data.
        volume.Prefetch(MemoryBlockVolume.ChunkSize - 4096, 8192);
        volume.Prefetch(3L * MemoryBlockVolume.ChunkSize, 4096);
        volume.Prefetch(4L * MemoryBlockVolume.ChunkSize - 512, 4096);
        volume.Prefetch(-512, 4096);
        volume.Prefetch(0, 0);
        Assert.That(volume.AllocatedBytes, Is.EqualTo(allocated));
        var back = new byte[8192];
        Assert.That(volume.Read(MemoryBlockVolume.ChunkSize - 4096, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.EqualTo(data));

        volume.Dispose();
        volume.Prefetch(0, 4096);
    }
}
