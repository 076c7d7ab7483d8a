using CsCheck;
using CsiNvme.Storage.Thin;
using static CsiNvme.Storage.Tests.Thin.ThinTestHelpers;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>
/// Random sequences of pool operations against a reference model where every image is a plain byte array: a snapshot
/// or clone is a copy, a delete drops the array. After every step each live image must read exactly as its array and
/// the pool must pass its consistency check.
/// </summary>
public sealed class ThinModelPropertyTests
{
    private const int Block = 512;
    private const int MaxImages = 8;
    private const long MaxVolumeSize = 4L << 20;

    public enum Kind
    {
        Write,
        WriteZeroes,
        Deallocate,
        Snapshot,
        CloneFromSnapshot,
        CloneFromVolume,
        DeleteVolume,
        DeleteSnapshot,
        Resize,
        Flush,
        Reopen,
        CreateVolume,
    }

    /// <summary>One step; <see cref="Pick"/> chooses among the images existing when it runs, so shrinking stays meaningful.</summary>
    public readonly record struct Op(Kind Kind, int Pick, int Offset, int Length, int Seed)
    {
        public override string ToString() => $"{Kind}(pick {Pick}, at {Offset}, len {Length}, seed {Seed})";
    }

    public readonly record struct Scenario(int ClusterSize, int InitialBlocks, Op[] Ops)
    {
        public override string ToString() => $"cluster {ClusterSize}, initial {InitialBlocks * Block} bytes: {string.Join("; ", Ops)}";
    }

    private sealed class ModelImage(Guid id, bool isSnapshot, byte[] data)
    {
        public Guid Id { get; } = id;

        public bool IsSnapshot { get; } = isSnapshot;

        public byte[] Data { get; set; } = data;
    }

    private static readonly Gen<Kind> KindGen = Gen.Frequency(
        (30, Kind.Write),
        (5, Kind.WriteZeroes),
        (6, Kind.Deallocate),
        (6, Kind.Snapshot),
        (4, Kind.CloneFromSnapshot),
        (4, Kind.CloneFromVolume),
        (3, Kind.DeleteVolume),
        (5, Kind.DeleteSnapshot),
        (4, Kind.Resize),
        (4, Kind.Flush),
        (3, Kind.Reopen),
        (2, Kind.CreateVolume));

    private static readonly Gen<Op> OpGen =
        from kind in KindGen
        from pick in Gen.Int[0, 1000]
        from offset in Gen.Int[0, int.MaxValue]
        from length in Gen.Int[1, 200_000]
        from seed in Gen.Int
        select new Op(kind, pick, offset, length, seed);

    private static readonly Gen<Scenario> ScenarioGen =
        from cluster in Gen.OneOf(4096, 16384, 65536)
        // 1..2 MiB, not a whole number of clusters most of the time.
        from initialBlocks in Gen.Int[2048, 4096]
        from ops in OpGen.Array[1, 40]
        select new Scenario(cluster, initialBlocks, ops);

    [Test]
    public void PoolBehavesLikeAMapOfByteArrays()
    {
        // One thread: the machine is small and each sample syncs files; about 15 s.
        ScenarioGen.Sample(Run, iter: 60, threads: 1);
    }

    private static void Run(Scenario scenario)
    {
        using var dir = new TempDirectory("csinvme-thin-model");
        var options = Options(dir, sizeBytes: 128L << 20, clusterSize: scenario.ClusterSize);
        var pool = ThinPool.Open(options);
        try
        {
            var images = new List<ModelImage>();
            var first = new ModelImage(Guid.NewGuid(), false, new byte[scenario.InitialBlocks * Block]);
            pool.CreateVolume(first.Id, "v0", first.Data.Length, Block);
            images.Add(first);
            for (var step = 0; step < scenario.Ops.Length; step++)
            {
                var op = scenario.Ops[step];
                Apply(ref pool, options, images, op);
                Verify(pool, images, $"after step {step} {op}");
            }
        }
        finally
        {
            pool.Dispose();
        }
    }

    private static ModelImage? Pick(List<ModelImage> images, bool snapshot, int pick)
    {
        var candidates = images.Where(i => i.IsSnapshot == snapshot).ToArray();
        return candidates.Length == 0 ? null : candidates[pick % candidates.Length];
    }

    private static (long Offset, int Length) Range(ModelImage image, Op op)
    {
        var offset = op.Offset % image.Data.Length;
        return (offset, Math.Min(op.Length, image.Data.Length - offset));
    }

