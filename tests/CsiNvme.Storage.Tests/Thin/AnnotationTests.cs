using CsiNvme.Storage.Thin;
using static CsiNvme.Storage.Tests.Thin.ThinTestHelpers;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>Lifecycle states and annotations of images and of the pool, and the reports of running out of space.</summary>
public sealed class AnnotationTests
{
    private const int Block = 4096;
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-thin-annotations");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [TestCase(false)]
    [TestCase(true)]
    public void StatesAndAnnotationsSurviveReopenAndCompaction(bool compact)
    {
        var options = Options(_dir, compactThreshold: compact ? 1 : null);
        Guid volume, snapshot, clone, plain;
        using (var pool = ThinPool.Open(options))
        {
            Assert.That(pool.Annotation, Is.Empty);
            pool.SetAnnotation("{\"owner\":\"store-1\"}");
            volume = pool.CreateVolume(Guid.NewGuid(), "vm", 1L << 20, Block, ThinImageState.Pending, "{\"hosts\":[\"h1\"]}").Id;
            WriteOk(pool.OpenVolume(volume), 0, Pattern(Cluster, 1));
            snapshot = pool.CreateSnapshot(volume, Guid.NewGuid(), "snap", ThinImageState.Pending, "snapshot of vm").Id;
            clone = pool.CloneFromVolume(Guid.NewGuid(), "copy", volume, 2L << 20, Block, ThinImageState.Pending, "clone — ünïcode").Id;
            plain = pool.CreateVolume(Guid.NewGuid(), "plain", 1L << 20, Block).Id;

            pool.SetImageState(volume, ThinImageState.Committed);
            pool.SetImageState(snapshot, ThinImageState.Committed);
            pool.SetImageState(snapshot, ThinImageState.Deleting);
            pool.SetImageAnnotation(volume, "{\"hosts\":[\"h1\",\"h2\"]}");
            pool.SetImageAnnotation(plain, "later");
            pool.SetImageAnnotation(plain, "");
            Assert.That(pool.Flush(), Is.EqualTo(StorageStatus.Success));
        }

        using (var pool = ThinPool.Open(options))
        {
            Assert.That(pool.Annotation, Is.EqualTo("{\"owner\":\"store-1\"}"));
            var images = pool.ListImages().Where(i => !i.Deleted).ToDictionary(i => i.Id);
            Assert.Multiple(() =>
            {
                Assert.That((images[volume].State, images[volume].Annotation), Is.EqualTo((ThinImageState.Committed, "{\"hosts\":[\"h1\",\"h2\"]}")));
                Assert.That((images[snapshot].State, images[snapshot].Annotation), Is.EqualTo((ThinImageState.Deleting, "snapshot of vm")));
                Assert.That((images[clone].State, images[clone].Annotation), Is.EqualTo((ThinImageState.Pending, "clone — ünïcode")));
                Assert.That((images[plain].State, images[plain].Annotation), Is.EqualTo((ThinImageState.Committed, "")));
            });
            Assert.That(ReadRange(pool.OpenVolume(clone), 0, Cluster), Is.EqualTo(Pattern(Cluster, 1)));

            // Changing things again after a reopen (and, with compaction, after a rewritten journal) keeps working.
            pool.SetImageState(clone, ThinImageState.Committed);
            pool.SetAnnotation("");
            AssertConsistent(pool);
        }

        using (var pool = ThinPool.Open(options))
        {
            Assert.That(pool.Annotation, Is.Empty);
            Assert.That(pool.GetImage(clone)!.State, Is.EqualTo(ThinImageState.Committed));
            Assert.That(pool.GetImage(volume)!.Annotation, Is.EqualTo("{\"hosts\":[\"h1\",\"h2\"]}"));
        }
    }

