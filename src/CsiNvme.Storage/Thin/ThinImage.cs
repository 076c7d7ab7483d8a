namespace CsiNvme.Storage.Thin;

/// <summary>What an image of a thin pool is.</summary>
public enum ThinImageKind : byte
{
    /// <summary>A writable volume.</summary>
    Volume = 1,
    /// <summary>An immutable point-in-time image; volumes and clones read through it.</summary>
    Snapshot = 2,
}

/// <summary>
/// Where an image is in the two-step life its owner gives it when it keeps its own record of the image elsewhere (a
/// metadata store): created <see cref="Pending"/>, <see cref="Committed"/> once that record exists, <see cref="Deleting"/>
/// before the record is removed. An image that is not committed and has no record was never acknowledged (or its
/// deletion was), so it may be reclaimed; a committed one must never be.
/// </summary>
public enum ThinImageState : byte
{
    /// <summary>In use; also every image of a pool written before states existed.</summary>
    Committed = 0,
    /// <summary>Created, its owner's record not yet written.</summary>
    Pending = 1,
    /// <summary>Its owner is removing it.</summary>
    Deleting = 2,
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
    int ChildCount,
    ThinImageState State,
    string Annotation);

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

    public ThinImageState State;

    /// <summary>Opaque to the pool: what its owner keeps with the image (the server: what rebuilds its metadata record).</summary>
    public string Annotation = "";
}