    private static void Apply(ref ThinPool pool, ThinPoolOptions options, List<ModelImage> images, Op op)
    {
        var volume = Pick(images, snapshot: false, op.Pick);
        var snapshot = Pick(images, snapshot: true, op.Pick);
        var room = images.Count < MaxImages;
        switch (op.Kind)
        {
            case Kind.Write when volume is not null:
                {
                    var (offset, length) = Range(volume, op);
                    var data = Pattern(length, op.Seed);
                    Assert.That(pool.OpenVolume(volume.Id).Write(offset, data, forceUnitAccess: (op.Seed & 7) == 0), Is.EqualTo(StorageStatus.Success), op.ToString());
                    data.CopyTo(volume.Data, offset);
                    break;
                }

            case Kind.WriteZeroes or Kind.Deallocate when volume is not null:
                {
                    var (offset, length) = Range(volume, op);
                    var handle = pool.OpenVolume(volume.Id);
                    var status = op.Kind == Kind.WriteZeroes ? handle.WriteZeroes(offset, length) : handle.Deallocate(offset, length);
                    Assert.That(status, Is.EqualTo(StorageStatus.Success), op.ToString());
                    Array.Clear(volume.Data, (int)offset, length);
                    break;
                }

            case Kind.Snapshot when volume is not null && room:
                {
                    var id = Guid.NewGuid();
                    pool.CreateSnapshot(volume.Id, id, $"s{images.Count}");
                    images.Add(new ModelImage(id, true, volume.Data.ToArray()));
                    break;
                }

            case Kind.CloneFromSnapshot when snapshot is not null && room:
                {
                    var id = Guid.NewGuid();
                    var size = Grown(snapshot.Data.Length, op);
                    pool.CloneFromSnapshot(id, $"c{images.Count}", snapshot.Id, size, Block);
                    images.Add(new ModelImage(id, false, Extend(snapshot.Data, size)));
                    break;
                }

            case Kind.CloneFromVolume when volume is not null && room:
                {
                    var id = Guid.NewGuid();
                    var size = Grown(volume.Data.Length, op);
                    pool.CloneFromVolume(id, $"c{images.Count}", volume.Id, size, Block);
                    images.Add(new ModelImage(id, false, Extend(volume.Data, size)));
                    break;
                }

            case Kind.DeleteVolume when volume is not null:
                pool.DeleteVolume(volume.Id);
                images.Remove(volume);
                break;
            case Kind.DeleteSnapshot when snapshot is not null:
                pool.DeleteSnapshot(snapshot.Id);
                images.Remove(snapshot);
                break;
            case Kind.Resize when volume is not null:
                {
                    var handle = pool.OpenVolume(volume.Id);
                    if ((op.Seed & 3) == 0)
                    {
                        Assert.Throws<ArgumentOutOfRangeException>(() => handle.Resize(volume.Data.Length - Block), "shrink");
                        break;
                    }

                    var size = Grown(volume.Data.Length, op);
                    handle.Resize(size);
                    volume.Data = Extend(volume.Data, size);
                    break;
                }

            case Kind.Flush:
                Assert.That(pool.Flush(), Is.EqualTo(StorageStatus.Success));
                break;
            case Kind.Reopen:
                pool.Dispose();
                pool = ThinPool.Open(options);
                break;
            case Kind.CreateVolume when room:
                {
                    var id = Guid.NewGuid();
                    var size = (1 + (op.Length % 4096)) * Block;
                    pool.CreateVolume(id, $"v{images.Count}", size, Block);
                    images.Add(new ModelImage(id, false, new byte[size]));
                    break;
                }

            default:
                // Not applicable now (no such image or too many images): the step does nothing in both.
                break;
        }
    }

    /// <summary>A size at least <paramref name="size"/>, sometimes larger, never beyond the cap.</summary>
    private static long Grown(long size, Op op) => Math.Min(MaxVolumeSize, Math.Max(size, size + ((op.Seed % 5) * (op.Length % 300) * Block)));

    private static byte[] Extend(byte[] data, long size)
    {
        var extended = new byte[size];
        data.CopyTo(extended, 0);
        return extended;
    }

    private static void Verify(ThinPool pool, List<ModelImage> images, string context)
    {
        var live = pool.ListImages().Where(i => !i.Deleted).ToArray();
        Assert.That(live.Select(i => (i.Id, i.Kind == ThinImageKind.Snapshot, i.SizeBytes)), Is.EquivalentTo(images.Select(i => (i.Id, i.IsSnapshot, (long)i.Data.Length))), $"images {context}");
        foreach (var image in images)
        {
            var actual = new byte[image.Data.Length];
            Assert.That(pool.ReadImage(image.Id, 0, actual), Is.EqualTo(StorageStatus.Success), $"read of {image.Id} {context}");
            if (!actual.AsSpan().SequenceEqual(image.Data))
            {
                var at = actual.AsSpan().CommonPrefixLength(image.Data);
                Assert.Fail($"{(image.IsSnapshot ? "snapshot" : "volume")} {image.Id} differs from the model at byte {at} (cluster {at / pool.ClusterSize}) {context}");
            }
        }

        var report = pool.Check();
        Assert.That(report.Errors, Is.Empty, $"Check() {context}");
        Assert.That(report.LeakedClustersReclaimed, Is.Zero, $"leaked clusters {context}");
        Assert.That(pool.UsedBytes, Is.EqualTo(report.AllocatedClusters * pool.ClusterSize), $"used bytes {context}");
    }
}
