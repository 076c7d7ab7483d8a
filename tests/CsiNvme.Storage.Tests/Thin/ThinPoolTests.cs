using System.Diagnostics;
using CsiNvme.Storage.Thin;
using static CsiNvme.Storage.Tests.Thin.ThinTestHelpers;

namespace CsiNvme.Storage.Tests.Thin;

public sealed class ThinPoolTests
{
    private const int Block = 4096;
    private TempDirectory _dir = null!;
    private ThinPool _pool = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDirectory("csinvme-thin");
        _pool = ThinPool.Open(Options(_dir));
    }

    [TearDown]
    public void TearDown()
    {
        _pool.Dispose();
        _dir.Dispose();
    }

    private ThinVolume NewVolume(long size = 4L << 20, string name = "v") => _pool.CreateVolume(Guid.NewGuid(), name, size, Block);

    private void Reopen()
    {
        _pool.Dispose();
        _pool = ThinPool.Open(Options(_dir));
    }

    [Test]
    public void FirstWriteAllocatesOneClusterAndLaterWritesToItAllocateNothing()
    {
        var volume = NewVolume();
        Assert.That(_pool.UsedBytes, Is.Zero);

        WriteOk(volume, 8192, Pattern(Block, 1));
        Assert.That(_pool.UsedBytes, Is.EqualTo(Cluster));

        WriteOk(volume, 0, Pattern(Block, 2));
        WriteOk(volume, Cluster - Block, Pattern(Block, 3));
        Assert.That(_pool.UsedBytes, Is.EqualTo(Cluster), "writes into an owned cluster");

        // 8 KiB straddling the boundary of clusters 2 and 3.
        WriteOk(volume, (3L * Cluster) - Block, Pattern(2 * Block, 4));
        Assert.That(_pool.UsedBytes, Is.EqualTo(3L * Cluster), "a cluster-crossing write allocates both clusters");
        Assert.That(_pool.GetImage(volume.Id)!.OwnedBytes, Is.EqualTo(3L * Cluster));
        AssertConsistent(_pool);
    }

    [Test]
    public void UnwrittenRangesReadAsZerosAroundWrittenData()
    {
        var volume = NewVolume();
        var data = Pattern(3 * Block, 5);
        WriteOk(volume, Cluster + Block, data);

        var all = ReadAll(volume);
        Assert.That(IsZero(all.AsSpan(0, Cluster + Block)), Is.True, "before the write (unwritten cluster and the head of the written one)");
        Assert.That(all.AsSpan(Cluster + Block, data.Length).SequenceEqual(data), Is.True);
        Assert.That(IsZero(all.AsSpan(Cluster + Block + data.Length)), Is.True, "after the write");
        AssertConsistent(_pool);
    }

    [Test]
    public void PartialWriteAfterSnapshotCopiesTheClusterAndKeepsTheBytesAroundIt()
    {
        var volume = NewVolume();
        var original = Pattern(2 * Cluster, 6);
        WriteOk(volume, 0, original);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        var usedBefore = _pool.UsedBytes;

        // 4 KiB in the middle of cluster 0, and 4 KiB across the boundary of clusters 0 and 1.
        var middle = Pattern(Block, 7);
        var crossing = Pattern(Block, 8);
        WriteOk(volume, 5 * Block, middle);
        WriteOk(volume, Cluster - 2048, crossing);

        Assert.That(_pool.UsedBytes, Is.EqualTo(usedBefore + (2L * Cluster)), "each touched cluster is copied once");
        var expected = original.ToArray();
        middle.CopyTo(expected, 5 * Block);
        crossing.CopyTo(expected, Cluster - 2048);
        Assert.That(ReadRange(volume, 0, 2 * Cluster).SequenceEqual(expected), Is.True, "volume: new bytes with the old ones around them");
        Assert.That(ReadImage(_pool, snapshotId).AsSpan(0, 2 * Cluster).SequenceEqual(original), Is.True, "snapshot unchanged");
        AssertConsistent(_pool);
    }

    [Test]
    public void DeallocateAndWriteZeroesGiveClustersBackAfterFlush()
    {
        var volume = NewVolume();
        WriteOk(volume, 0, Pattern(6 * Cluster, 9));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));
        Assert.That(_pool.UsedBytes, Is.EqualTo(6L * Cluster));

        Assert.That(volume.Deallocate(0, 2L * Cluster), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.WriteZeroes(2L * Cluster, Cluster), Is.EqualTo(StorageStatus.Success));
        // Half a cluster: it stays allocated and reads zeros in that half.
        Assert.That(volume.Deallocate(4L * Cluster, Cluster / 2), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));

        Assert.That(_pool.UsedBytes, Is.EqualTo(3L * Cluster));
        var all = ReadAll(volume);
        var expected = Pattern(6 * Cluster, 9);
        Array.Clear(expected, 0, 3 * Cluster);
        Array.Clear(expected, 4 * Cluster, Cluster / 2);
        Assert.That(all.SequenceEqual(expected.Concat(new byte[all.Length - expected.Length])), Is.True);
        AssertConsistent(_pool);

        Reopen();
        Assert.That(_pool.UsedBytes, Is.EqualTo(3L * Cluster), "after reopen");
        Assert.That(ReadAll(_pool.OpenVolume(volume.Id)).SequenceEqual(all), Is.True);
        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void DeallocateOverASnapshotMasksTheOldDataForTheVolumeOnly()
    {
        var volume = NewVolume();
        var original = Pattern(4 * Cluster, 10);
        WriteOk(volume, 0, original);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        var clone = _pool.CloneFromSnapshot(Guid.NewGuid(), "c", snapshotId, volume.SizeBytes, Block);
        var used = _pool.UsedBytes;

        Assert.That(volume.Deallocate(0, 2L * Cluster), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.WriteZeroes(3L * Cluster, Block), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));

        Assert.That(_pool.UsedBytes, Is.EqualTo(used + Cluster), "masking whole clusters costs nothing, the partial one is copied");
        var expected = original.ToArray();
        Array.Clear(expected, 0, 2 * Cluster);
        Array.Clear(expected, 3 * Cluster, Block);
        Assert.That(ReadRange(volume, 0, 4 * Cluster).SequenceEqual(expected), Is.True, "volume");
        Assert.That(ReadImage(_pool, snapshotId).AsSpan(0, 4 * Cluster).SequenceEqual(original), Is.True, "snapshot");
        Assert.That(ReadRange(clone, 0, 4 * Cluster).SequenceEqual(original), Is.True, "clone");

        // Writing a masked cluster partially must not resurrect the snapshot's bytes around the write.
        var piece = Pattern(Block, 11);
        WriteOk(volume, Block, piece);
        piece.CopyTo(expected, Block);
        Assert.That(ReadRange(volume, 0, 4 * Cluster).SequenceEqual(expected), Is.True, "volume after a write into a masked cluster");
        AssertConsistent(_pool);

        Reopen();
        Assert.That(ReadRange(_pool.OpenVolume(volume.Id), 0, 4 * Cluster).SequenceEqual(expected), Is.True, "volume after reopen");
        Assert.That(ReadImage(_pool, snapshotId).AsSpan(0, 4 * Cluster).SequenceEqual(original), Is.True, "snapshot after reopen");
        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void SnapshotCopiesNoDataAndWritesTheSameMetadataForAFullAndAnEmptyVolume()
    {
        const long size = 32L << 20;
        var empty = NewVolume(size, "same-name");
        var full = NewVolume(size, "same-name");
        var chunk = Pattern(1 << 20, 12);
        for (long offset = 0; offset < size; offset += chunk.Length)
        {
            WriteOk(full, offset, chunk);
        }

        Assert.That(full.Flush(), Is.EqualTo(StorageStatus.Success));
        var journal = new FileInfo(_dir.Combine("pool.img.journal"));
        var used = _pool.UsedBytes;

        (long JournalBytes, TimeSpan Time) Snapshot(ThinVolume volume)
        {
            journal.Refresh();
            var before = journal.Length;
            var watch = Stopwatch.StartNew();
            _pool.CreateSnapshot(volume.Id, Guid.NewGuid(), "snap");
            watch.Stop();
            journal.Refresh();
            return (journal.Length - before, watch.Elapsed);
        }

        var (emptyBytes, emptyTime) = Snapshot(empty);
        var (fullBytes, fullTime) = Snapshot(full);

        Assert.That(_pool.UsedBytes, Is.EqualTo(used), "no cluster is copied");
        Assert.That(fullBytes, Is.EqualTo(emptyBytes), "the metadata written does not depend on the volume's content");
        // Loose on purpose (shared machine): a copy of 32 MiB with its syncs would take far longer than this.
        Assert.That(fullTime, Is.LessThan((emptyTime * 10) + TimeSpan.FromMilliseconds(200)), $"empty {emptyTime}, full {fullTime}");
        AssertConsistent(_pool);
    }

    [Test]
    public void ClonesFromASnapshotAndFromAVolumeShareClustersAndDivergeOnWrite()
    {
        var volume = NewVolume();
        var original = Pattern(8 * Cluster, 13);
        WriteOk(volume, 0, original);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        var used = _pool.UsedBytes;

        var fromSnapshot = _pool.CloneFromSnapshot(Guid.NewGuid(), "from-snapshot", snapshotId, volume.SizeBytes, Block);
        Assert.That(_pool.UsedBytes, Is.EqualTo(used), "clone from a snapshot");
        var fromVolume = _pool.CloneFromVolume(Guid.NewGuid(), "from-volume", volume.Id, volume.SizeBytes + (1L << 20), Block);
        Assert.That(_pool.UsedBytes, Is.EqualTo(used), "clone from a volume");
        Assert.That(fromVolume.SizeBytes, Is.EqualTo(volume.SizeBytes + (1L << 20)));

        var volumeData = Pattern(Block, 14);
        var cloneData = Pattern(Block, 15);
        WriteOk(volume, 0, volumeData);
        WriteOk(fromSnapshot, Cluster, cloneData);
        WriteOk(fromVolume, 2 * Cluster, cloneData);
        Assert.That(_pool.UsedBytes, Is.EqualTo(used + (3L * Cluster)), "each write copies one cluster");

        var expectVolume = original.ToArray();
        volumeData.CopyTo(expectVolume, 0);
        var expectFromSnapshot = original.ToArray();
        cloneData.CopyTo(expectFromSnapshot, Cluster);
        var expectFromVolume = original.ToArray();
        cloneData.CopyTo(expectFromVolume, 2 * Cluster);
        Assert.That(ReadRange(volume, 0, original.Length).SequenceEqual(expectVolume), Is.True, "volume");
        Assert.That(ReadRange(fromSnapshot, 0, original.Length).SequenceEqual(expectFromSnapshot), Is.True, "clone from the snapshot");
        Assert.That(ReadRange(fromVolume, 0, original.Length).SequenceEqual(expectFromVolume), Is.True, "clone from the volume");
        Assert.That(IsZero(ReadRange(fromVolume, volume.SizeBytes, 1 << 20)), Is.True, "the clone's extra size reads zeros");
        Assert.That(ReadImage(_pool, snapshotId).SequenceEqual(original.Concat(new byte[volume.SizeBytes - original.Length])), Is.True, "snapshot");
        var visible = _pool.ListImages().Where(i => !i.Deleted).ToArray();
        Assert.That(visible, Has.Length.EqualTo(4), "the internal snapshot of a clone from a volume is not listed as live");
        AssertConsistent(_pool);
    }

    [Test]
    public void DeletingASnapshotWithNoDependentReturnsItsClusters()
    {
        var volume = NewVolume();
        WriteOk(volume, 0, Pattern(4 * Cluster, 16));
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        WriteOk(volume, 0, Pattern(Block, 17));
        _pool.DeleteVolume(volume.Id);
        Assert.That(_pool.UsedBytes, Is.EqualTo(4L * Cluster), "the volume's own cluster went back, the snapshot keeps its four");
        AssertConsistent(_pool);

        _pool.DeleteSnapshot(snapshotId);
        Assert.That(_pool.UsedBytes, Is.Zero);
        Assert.That(_pool.ListImages(), Is.Empty);
        AssertConsistent(_pool);
    }

    [Test]
    public void DeletingASnapshotWithOneDependentReturnsOnlyTheClustersItHidAndKeepsTheShared()
    {
        var volume = NewVolume();
        var original = Pattern(4 * Cluster, 18);
        WriteOk(volume, 0, original);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        var overwrite = Pattern(Cluster, 19);
        WriteOk(volume, Cluster, overwrite);
        Assert.That(_pool.UsedBytes, Is.EqualTo(5L * Cluster));

        _pool.DeleteSnapshot(snapshotId);

        Assert.That(_pool.UsedBytes, Is.EqualTo(4L * Cluster), "only the snapshot's copy of cluster 1 is unreferenced now");
        Assert.That(_pool.GetImage(snapshotId), Is.Null);
        overwrite.CopyTo(original, Cluster);
        Assert.That(ReadRange(volume, 0, original.Length).SequenceEqual(original), Is.True);
        AssertConsistent(_pool);
        Reopen();
        Assert.That(_pool.UsedBytes, Is.EqualTo(4L * Cluster));
        Assert.That(ReadRange(_pool.OpenVolume(volume.Id), 0, original.Length).SequenceEqual(original), Is.True, "after reopen");
        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void DeletingASnapshotWithTwoDependentsKeepsItsClustersUntilOnlyOneRemains()
    {
        var volume = NewVolume();
        var original = Pattern(4 * Cluster, 20);
        WriteOk(volume, 0, original);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");
        var clone = _pool.CloneFromSnapshot(Guid.NewGuid(), "c", snapshotId, volume.SizeBytes, Block);
        WriteOk(volume, 0, Pattern(Cluster, 21));
        WriteOk(clone, 0, Pattern(Cluster, 22));
        Assert.That(_pool.UsedBytes, Is.EqualTo(6L * Cluster));

        _pool.DeleteSnapshot(snapshotId);
        Assert.That(_pool.UsedBytes, Is.EqualTo(6L * Cluster), "both dependents still read through it");
        Assert.That(_pool.ListImages().Where(i => !i.Deleted).Select(i => i.Id), Is.EquivalentTo(new[] { volume.Id, clone.Id }));
        Assert.Throws<KeyNotFoundException>(() => _pool.DeleteSnapshot(snapshotId), "deleted once");
        Assert.Throws<KeyNotFoundException>(() => _pool.CloneFromSnapshot(Guid.NewGuid(), "x", snapshotId, volume.SizeBytes, Block));
        Assert.That(ReadRange(clone, Cluster, 3 * Cluster).SequenceEqual(original.AsSpan(Cluster)), Is.True, "clone still reads the shared clusters");
        AssertConsistent(_pool);

        Reopen();
        Assert.That(_pool.UsedBytes, Is.EqualTo(6L * Cluster), "after reopen");
        _pool.DeleteVolume(clone.Id);
        // The snapshot merges into the volume: its cluster 0 (hidden by the volume's own) goes, 1..3 stay shared with nobody.
        Assert.That(_pool.UsedBytes, Is.EqualTo(4L * Cluster));
        Assert.That(ReadRange(_pool.OpenVolume(volume.Id), Cluster, 3 * Cluster).SequenceEqual(original.AsSpan(Cluster)), Is.True);
        AssertConsistent(_pool);

        _pool.DeleteVolume(volume.Id);
        Assert.That(_pool.UsedBytes, Is.Zero);
        Assert.That(_pool.ListImages(), Is.Empty);
        AssertConsistent(_pool);
    }

    [Test]
    public void GrowingKeepsTheDataAndTheNewRangeReadsZerosEvenAboveASnapshot()
    {
        // Not a whole number of clusters, so the last cluster is partly outside the volume before the resize.
        const long size = (1L << 20) + Block;
        var volume = NewVolume(size);
        var data = Pattern((int)size, 23);
        WriteOk(volume, 0, data);
        var snapshotId = Guid.NewGuid();
        _pool.CreateSnapshot(volume.Id, snapshotId, "s");

        volume.Resize(size + (1L << 20));

        Assert.That(volume.SizeBytes, Is.EqualTo(size + (1L << 20)));
        var all = ReadAll(volume);
        Assert.That(all.AsSpan(0, (int)size).SequenceEqual(data), Is.True, "old range");
        Assert.That(IsZero(all.AsSpan((int)size)), Is.True, "new range");
        Assert.That(_pool.GetImage(snapshotId)!.SizeBytes, Is.EqualTo(size), "the snapshot keeps its size");
        var tail = Pattern(Block, 24);
        WriteOk(volume, volume.SizeBytes - Block, tail);
        Assert.That(ReadRange(volume, volume.SizeBytes - Block, Block).SequenceEqual(tail), Is.True);

        Assert.Throws<ArgumentOutOfRangeException>(() => volume.Resize(size));
        Assert.That(volume.SizeBytes, Is.EqualTo(size + (1L << 20)), "a refused shrink changes nothing");
        Assert.That(volume.Read(volume.SizeBytes, new byte[Block]), Is.EqualTo(StorageStatus.OutOfRange));
        AssertConsistent(_pool);

        Reopen();
        var reopened = _pool.OpenVolume(volume.Id);
        Assert.That(reopened.SizeBytes, Is.EqualTo(size + (1L << 20)), "the size is durable");
        Assert.That(ReadRange(reopened, 0, (int)size).SequenceEqual(data), Is.True);
        Assert.That(ReadRange(reopened, reopened.SizeBytes - Block, Block).SequenceEqual(tail), Is.True);
        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void SpaceGivenBackByADeallocateIsUsableWithoutAnExplicitFlush()
    {
        _pool.Dispose();
        _dir.Dispose();
        _dir = new TempDirectory("csinvme-thin");
        _pool = ThinPool.Open(Options(_dir, sizeBytes: 9L * Cluster));
        var volume = NewVolume(16L * Cluster, "full");
        var chunk = Pattern(Cluster, 31);
        for (var i = 0; i < 8; i++)
        {
            WriteOk(volume, (long)i * Cluster, chunk);
        }

        Assert.That(volume.Write(8L * Cluster, chunk, false), Is.EqualTo(StorageStatus.CapacityExceeded));
        Assert.That(volume.Deallocate(0, 2L * Cluster), Is.EqualTo(StorageStatus.Success));

        // No Flush in between: the write commits the deallocation itself instead of failing.
        WriteOk(volume, 8L * Cluster, chunk);
        Assert.That(ReadRange(volume, 8L * Cluster, Cluster).SequenceEqual(chunk), Is.True);
        Assert.That(IsZero(ReadRange(volume, 0, 2 * Cluster)), Is.True);
        AssertConsistent(_pool);
    }

    [Test]
    public void ConcurrentWritesAndDeallocatesNeverTouchAnotherVolume()
    {
        // A writer that looked a cluster up just before a deallocate freed it must not land in the cluster's next
        // owner: freed clusters are reused only after in-flight I/O drained.
        var victim = NewVolume(64L * Cluster, "victim");
        var churn = NewVolume(8L * Cluster, "churn");
        var stop = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        var marker = Pattern(Cluster, 41);
        var writers = Enumerable.Range(0, 2).Select(w => Task.Run(() =>
        {
            var junk = Pattern(Cluster, 50 + w);
            while (DateTime.UtcNow < stop)
            {
                for (var c = 0; c < 8; c++)
                {
                    churn.Write((long)c * Cluster, junk, false);
                }
            }
        })).ToList();
        writers.Add(Task.Run(() =>
        {
            var round = 0;
            while (DateTime.UtcNow < stop)
            {
                churn.Deallocate(0, 8L * Cluster);
                churn.Flush();
                // The victim takes clusters the churn volume just gave back.
                WriteOk(victim, (long)(round++ % 64) * Cluster, marker);
            }
        }));
        Task.WaitAll(writers.ToArray());
        var all = ReadAll(victim);
        for (var c = 0; c < 64; c++)
        {
            var cluster = all.AsSpan(c * Cluster, Cluster);
            Assert.That(IsZero(cluster) || cluster.SequenceEqual(marker), Is.True, $"victim cluster {c} holds another volume's data");
        }

        AssertConsistent(_pool);
    }

    [Test]
    public void AFullPoolFailsWritesWithCapacityExceededAndLeavesOtherVolumesIntact()
    {
        _pool.Dispose();
        _dir.Dispose();
        _dir = new TempDirectory("csinvme-thin");
        // 33 clusters: the header and 32 for data.
        _pool = ThinPool.Open(Options(_dir, sizeBytes: 33L * Cluster));
        Assert.That(_pool.CapacityBytes, Is.EqualTo(32L * Cluster));
        var keep = NewVolume(8L * Cluster, "keep");
        var keepData = Pattern(8 * Cluster, 25);
        WriteOk(keep, 0, keepData);
        var hog = NewVolume(64L * Cluster, "hog");
        var chunk = Pattern(Cluster, 26);

        var written = 0;
        StorageStatus status;
        while ((status = hog.Write((long)written * Cluster, chunk, false)) == StorageStatus.Success)
        {
            written++;
            Assert.That(written, Is.LessThanOrEqualTo(24), "more clusters written than the pool holds");
        }

        Assert.That(status, Is.EqualTo(StorageStatus.CapacityExceeded));
        Assert.That(written, Is.EqualTo(24));
        Assert.That(_pool.FreeBytes, Is.Zero);
        Assert.That(ReadAll(keep).SequenceEqual(keepData), Is.True, "the other volume is intact");
        var overwrite = Pattern(Block, 27);
        WriteOk(keep, 0, overwrite, fua: true);
        Assert.That(keep.Flush(), Is.EqualTo(StorageStatus.Success), "an owned cluster is overwritten in place on a full pool");
        Assert.That(hog.Read((long)written * Cluster, new byte[Cluster]), Is.EqualTo(StorageStatus.Success));
        Assert.That(IsZero(ReadRange(hog, (long)written * Cluster, Cluster)), Is.True, "the failed write left nothing behind");
        AssertConsistent(_pool);

        Assert.That(hog.Deallocate(0, 4L * Cluster), Is.EqualTo(StorageStatus.Success));
        Assert.That(hog.Flush(), Is.EqualTo(StorageStatus.Success));
        WriteOk(hog, (long)written * Cluster, chunk);
        Assert.That(_pool.UsedBytes, Is.EqualTo(29L * Cluster));
        AssertConsistent(_pool);

        Reopen();
        overwrite.CopyTo(keepData, 0);
        Assert.That(ReadAll(_pool.OpenVolume(keep.Id)).SequenceEqual(keepData), Is.True, "after reopen");
        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void ReopenAfterDisposeKeepsImagesTreeSizesAndContent()
    {
        var a = NewVolume(2L << 20, "a");
        WriteOk(a, 0, Pattern(1 << 20, 28));
        var s1 = Guid.NewGuid();
        _pool.CreateSnapshot(a.Id, s1, "s1");
        WriteOk(a, 3 * Block, Pattern(5 * Cluster, 29));
        var s2 = Guid.NewGuid();
        _pool.CreateSnapshot(a.Id, s2, "s2");
        Assert.That(a.Deallocate(Cluster, 2L * Cluster), Is.EqualTo(StorageStatus.Success));
        a.Resize(3L << 20);
        var b = _pool.CloneFromSnapshot(Guid.NewGuid(), "b", s1, 2L << 20, Block);
        WriteOk(b, Cluster / 2, Pattern(Cluster, 30));
        var c = _pool.CloneFromVolume(Guid.NewGuid(), "c", a.Id, 4L << 20, Block);
        WriteOk(c, (3L << 20) + 512, Pattern(Block, 31));
        _pool.DeleteSnapshot(s2);
        var d = NewVolume(1L << 20, "d");
        _pool.DeleteVolume(d.Id);

        var images = _pool.ListImages();
        var content = images.Where(i => !i.Deleted).ToDictionary(i => i.Id, i => ReadImage(_pool, i.Id));
        var used = _pool.UsedBytes;
        AssertConsistent(_pool);

        Reopen();

        Assert.That(_pool.ListImages(), Is.EqualTo(images));
        Assert.That(_pool.UsedBytes, Is.EqualTo(used));
        foreach (var (id, expected) in content)
        {
            Assert.That(ReadImage(_pool, id).SequenceEqual(expected), Is.True, $"image {id} after reopen");
        }

        AssertConsistent(_pool, "after reopen");
    }

    [Test]
    public void SeveralSnapshotsOfOneVolumeEachReadAsAtTheirCreation()
    {
        var volume = NewVolume(1L << 20);
        var states = new List<(Guid Id, byte[] Content)>();
        var random = new Random(32);
        for (var i = 0; i < 6; i++)
        {
            var data = Pattern(random.Next(1, 5) * Block, 100 + i);
            WriteOk(volume, random.Next(0, 200) * Block, data);
            var id = Guid.NewGuid();
            _pool.CreateSnapshot(volume.Id, id, $"s{i}");
            states.Add((id, ReadAll(volume)));
        }

        _pool.DeleteSnapshot(states[2].Id);
        _pool.DeleteSnapshot(states[0].Id);
        states.RemoveAt(2);
        states.RemoveAt(0);
        Reopen();
        foreach (var (id, content) in states)
        {
            Assert.That(ReadImage(_pool, id).SequenceEqual(content), Is.True, $"snapshot {id}");
        }

        AssertConsistent(_pool);
    }

    [Test]
    public void IoOnADeletedVolumeFailsAndTouchesNothing()
    {
        var volume = NewVolume();
        WriteOk(volume, 0, Pattern(Block, 33));
        _pool.DeleteVolume(volume.Id);
        Assert.That(volume.Write(0, Pattern(Block, 34), false), Is.EqualTo(StorageStatus.Unavailable));
        Assert.That(volume.Read(0, new byte[Block]), Is.EqualTo(StorageStatus.Unavailable));
        Assert.That(_pool.UsedBytes, Is.Zero);
        Assert.Throws<KeyNotFoundException>(() => _pool.OpenVolume(volume.Id));
        AssertConsistent(_pool);
    }

    [Test]
    public void AFailedCloneFromAVolumeLeavesNoSnapshotBehind()
    {
        var volume = NewVolume();
        var other = NewVolume();
        WriteOk(volume, 0, Pattern(Block, 35));

        Assert.Throws<InvalidOperationException>(() => _pool.CloneFromVolume(other.Id, "taken", volume.Id, volume.SizeBytes, Block), "the id is taken");
        Assert.Throws<ArgumentOutOfRangeException>(() => _pool.CloneFromVolume(Guid.NewGuid(), "odd", volume.Id, volume.SizeBytes + 1, Block), "not a multiple of the block size");

        Assert.That(_pool.ListImages().Where(i => !i.Deleted).Select(i => i.Id), Is.EquivalentTo(new[] { volume.Id, other.Id }));
        Assert.That(_pool.GetImage(volume.Id)!.ParentId, Is.Null, "the volume did not gain a snapshot");
        AssertConsistent(_pool);
        Reopen();
        Assert.That(_pool.ListImages().Where(i => !i.Deleted).Select(i => i.Id), Is.EquivalentTo(new[] { volume.Id, other.Id }), "after reopen");
    }
}