    [Test]
    public void ImagesWithoutStateOrAnnotationAreWrittenInTheOriginalFormatAndOpenCommitted()
    {
        // What a pool written before states existed holds: the same records as a pool whose images all have the
        // defaults, so such a pool opens with every image committed.
        var options = Options(_dir).WithPaths(journalPath: _dir.Combine("pool.journal"));
        Guid volume, snapshot;
        using (var pool = ThinPool.Open(options))
        {
            volume = pool.CreateVolume(Guid.NewGuid(), "old", 1L << 20, Block).Id;
            WriteOk(pool.OpenVolume(volume), 0, Pattern(Block, 2), fua: true);
            snapshot = pool.CreateSnapshot(volume, Guid.NewGuid(), "old-snap").Id;
            pool.CloneFromSnapshot(Guid.NewGuid(), "old-clone", snapshot, 1L << 20, Block);
        }

        using (MetadataJournal.Open(options.JournalPath!, out var records))
        {
            Assert.That(records.Select(r => r.Type).Distinct(), Is.SubsetOf(new[]
            {
                JournalRecordType.PoolHeader, JournalRecordType.CreateImage, JournalRecordType.SetMapping, JournalRecordType.Snapshot,
            }));
        }

        using var reopened = ThinPool.Open(options);
        Assert.That(reopened.ListImages().Select(i => (i.State, i.Annotation)), Is.All.EqualTo((ThinImageState.Committed, "")));
        Assert.That(reopened.Annotation, Is.Empty);
    }

    [Test]
    public void ACreationTornAtAnyByteLeavesNoImageOrOneWithItsStateAndAnnotation()
    {
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        Guid source;
        long before;
        using (var pool = ThinPool.Open(options))
        {
            source = pool.CreateVolume(Guid.NewGuid(), "source", 1L << 20, Block).Id;
            WriteOk(pool.OpenVolume(source), 0, Pattern(Block, 3), fua: true);
            before = new FileInfo(options.JournalPath!).Length;
        }

        // The most involved creation: a clone from a volume is a hidden snapshot, the clone, its delete, then the
        // clone's state and annotation, all one commit.
        Guid clone;
        using (var pool = ThinPool.Open(options))
        {
            clone = pool.CloneFromVolume(Guid.NewGuid(), "clone", source, 1L << 20, Block, ThinImageState.Pending, "{\"record\":\"of the clone\"}").Id;
        }

        var journal = File.ReadAllBytes(options.JournalPath!);
        var torn = _dir.Combine("torn.journal");
        foreach (var length in Enumerable.Range((int)before, journal.Length - (int)before + 1).Reverse())
        {
            File.WriteAllBytes(torn, journal.AsSpan(0, length).ToArray());
            using var pool = ThinPool.Open(options.WithPaths(journalPath: torn));
            var image = pool.GetImage(clone);
            if (length == journal.Length)
            {
                Assert.That((image?.State, image?.Annotation), Is.EqualTo(((ThinImageState?)ThinImageState.Pending, "{\"record\":\"of the clone\"}")));
            }
            else
            {
                Assert.That(image, Is.Null, $"journal cut at {length}: the clone exists without its whole commit");
            }

            Assert.That(pool.ListImages().Single(i => i.Id == source).State, Is.EqualTo(ThinImageState.Committed));
            AssertConsistent(pool, $"cut at {length}");
        }
    }

