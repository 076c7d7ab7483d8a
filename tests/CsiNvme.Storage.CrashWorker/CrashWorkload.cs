namespace CsiNvme.Storage.CrashWorker;

public enum CrashOpKind
{
    CreateVolume,
    Write,
    Deallocate,
    Flush,
    Snapshot,
    CloneFromSnapshot,
    CloneFromVolume,
    DeleteVolume,
    DeleteSnapshot,
    Resize,
}

/// <summary>
/// One operation of the workload. <see cref="Target"/> is the image acted on or created, <see cref="Source"/> the
/// volume or snapshot read from; writes stamp block i with generation <see cref="Generation"/> + i.
/// </summary>
public sealed record CrashOp(int Index, CrashOpKind Kind, Guid Target, Guid Source, long Offset, long Length, long Generation, bool Fua)
{
    public const int BlockSize = BlockStamp.Size;

    /// <summary>Durable when it returns (by contract), so the worker acknowledges it.</summary>
    public bool IsDurable => Kind switch
    {
        CrashOpKind.Write => Fua,
        CrashOpKind.Deallocate => false,
        _ => true,
    };

    public int Blocks => (int)(Length / BlockSize);

    /// <summary>What an image created by this operation is annotated with.</summary>
    public string Annotation => $"{{\"createdBy\":{Index},\"kind\":\"{Kind}\"}}";

    /// <summary>The line the worker prints once the operation returned durably; the test compares it verbatim.</summary>
    public string AckLine => $"ack {Index} {Kind} target={Target:N} source={Source:N} offset={Offset} length={Length} gen={Generation} fua={(Fua ? 1 : 0)} .";
}

/// <summary>An image as the workload sees it: enough to choose valid operations.</summary>
public sealed record CrashImage(Guid Id, bool IsSnapshot, long SizeBytes);

/// <summary>
/// The seeded workload. It depends only on its seed and the images it starts from, never on results, so the crash
/// test regenerates exactly the sequence the killed worker ran and learns from the acknowledgements how far it got.
/// </summary>
public sealed class CrashWorkload
{
    public const int MaxVolumes = 5;
    public const int MaxSnapshots = 5;
    public const long MaxVolumeSize = 8L << 20;

    private readonly Random _random;
    private readonly List<CrashImage> _images;
    private long _nextGeneration;
    private int _index;

    public CrashWorkload(int seed, long generationBase, IEnumerable<CrashImage> existing)
    {
        _random = new Random(seed);
        _nextGeneration = generationBase;
        // Sorted by id: the worker and the test list the same pool and must start from the same order.
        _images = existing.OrderBy(i => i.Id).ToList();
    }

    public IReadOnlyList<CrashImage> Images => _images;

    public CrashOp Next()
    {
        var volumes = _images.Where(i => !i.IsSnapshot).ToArray();
        var snapshots = _images.Where(i => i.IsSnapshot).ToArray();
        var roll = _random.Next(100);
        var op = roll switch
        {
            _ when volumes.Length == 0 => CreateVolume(),
            < 55 => Write(volumes),
            < 63 => Deallocate(volumes),
            < 71 => new CrashOp(_index, CrashOpKind.Flush, Pick(volumes).Id, Guid.Empty, 0, 0, 0, false),
            < 77 when snapshots.Length < MaxSnapshots => Snapshot(volumes),
            < 81 when snapshots.Length > 0 && volumes.Length < MaxVolumes => Clone(Pick(snapshots), CrashOpKind.CloneFromSnapshot),
            < 85 when volumes.Length < MaxVolumes => Clone(Pick(volumes), CrashOpKind.CloneFromVolume),
            < 88 when volumes.Length > 1 => Delete(Pick(volumes)),
            < 93 when snapshots.Length > 0 => Delete(Pick(snapshots)),
            < 97 => Resize(volumes),
            < 100 when volumes.Length < MaxVolumes => CreateVolume(),
            _ => Write(volumes),
        };
        _index++;
        return op;
    }

    private CrashImage Pick(CrashImage[] images) => images[_random.Next(images.Length)];

    private long NewSize() => _random.Next(256, 1025) * (long)CrashOp.BlockSize;

    private Guid NewId()
    {
        Span<byte> bytes = stackalloc byte[16];
        _random.NextBytes(bytes);
        return new Guid(bytes);
    }

    private CrashOp CreateVolume()
    {
        var image = new CrashImage(NewId(), false, NewSize());
        _images.Add(image);
        return new CrashOp(_index, CrashOpKind.CreateVolume, image.Id, Guid.Empty, 0, image.SizeBytes, 0, false);
    }

    private CrashOp Write(CrashImage[] volumes)
    {
        var volume = Pick(volumes);
        var totalBlocks = (int)(volume.SizeBytes / CrashOp.BlockSize);
        var first = _random.Next(totalBlocks);
        // Up to 24 blocks (96 KiB), so writes cross 64 KiB clusters often.
        var count = Math.Min(_random.Next(1, 25), totalBlocks - first);
        var generation = _nextGeneration;
        _nextGeneration += count;
        var fua = _random.Next(8) == 0;
        return new CrashOp(_index, CrashOpKind.Write, volume.Id, Guid.Empty, (long)first * CrashOp.BlockSize, (long)count * CrashOp.BlockSize, generation, fua);
    }

    private CrashOp Deallocate(CrashImage[] volumes)
    {
        var volume = Pick(volumes);
        var totalBlocks = (int)(volume.SizeBytes / CrashOp.BlockSize);
        var first = _random.Next(totalBlocks);
        // Up to 48 blocks: whole clusters are unmapped or masked, partial ones zeroed in place or copied.
        var count = Math.Min(_random.Next(1, 49), totalBlocks - first);
        return new CrashOp(_index, CrashOpKind.Deallocate, volume.Id, Guid.Empty, (long)first * CrashOp.BlockSize, (long)count * CrashOp.BlockSize, 0, false);
    }

    private CrashOp Snapshot(CrashImage[] volumes)
    {
        var volume = Pick(volumes);
        var snapshot = new CrashImage(NewId(), true, volume.SizeBytes);
        _images.Add(snapshot);
        return new CrashOp(_index, CrashOpKind.Snapshot, snapshot.Id, volume.Id, 0, 0, 0, false);
    }

    private CrashOp Clone(CrashImage source, CrashOpKind kind)
    {
        var size = Math.Min(MaxVolumeSize, source.SizeBytes + (_random.Next(3) * 16L * CrashOp.BlockSize));
        var clone = new CrashImage(NewId(), false, size);
        _images.Add(clone);
        return new CrashOp(_index, kind, clone.Id, source.Id, 0, size, 0, false);
    }

    private CrashOp Delete(CrashImage image)
    {
        _images.Remove(image);
        return new CrashOp(_index, image.IsSnapshot ? CrashOpKind.DeleteSnapshot : CrashOpKind.DeleteVolume, image.Id, Guid.Empty, 0, 0, 0, false);
    }

    private CrashOp Resize(CrashImage[] volumes)
    {
        var volume = Pick(volumes);
        var size = Math.Min(MaxVolumeSize, volume.SizeBytes + (_random.Next(1, 65) * (long)CrashOp.BlockSize));
        _images[_images.IndexOf(volume)] = volume with { SizeBytes = size };
        return new CrashOp(_index, CrashOpKind.Resize, volume.Id, Guid.Empty, 0, size, 0, false);
    }
}
