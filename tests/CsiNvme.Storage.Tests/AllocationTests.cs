namespace CsiNvme.Storage.Tests;

[TestFixture(Backend.File)]
[TestFixture(Backend.Memory)]
public sealed class AllocationTests(Backend backend)
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-storage");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void ReadAndWriteAllocateNothingInSteadyState()
    {
        const int block = 4096;
        using IBlockVolume volume = VolumeFactory.Create(backend, _dir, 16L << 20, block);
        byte[] data = VolumeFactory.Pattern(block, 10);
        var back = new byte[block];

        void Run(int count)
        {
            for (int i = 0; i < count; i++)
            {
                // Stride over 4 MiB so several chunks are touched, all of them allocated during warm-up.
                long offset = (long)(i % 1024) * block;
                if (volume.Write(offset, data, forceUnitAccess: false) != StorageStatus.Success
                    || volume.Read(offset, back) != StorageStatus.Success)
                {
                    throw new InvalidOperationException("I/O failed");
                }
            }
        }

        Run(2_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run(10_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.That(allocated, Is.Zero);
    }
}