    [Test]
    public void StatesAndAnnotationsAreRefusedForImagesThatDoNotExist()
    {
        using var pool = ThinPool.Open(Options(_dir));
        var volume = pool.CreateVolume(Guid.NewGuid(), "v", 1L << 20, Block).Id;
        var snapshot = pool.CreateSnapshot(volume, Guid.NewGuid(), "s").Id;
        pool.CloneFromSnapshot(Guid.NewGuid(), "c", snapshot, 1L << 20, Block);
        // Deleted while a clone and the volume still read through it: kept in the pool, but no longer an image.
        pool.DeleteSnapshot(snapshot);

        Assert.Throws<KeyNotFoundException>(() => pool.SetImageState(Guid.NewGuid(), ThinImageState.Deleting));
        Assert.Throws<KeyNotFoundException>(() => pool.SetImageState(snapshot, ThinImageState.Committed));
        Assert.Throws<KeyNotFoundException>(() => pool.SetImageAnnotation(snapshot, "x"));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SetImageState(volume, (ThinImageState)7));
        Assert.Throws<ArgumentException>(() => pool.SetImageAnnotation(volume, new string('x', ThinPool.MaxAnnotationBytes + 1)));
        Assert.Throws<ArgumentException>(() => pool.CreateVolume(Guid.NewGuid(), "big", 1L << 20, Block, ThinImageState.Pending, new string('x', ThinPool.MaxAnnotationBytes + 1)));
        Assert.That(pool.ListImages().Where(i => !i.Deleted).Select(i => i.Name), Is.EquivalentTo(new[] { "v", "c" }), "nothing was created by the refusals");
    }

    private sealed class SpaceEvents : IThinPoolSpaceObserver
    {
        public List<string> Events { get; } = [];

        public void OutOfSpace(ThinPool pool, string imageName, bool noFreeCluster) =>
            Events.Add($"out of space: {imageName}, no free cluster {noFreeCluster}, free {pool.FreeBytes}");

        public void SpaceAvailable(ThinPool pool) => Events.Add($"space available: free {pool.FreeBytes}");
    }

    [Test]
    public void RunningOutOfSpaceIsReportedOncePerChangeNotPerFailedWrite()
    {
        var events = new SpaceEvents();
        var defaults = Options(_dir, sizeBytes: 9L * Cluster);
        var options = new ThinPoolOptions
        {
            DataPath = defaults.DataPath,
            SizeBytes = defaults.SizeBytes,
            CommitInterval = defaults.CommitInterval,
            SpaceObserver = events,
        };
        using var pool = ThinPool.Open(options);
        var hog = pool.CreateVolume(Guid.NewGuid(), "hog", 16L * Cluster, Block);
        var other = pool.CreateVolume(Guid.NewGuid(), "other", 16L * Cluster, Block);
        var chunk = Pattern(Cluster, 4);
        for (var c = 0; c < 8; c++)
        {
            WriteOk(hog, c * (long)Cluster, chunk);
        }

        Assert.That(pool.IsOutOfSpace, Is.False);
        Assert.That(events.Events, Is.Empty);
        for (var attempt = 0; attempt < 50; attempt++)
        {
            Assert.That(hog.Write(8L * Cluster, chunk, false), Is.EqualTo(StorageStatus.CapacityExceeded));
            Assert.That(other.Write(0, chunk.AsSpan(0, Block), false), Is.EqualTo(StorageStatus.CapacityExceeded));
            Assert.That(other.WriteZeroes(Block, Block), Is.EqualTo(StorageStatus.Success), "zeroing what reads as zeros needs no space");
        }

        Assert.That(events.Events, Is.EqualTo(new[] { "out of space: hog, no free cluster True, free 0" }), "one report for 100 failed writes");
        Assert.That(pool.IsOutOfSpace, Is.True);

        // Overwrites in place still work on a full pool and change nothing.
        WriteOk(hog, 0, chunk);
        Assert.That(events.Events, Has.Count.EqualTo(1));

        // Freed clusters come back at the commit that makes their release durable.
        Assert.That(hog.Deallocate(0, 2L * Cluster), Is.EqualTo(StorageStatus.Success));
        Assert.That(events.Events, Has.Count.EqualTo(1), "not free before the commit");
        Assert.That(pool.Flush(), Is.EqualTo(StorageStatus.Success));
        Assert.That(events.Events[1..], Is.EqualTo(new[] { $"space available: free {2 * Cluster}" }));
        Assert.That(pool.IsOutOfSpace, Is.False);

        WriteOk(other, 0, chunk);
        WriteOk(other, Cluster, chunk);
        Assert.That(other.Write(2L * Cluster, chunk, false), Is.EqualTo(StorageStatus.CapacityExceeded));
        Assert.That(events.Events[2..], Is.EqualTo(new[] { "out of space: other, no free cluster True, free 0" }));
    }
}
