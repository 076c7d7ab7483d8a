using CsiNvme.Storage.Thin;
using static CsiNvme.Storage.Tests.Thin.ThinTestHelpers;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>The thin pool's I/O path allocates nothing in steady state, on a full pool included.</summary>
public sealed class ThinAllocationTests
{
    private const int Block = 4096;
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-thin-alloc");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private sealed class CountingObserver : IThinPoolSpaceObserver
    {
        public int OutOfSpaceCalls;

        public void OutOfSpace(ThinPool pool, string imageName, bool noFreeCluster) => OutOfSpaceCalls++;

        public void SpaceAvailable(ThinPool pool)
        {
        }
    }

    [Test]
    public void OverwritesReadsAndWritesFailingOnAFullPoolAllocateNothing()
    {
        var observer = new CountingObserver();
        var defaults = Options(_dir, sizeBytes: 65L * Cluster);
        using var pool = ThinPool.Open(new ThinPoolOptions
        {
            DataPath = defaults.DataPath,
            SizeBytes = defaults.SizeBytes,
            CommitInterval = defaults.CommitInterval,
            SpaceObserver = observer,
        });
        var full = pool.CreateVolume(Guid.NewGuid(), "full", 128L * Cluster, Block);
        var data = Pattern(Block, 1);
        var back = new byte[Block];
        for (var c = 0; c < 64; c++)
        {
            WriteOk(full, c * (long)Cluster, data);
        }

        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                // Overwrites of owned clusters and reads succeed; writes to unallocated clusters fail, the pool being full.
                var offset = (long)(i % 64) * Cluster + (i % 16 * Block);
                if (full.Write(offset, data, forceUnitAccess: false) != StorageStatus.Success
                    || full.Read(offset, back) != StorageStatus.Success
                    || full.Write(64L * Cluster + offset, data, forceUnitAccess: false) != StorageStatus.CapacityExceeded)
                {
                    throw new InvalidOperationException("unexpected status");
                }
            }
        }

        Run(2_000);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.That(allocated, Is.Zero);
        Assert.That(observer.OutOfSpaceCalls, Is.EqualTo(1));
    }
}
