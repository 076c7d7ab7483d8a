using CsCheck;

namespace CsiNvme.Storage.Tests;

/// <summary>Random operation sequences must leave a volume equal to a plain byte array given the same operations.</summary>
[TestFixture(Backend.File)]
[TestFixture(Backend.Memory)]
public sealed class ModelPropertyTests(Backend backend)
{
    // Just over 2 chunks, not a whole number of chunks, so edges and partial chunks are hit often.
    private const int VolumeSize = (2 << 20) + (24 * 1024);
    private const int Block = 512;
    private TempDirectory _dir = null!;

    public enum Kind
    {
        Write,
        Read,
        WriteZeroes,
        Deallocate,
    }

    public readonly record struct Op(Kind Kind, long Offset, int Length, int Seed)
    {
        public override string ToString() => $"{Kind}({Offset}, {Length})";
    }

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-storage");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void VolumeBehavesLikeAByteArray()
    {
        // Offsets cluster around chunk edges; a few ranges run past the end to exercise OutOfRange.
        Gen<long> offset = Gen.OneOf(
            Gen.Long[0, VolumeSize],
            Gen.Long[(1 << 20) - 70_000, (1 << 20) + 4096],
            Gen.Long[VolumeSize - 70_000, VolumeSize]);
        Gen<Op> op =
            from kind in Gen.Enum<Kind>()
            from o in offset
            from length in Gen.Int[0, 140_000]
            from seed in Gen.Int
            select new Op(kind, o, length, seed);

        op.Array[1, 24].Sample(ops =>
        {
            using IBlockVolume volume = VolumeFactory.Create(backend, _dir, VolumeSize, Block);
            var model = new byte[VolumeSize];
            foreach (Op o in ops)
            {
                Apply(volume, model, o);
            }

            var all = new byte[VolumeSize];
            Assert.That(volume.Read(0, all), Is.EqualTo(StorageStatus.Success));
            Assert.That(all.AsSpan().SequenceEqual(model), Is.True, "final contents differ from the model");
        }, iter: 60);
    }

    private static void Apply(IBlockVolume volume, byte[] model, Op op)
    {
        bool inRange = op.Offset + op.Length <= VolumeSize;
        StorageStatus expected = inRange ? StorageStatus.Success : StorageStatus.OutOfRange;
        switch (op.Kind)
        {
            case Kind.Write:
                byte[] data = VolumeFactory.Pattern(op.Length, op.Seed);
                Assert.That(volume.Write(op.Offset, data, forceUnitAccess: false), Is.EqualTo(expected), op.ToString());
                if (inRange)
                {
                    data.CopyTo(model, op.Offset);
                }

                break;
            case Kind.Read:
                var back = new byte[op.Length];
                Assert.That(volume.Read(op.Offset, back), Is.EqualTo(expected), op.ToString());
                if (inRange)
                {
                    Assert.That(back.AsSpan().SequenceEqual(model.AsSpan((int)op.Offset, op.Length)), Is.True, op.ToString());
                }

                break;
            case Kind.WriteZeroes:
            case Kind.Deallocate:
                StorageStatus status = op.Kind == Kind.Deallocate
                    ? volume.Deallocate(op.Offset, op.Length)
                    : volume.WriteZeroes(op.Offset, op.Length);
                Assert.That(status, Is.EqualTo(expected), op.ToString());
                if (inRange)
                {
                    Array.Clear(model, (int)op.Offset, op.Length);
                }

                break;
        }
    }
}
