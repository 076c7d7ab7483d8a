using CsiNvme.Storage.Thin;
using static CsiNvme.Storage.Tests.Thin.ThinTestHelpers;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>Replay of the metadata journal after a torn write, after corruption, and after compaction.</summary>
public sealed class JournalTests
{
    private const int Block = 4096;
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-journal");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private sealed record PoolState(IReadOnlyList<ThinImageInfo> Images, Dictionary<Guid, byte[]> Content, long UsedBytes);

    private static PoolState Capture(ThinPool pool)
    {
        var images = pool.ListImages();
        return new PoolState(images, images.Where(i => !i.Deleted).ToDictionary(i => i.Id, i => ReadImage(pool, i.Id)), pool.UsedBytes);
    }

    private static void AssertSame(PoolState expected, ThinPool pool, string context)
    {
        Assert.That(pool.ListImages(), Is.EqualTo(expected.Images), $"images {context}");
        Assert.That(pool.UsedBytes, Is.EqualTo(expected.UsedBytes), $"used bytes {context}");
        foreach (var (id, content) in expected.Content)
        {
            Assert.That(ReadImage(pool, id).SequenceEqual(content), Is.True, $"content of {id} {context}");
        }

        AssertConsistent(pool, context);
    }

    /// <summary>
    /// Builds a pool whose last commit is one batch of several records (two new clusters and a clone from a volume,
    /// which is three records itself). Returns the state before and after that batch and the journal length at both.
    /// </summary>
    private (PoolState Before, PoolState After, long BeforeLength, long AfterLength) BuildPoolWithLastBatch(ThinPoolOptions options)
    {
        using var pool = ThinPool.Open(options);
        var volume = pool.CreateVolume(Guid.NewGuid(), "v", 1L << 20, Block);
        WriteOk(volume, 0, Pattern(2 * Cluster, 1));
        pool.CreateSnapshot(volume.Id, Guid.NewGuid(), "s");
        WriteOk(volume, 0, Pattern(Block, 2));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));
        var before = Capture(pool);
        var beforeLength = new FileInfo(options.JournalPath!).Length;

        // Clusters 4 and 5 are new (not overwritten in place), so the state before the batch still reads zeros there.
        WriteOk(volume, 4L * Cluster, Pattern(Cluster + Block, 3));
        pool.CloneFromVolume(Guid.NewGuid(), "clone", volume.Id, 2L << 20, Block);
        var after = Capture(pool);
        var afterLength = new FileInfo(options.JournalPath!).Length;
        Assert.That(afterLength - beforeLength, Is.GreaterThan(5 * 20), "the last batch holds several records");
        return (before, after, beforeLength, afterLength);
    }

    [Test]
    public void ATornLastCommitIsDroppedWholeAtEveryByteOffset()
    {
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        var (before, after, beforeLength, afterLength) = BuildPoolWithLastBatch(options);
        var journal = File.ReadAllBytes(options.JournalPath!);
        Assert.That(journal, Has.Length.EqualTo(afterLength));
        var torn = _dir.Combine("torn.journal");

        // Whole journal first: opening a shorter one frees the batch's clusters in the data file.
        foreach (var length in Enumerable.Range((int)beforeLength, (int)(afterLength - beforeLength) + 1).Reverse())
        {
            File.WriteAllBytes(torn, journal.AsSpan(0, length).ToArray());
            using (var pool = ThinPool.Open(options.WithPaths(journalPath: torn)))
            {
                AssertSame(length == afterLength ? after : before, pool, $"with the journal cut at {length} (last commit {beforeLength}..{afterLength})");
            }

            Assert.That(new FileInfo(torn).Length, Is.EqualTo(length == afterLength ? afterLength : beforeLength), $"torn tail cut off at {length}");
        }
    }

    [Test]
    public void GarbageAfterTheLastCommitIsCutOffAndNewCommitsFollowIt()
    {
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        var (_, after, _, afterLength) = BuildPoolWithLastBatch(options);
        using (var stream = new FileStream(options.JournalPath!, FileMode.Append))
        {
            stream.Write(new byte[4096]);
            stream.Write(Pattern(333, 4));
        }

        Guid added;
        PoolState extended;
        using (var pool = ThinPool.Open(options))
        {
            AssertSame(after, pool, "with garbage after the last commit");
            Assert.That(new FileInfo(options.JournalPath!).Length, Is.EqualTo(afterLength));
            added = pool.CreateVolume(Guid.NewGuid(), "later", 1L << 20, Block).Id;
            WriteOk(pool.OpenVolume(added), 0, Pattern(Block, 5), fua: true);
            extended = Capture(pool);
        }

        using (var pool = ThinPool.Open(options))
        {
            AssertSame(extended, pool, "after a commit that followed the cut");
        }
    }

    [Test]
    public void ALostPageInsideTheLastBatchIsATornTailNotCorruption()
    {
        // A power cut inside one write can persist later pages of the last batch and lose an earlier one: the records
        // after the damage belong to that same batch, so the batch is dropped and the pool opens as before it.
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        var (before, _, beforeLength, afterLength) = BuildPoolWithLastBatch(options);
        var journal = File.ReadAllBytes(options.JournalPath!);
        var checkedOffsets = 0;
        for (var offset = beforeLength + 1; offset < afterLength - 40; offset += 7)
        {
            var copy = journal.ToArray();
            copy[offset] ^= 0x10;
            var damaged = _dir.Combine($"torn-{offset}.journal");
            File.WriteAllBytes(damaged, copy);
            using var pool = ThinPool.Open(options.WithPaths(journalPath: damaged));
            AssertSame(before, pool, $"after damage at byte {offset} of the last batch");
            checkedOffsets++;
        }

        Assert.That(checkedOffsets, Is.GreaterThan(5));
    }

    [Test]
    public void ACreationInterruptedBeforeTheHeaderIsFinishedOnOpen()
    {
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        Guid poolId;
        using (var pool = ThinPool.Open(options))
        {
            poolId = pool.PoolId;
        }

        // The crash came after the journal's first commit and before the data header reached the disk.
        using (var data = File.OpenWrite(options.DataPath))
        {
            data.Write(new byte[4096]);
        }

        using var reopened = ThinPool.Open(options);
        Assert.That(reopened.PoolId, Is.EqualTo(poolId));
        var volume = reopened.CreateVolume(Guid.NewGuid(), "v", 1L << 20, Block);
        WriteOk(volume, 0, Pattern(Block, 9));
        AssertConsistent(reopened);
    }

    [Test]
    public void AFlippedBitBeforeValidRecordsIsReportedAsCorruption()
    {
        var options = Options(_dir, sizeBytes: 4L << 20).WithPaths(journalPath: _dir.Combine("pool.journal"));
        var (_, _, beforeLength, _) = BuildPoolWithLastBatch(options);
        var journal = File.ReadAllBytes(options.JournalPath!);
        var damaged = _dir.Combine("damaged.journal");

        // Every byte of every record before the last commit, one bit each (a different bit per byte).
        var checkedOffsets = 0;
        for (var offset = 0; offset < beforeLength; offset += 3)
        {
            var copy = journal.ToArray();
            copy[offset] ^= (byte)(1 << (offset % 8));
            File.WriteAllBytes(damaged, copy);
            var error = Assert.Throws<InvalidDataException>(() => ThinPool.Open(options.WithPaths(journalPath: damaged)).Dispose(), $"bit {offset % 8} of byte {offset}");
            Assert.That(error!.Message, Does.Contain("corrupt"), $"byte {offset}");
            Assert.That(File.ReadAllBytes(damaged), Is.EqualTo(copy), $"the damaged journal is left as it was (byte {offset})");
            checkedOffsets++;
        }

        Assert.That(checkedOffsets, Is.GreaterThan(100));
        using var intact = ThinPool.Open(options);
        AssertConsistent(intact, "the original journal still opens");
    }

    [Test]
    public void CompactionKeepsTheStateIdenticalAcrossReopen()
    {
        // The same script against a pool that compacts often and one that never does.
        PoolState RunScript(string name, long threshold, out long journalLength)
        {
            var options = Options(_dir, sizeBytes: 16L << 20, clusterSize: 16 * 1024, compactThreshold: threshold).WithPaths(dataPath: _dir.Combine($"{name}.img"));
            var random = new Random(42);
            var ids = Enumerable.Range(0, 16).Select(i => new Guid(i + 1, 0, 0, new byte[8])).ToArray();
            using (var pool = ThinPool.Open(options))
            {
                var a = pool.CreateVolume(ids[0], "a", 2L << 20, Block);
                for (var round = 0; round < 30; round++)
                {
                    for (var w = 0; w < 10; w++)
                    {
                        WriteOk(a, random.Next(0, 500) * Block, Pattern(random.Next(1, 9) * Block, random.Next()));
                    }

                    Assert.That(a.Deallocate(random.Next(0, 100) * 16384L, 32768), Is.EqualTo(StorageStatus.Success));
                    Assert.That(a.Flush(), Is.EqualTo(StorageStatus.Success));
                }

                pool.CreateSnapshot(a.Id, ids[1], "s1");
                var b = pool.CloneFromSnapshot(ids[2], "b", ids[1], 3L << 20, Block);
                WriteOk(b, (2L << 20) + Block, Pattern(3 * Block, 7));
                WriteOk(a, 0, Pattern(64 * Block, 8));
                pool.CreateSnapshot(a.Id, ids[3], "s2");
                var c = pool.CloneFromVolume(ids[4], "c", b.Id, 3L << 20, Block);
                WriteOk(c, 8 * Block, Pattern(Block, 9));
                // Deleted but still read by a and b: kept as a deleted node, which compaction must carry over.
                pool.DeleteSnapshot(ids[1]);
                a.Resize(4L << 20);
                WriteOk(a, (4L << 20) - Block, Pattern(Block, 10), fua: true);
                var d = pool.CreateVolume(ids[5], "d", 1L << 20, Block);
                WriteOk(d, 0, Pattern(Cluster, 11), fua: true);
                pool.DeleteVolume(d.Id);
                Assert.That(pool.Flush(), Is.EqualTo(StorageStatus.Success));
            }

            PoolState state;
            using (var pool = ThinPool.Open(options))
            {
                state = Capture(pool);
                AssertConsistent(pool, $"{name} after reopen");
                // The deleted snapshot merges away once only one image reads through it.
                pool.DeleteVolume(ids[2]);
                pool.DeleteVolume(ids[4]);
                AssertConsistent(pool, $"{name} after the dependents went");
            }

            using (var pool = ThinPool.Open(options))
            {
                Assert.That(pool.ListImages().Select(i => i.Id), Is.EquivalentTo(new[] { ids[0], ids[3] }), $"{name}: s1 and the hidden snapshot merged away, s2 and a left");
                AssertConsistent(pool, $"{name} after the second reopen");
            }

            journalLength = new FileInfo(options.DataPath + ".journal").Length;
            return state;
        }

        var plain = RunScript("plain", threshold: 1L << 30, out var plainLength);
        var compacted = RunScript("compacted", threshold: 4096, out var compactedLength);

        Assert.That(compactedLength, Is.LessThan(plainLength / 2), "compaction shortened the journal");
        Assert.That(compacted.UsedBytes, Is.EqualTo(plain.UsedBytes));
        // The hidden snapshot of a clone from a volume gets a fresh id each run; compare the rest.
        static IEnumerable<ThinImageInfo> Comparable(PoolState state)
        {
            var hidden = state.Images.Where(i => i.Name.StartsWith("clone-source", StringComparison.Ordinal)).Select(i => i.Id).ToHashSet();
            return state.Images.Select(i => i with
            {
                CreatedAt = default,
                Id = hidden.Contains(i.Id) ? Guid.Empty : i.Id,
                ParentId = i.ParentId is { } parent && hidden.Contains(parent) ? Guid.Empty : i.ParentId,
            });
        }

        Assert.That(Comparable(compacted), Is.EqualTo(Comparable(plain)));
        Assert.That(compacted.Images.Count(i => i.Deleted), Is.EqualTo(2), "the deleted s1 and the hidden snapshot are carried over");
        foreach (var (id, content) in plain.Content)
        {
            Assert.That(compacted.Content[id].SequenceEqual(content), Is.True, $"content of {id}");
        }
    }
}
