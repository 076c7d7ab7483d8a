namespace CsiNvme.Storage.Tests;

[TestFixture(Backend.File)]
[TestFixture(Backend.Memory)]
public sealed class BlockVolumeTests(Backend backend)
{
    private const int MiB = 1 << 20;
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-storage");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void ReadAfterWriteAcrossChunkBoundaries()
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, 4 * MiB);
        byte[] data = VolumeFactory.Pattern(MiB + 3 * 4096, seed: 1);
        long offset = MiB - 4096;

        Assert.That(volume.Write(offset, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var back = new byte[data.Length];
        Assert.That(volume.Read(offset, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.EqualTo(data));
    }

    [Test]
    public void UnwrittenRangesReadAsZeros()
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, 4 * MiB);
        Assert.That(volume.Write(2 * MiB, VolumeFactory.Pattern(512, 2), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        byte[] buffer = Enumerable.Repeat((byte)0xAA, 8192).ToArray();
        Assert.That(volume.Read(MiB, buffer), Is.EqualTo(StorageStatus.Success));
        Assert.That(buffer, Is.All.EqualTo(0));
    }

    [Test]
    public void DeallocateAndWriteZeroesReadBackAsZeros([Values] bool deallocate)
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, 4 * MiB);
        byte[] data = VolumeFactory.Pattern(3 * MiB, seed: 3);
        Assert.That(volume.Write(0, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        // A range that covers one whole chunk and parts of its neighbours.
        long start = MiB - 1024;
        long length = MiB + 2048 + 512;
        StorageStatus status = deallocate ? volume.Deallocate(start, length) : volume.WriteZeroes(start, length);
        Assert.That(status, Is.EqualTo(StorageStatus.Success));

        var back = new byte[data.Length];
        Assert.That(volume.Read(0, back), Is.EqualTo(StorageStatus.Success));
        byte[] expected = (byte[])data.Clone();
        Array.Clear(expected, (int)start, (int)length);
        Assert.That(back, Is.EqualTo(expected));
    }

    [Test]
    public void RangesPastTheEndAreRefused()
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, MiB);
        var buffer = new byte[4096];
        Assert.Multiple(() =>
        {
            Assert.That(volume.Read(MiB - 2048, buffer), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.Write(MiB, buffer, forceUnitAccess: false), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.Read(-512, buffer), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.Write(long.MaxValue - 10, buffer, forceUnitAccess: false), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.Deallocate(0, MiB + 512), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.WriteZeroes(512, -1), Is.EqualTo(StorageStatus.OutOfRange));
            Assert.That(volume.Read(MiB - 4096, buffer), Is.EqualTo(StorageStatus.Success));
            Assert.That(volume.Read(MiB, Span<byte>.Empty), Is.EqualTo(StorageStatus.Success));
        });
    }

    [Test]
    public void ResizeGrowsKeepsDataAndRefusesShrinking()
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, MiB, blockSize: 4096);
        byte[] tail = VolumeFactory.Pattern(4096, seed: 4);
        Assert.That(volume.Write(MiB - 4096, tail, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Write(MiB, tail, forceUnitAccess: false), Is.EqualTo(StorageStatus.OutOfRange));

        volume.Resize(3 * MiB);

        Assert.That(volume.SizeBytes, Is.EqualTo(3 * MiB));
        var back = new byte[4096];
        Assert.That(volume.Read(MiB - 4096, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.EqualTo(tail));
        Assert.That(volume.Read(2 * MiB, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.All.EqualTo(0));
        Assert.That(volume.Write(3 * MiB - 4096, tail, forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        Assert.That(() => volume.Resize(2 * MiB), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => volume.Resize(3 * MiB + 512), Throws.TypeOf<ArgumentOutOfRangeException>(), "not a multiple of the block size");
    }

    [Test]
    public void FlushAndForceUnitAccessSucceed()
    {
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, MiB);
        Assert.That(volume.Write(0, VolumeFactory.Pattern(4096, 5), forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));
    }

    [Test]
    public void CallsAfterDisposeReturnUnavailable()
    {
        IBlockVolume volume = VolumeFactory.Create(backend, _dir, MiB);
        volume.Dispose();
        var buffer = new byte[512];
        Assert.Multiple(() =>
        {
            Assert.That(volume.Read(0, buffer), Is.EqualTo(StorageStatus.Unavailable));
            Assert.That(volume.Write(0, buffer, forceUnitAccess: true), Is.EqualTo(StorageStatus.Unavailable));
            Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Unavailable));
            Assert.That(volume.Deallocate(0, 512), Is.EqualTo(StorageStatus.Unavailable));
            Assert.That(volume.WriteZeroes(0, 512), Is.EqualTo(StorageStatus.Unavailable));
        });
    }

    [Test]
    public void ConcurrentWritersOnDisjointRangesAllLand()
    {
        const int writers = 8;
        const int blocksPerWriter = 64;
        const int block = 4096;
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, (long)writers * blocksPerWriter * block, blockSize: block);

        // Interleave the writers' blocks so neighbouring blocks (and shared chunks) belong to different threads.
        Parallel.For(0, writers, new ParallelOptions { MaxDegreeOfParallelism = writers }, w =>
        {
            byte[] data = VolumeFactory.Pattern(block, seed: w);
            for (int i = 0; i < blocksPerWriter; i++)
            {
                long offset = ((long)i * writers + w) * block;
                Assert.That(volume.Write(offset, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            }
        });

        var back = new byte[block];
        for (int w = 0; w < writers; w++)
        {
            byte[] expected = VolumeFactory.Pattern(block, seed: w);
            for (int i = 0; i < blocksPerWriter; i++)
            {
                Assert.That(volume.Read(((long)i * writers + w) * block, back), Is.EqualTo(StorageStatus.Success));
                Assert.That(back, Is.EqualTo(expected), $"writer {w} block {i}");
            }
        }
    }

    [Test]
    public void IoWhileResizingStaysConsistent()
    {
        const int block = 4096;
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, MiB, blockSize: block);
        byte[] data = VolumeFactory.Pattern(block, seed: 6);
        using var stop = new CancellationTokenSource();

        Task io = Task.Run(() =>
        {
            var back = new byte[block];
            long writes = 0;
            while (!stop.IsCancellationRequested)
            {
                long size = volume.SizeBytes;
                long offset = size - block;
                Assert.That(volume.Write(offset, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
                Assert.That(volume.Read(offset, back), Is.EqualTo(StorageStatus.Success));
                Assert.That(back, Is.EqualTo(data));
                writes++;
            }

            return writes;
        });

        for (int i = 2; i <= 40; i++)
        {
            volume.Resize((long)i * MiB / 2);
        }

        stop.Cancel();
        Assert.That(() => io.Wait(TimeSpan.FromSeconds(30)), Is.True);
    }
}
