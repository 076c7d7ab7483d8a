namespace CsiNvme.Storage.Thin;

/// <summary>What an image of a thin pool is.</summary>
public enum ThinImageKind : byte
{
    /// <summary>A writable volume.</summary>
    Volume = 1,
    /// <summary>An immutable point-in-time image; volumes and clones read through it.</summary>
    Snapshot = 2,
}

/// <summary>A read-only view of an image for listings.</summary>
public sealed record ThinImageInfo(
    Guid Id,
    ThinImageKind Kind,
    string Name,
    long SizeBytes,
    int BlockSize,
    Guid? ParentId,
    long OwnedBytes,
    DateTimeOffset CreatedAt,
    bool Deleted,
    int ChildCount);

/// <summary>
/// A node of the pool's image tree. A volume owns the clusters written since its last snapshot and reads the rest
/// through its parent snapshot chain; taking a snapshot moves the volume's map into a new snapshot node in O(1).
/// </summary>
internal sealed class ThinImage
{
    public ThinImage(int index, Guid id, ThinImageKind kind, string name, long sizeBytes, int blockSize, long createdUnixMs, ClusterMap map)
    {
        Index = index;
        Id = id;
        Kind = kind;
        Name = name;
        SizeBytes = sizeBytes;
        BlockSize = blockSize;
        CreatedUnixMs = createdUnixMs;
        Map = map;
    }

    public int Index { get; }

    public Guid Id { get; }

    public ThinImageKind Kind { get; set; }

    public string Name { get; set; }

    public long SizeBytes;

    public int BlockSize { get; }

    public long CreatedUnixMs { get; }

    public ClusterMap Map;

    public ThinImage? Parent;

    public List<ThinImage> Children { get; } = new();

    /// <summary>A snapshot deleted while two or more images still read through it; it goes away when they do.</summary>
    public bool Deleted;

    /// <summary>Set when the image left the pool; late I/O on a stale handle then fails instead of touching clusters.</summary>
    public volatile bool Removed;
}
