using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace CsiNvme.Storage.Thin;

/// <summary>Where a thin pool lives and how it behaves.</summary>
public sealed class ThinPoolOptions
{
    /// <summary>The pool's data: a file (created sparse when missing) or a raw block device.</summary>
    public required string DataPath { get; init; }

    /// <summary>Size of a new file pool, or of a device whose size cannot be read; null keeps an existing file's size.</summary>
    public long? SizeBytes { get; init; }

    /// <summary>The metadata journal; defaults to <c>DataPath + ".journal"</c> (a device pool must name one on a file system).</summary>
    public string? JournalPath { get; init; }

    /// <summary>
    /// Allocation and copy-on-write granularity. 64 KiB: small enough that a 4 KiB write after a snapshot copies 16x its
    /// size, not 256x as with 1 MiB, and large enough that a 1 TiB volume's map is 16 M entries (64 MiB) when full.
    /// </summary>
    public int ClusterSize { get; init; } = 64 * 1024;

    /// <summary>How often pending metadata is made durable without a host Flush.</summary>
    public TimeSpan CommitInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Journal size above which it is rewritten with just the current state.</summary>
    public long CompactThresholdBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>Told when writes start and stop failing for lack of space, once per change.</summary>
    public IThinPoolSpaceObserver? SpaceObserver { get; init; }
}

/// <summary>
/// Hears when a pool runs out of space and when it has some again: once per change, not per failed write, so a full
/// pool is one log line and not one per write. Called on the thread of the write or commit that saw the change.
/// </summary>
public interface IThinPoolSpaceObserver
{
    /// <summary>
    /// A write to <paramref name="imageName"/> failed for lack of space: the pool has no free cluster
    /// (<paramref name="noFreeCluster"/>), or the file system under a file pool is full.
    /// </summary>
    void OutOfSpace(ThinPool pool, string imageName, bool noFreeCluster);

    /// <summary>After <see cref="OutOfSpace"/>: clusters were freed, or a write got a new cluster again.</summary>
    void SpaceAvailable(ThinPool pool);
}

/// <summary>Result of a consistency check of a pool.</summary>
public sealed record ThinPoolCheckReport(long ReferencedClusters, long AllocatedClusters, long LeakedClustersReclaimed, IReadOnlyList<string> Errors)
{
    public bool IsConsistent => Errors.Count == 0;
}

/// <summary>
/// A thin-provisioned pool of volumes, snapshots and clones on one file or block device.
/// <para>
/// Data lives in fixed-size clusters allocated on first write; cluster 0 holds the pool header. Metadata (images,
/// cluster maps) lives in memory and in a write-ahead <see cref="MetadataJournal"/>. Ordering rules that make a crash
/// at any point safe: (1) a new cluster's data is written before its mapping record exists; (2) a commit syncs the
/// data before it syncs the records, so a durable mapping never points at unwritten data; (3) a freed cluster is
/// reused only after the record that freed it is durable, so a crash cannot hand one cluster to two images. After a
/// crash the journal replays to the last commit and the free space is recomputed from the maps, so nothing leaks.
/// </para>
/// </summary>
public sealed partial class ThinPool : IDisposable
{
    private const ulong HeaderMagic = 0x314C504E56495343; // "CSINVPL1"
    private const int StripeCount = 256;

    private readonly ThinPoolOptions _options;
    private readonly SafeFileHandle _data;
    private readonly MetadataJournal _journal;
    private readonly bool _isDevice;
    private readonly int _clusterSize;
    private readonly int _clusterShift;
    private readonly long _clusterCount;
    private readonly object _metaLock = new();
    private readonly object _allocLock = new();
    private readonly object _commitLock = new();
    private readonly object[] _stripes;
    // I/O takes it shared; changes of the image tree (snapshot, clone, delete) take it exclusively, so a read walking
    // a snapshot chain never sees the chain change under it.
    private readonly ReaderWriterLockSlim _topology = new(LockRecursionPolicy.SupportsRecursion);
    private readonly Dictionary<Guid, ThinImage> _images = new();
    private readonly Dictionary<int, ThinImage> _imagesByIndex = new();
    private readonly Dictionary<Guid, ThinVolume> _openVolumes = new();
    private readonly ulong[] _allocated;
    private readonly ulong[] _knownZero;
    private readonly List<int> _pendingFree = new();
    private readonly Timer _commitTimer;
    private long _allocatedCount;
    private long _allocationCursor = 1;
    private int _nextImageIndex = 1;
    private volatile bool _disposed;

    private ThinPool(ThinPoolOptions options, SafeFileHandle data, MetadataJournal journal, bool isDevice, Guid poolId, int clusterSize, long clusterCount)
    {
        _options = options;
        _data = data;
        _journal = journal;
        _isDevice = isDevice;
        PoolId = poolId;
        _clusterSize = clusterSize;
        _clusterShift = System.Numerics.BitOperations.Log2((uint)clusterSize);
        _clusterCount = clusterCount;
        _allocated = new ulong[(clusterCount + 63) / 64];
        _knownZero = new ulong[(clusterCount + 63) / 64];
        _stripes = new object[StripeCount];
        for (var i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new object();
        }

        _commitTimer = new Timer(static s => ((ThinPool)s!).BackgroundCommit(), this, Timeout.Infinite, Timeout.Infinite);
    }

    public Guid PoolId { get; }

    public string DataPath => _options.DataPath;

    public int ClusterSize => _clusterSize;

    /// <summary>Bytes available to images (the header cluster excluded).</summary>
    public long CapacityBytes => (_clusterCount - 1) * _clusterSize;

    public long UsedBytes => Interlocked.Read(ref _allocatedCount) * _clusterSize;

    public long FreeBytes => CapacityBytes - UsedBytes;

    // ---------------------------------------------------------------- open / create

    /// <summary>Opens a pool, creating it when its data file does not exist yet.</summary>
    public static ThinPool Open(ThinPoolOptions options)
    {
        var clusterSize = options.ClusterSize;
        if (clusterSize < 4096 || (clusterSize & (clusterSize - 1)) != 0 || clusterSize > 16 * 1024 * 1024)
        {
            throw new ArgumentException("the cluster size must be a power of two between 4 KiB and 16 MiB");
        }

        var journalPath = options.JournalPath ?? options.DataPath + ".journal";
        var isDevice = options.DataPath.StartsWith("/dev/", StringComparison.Ordinal);
        var exists = File.Exists(options.DataPath) || isDevice;
        var journalExists = File.Exists(journalPath) && new FileInfo(journalPath).Length > 0;
        if (!exists && options.SizeBytes is null)
        {
            throw new ArgumentException($"{options.DataPath} does not exist; give a size to create the pool");
        }

        var data = File.OpenHandle(options.DataPath, exists ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        MetadataJournal? journal = null;
        try
        {
            var size = isDevice ? DeviceSize(options.DataPath) ?? options.SizeBytes ?? throw new ArgumentException($"cannot read the size of {options.DataPath}; give it explicitly")
                : exists ? Math.Max(RandomAccess.GetLength(data), options.SizeBytes ?? 0) : options.SizeBytes!.Value;
            if (!isDevice && RandomAccess.GetLength(data) < size)
            {
                RandomAccess.SetLength(data, size);
            }

            var clusterCount = size / clusterSize;
            if (clusterCount < 2)
            {
                throw new ArgumentException($"a pool needs at least two clusters of {clusterSize} bytes");
            }

            journal = MetadataJournal.Open(journalPath, out var records);
            ThinPool pool;
            if (records.Count == 0)
            {
                // No complete commit: either a new pool, or a creation interrupted before its first commit (the data
                // header is written only after that commit). A header without a journal is a pool whose metadata is lost.
                if (ReadHeader(data, clusterSize) is not null)
                {
                    throw new InvalidDataException(journalExists
                        ? $"{journalPath}: no complete commit; the pool metadata is lost or corrupted"
                        : $"{options.DataPath} holds a pool but its journal {journalPath} is missing");
                }

                var poolId = Guid.NewGuid();
                pool = new ThinPool(options, data, journal, isDevice, poolId, clusterSize, clusterCount);
                pool.AppendPoolHeader();
                pool.MarkAllFreeZero(freshFile: !exists && !isDevice);
                pool.Commit();
                pool.WriteHeader();
            }
            else
            {
                var (poolId, journalClusterSize, journalClusterCount) = ParsePoolHeader(records[0]);
                if (journalClusterSize != clusterSize)
                {
                    throw new InvalidDataException($"{options.DataPath}: the pool was created with {journalClusterSize}-byte clusters, not {clusterSize}");
                }

                var header = ReadHeader(data, clusterSize);
                var creationInterrupted = header is null && records.Count == 1;
                if (!creationInterrupted && (header is null || header.Value.PoolId != poolId))
                {
                    throw new InvalidDataException($"{options.DataPath} does not hold pool {poolId} described by {journalPath}");
                }

                if (clusterCount < journalClusterCount)
                {
                    throw new InvalidDataException($"{options.DataPath} is smaller than the pool it holds ({journalClusterCount} clusters)");
                }

                pool = new ThinPool(options, data, journal, isDevice, poolId, clusterSize, journalClusterCount);
                if (creationInterrupted)
                {
                    // The journal committed the new pool but the crash came before its header: finish the creation.
                    pool.WriteHeader();
                }

                pool.Replay(records);
                pool.RebuildAllocation();
                pool.MarkAllFreeZero(freshFile: false);
            }

            pool._commitTimer.Change(options.CommitInterval, options.CommitInterval);
            return pool;
        }
        catch
        {
            journal?.Dispose();
            data.Dispose();
            throw;
        }
    }

    private static long? DeviceSize(string path)
    {
        var name = Path.GetFileName(new FileInfo(path).LinkTarget ?? path);
        var sysfs = $"/sys/class/block/{name}/size";
        return File.Exists(sysfs) && long.TryParse(File.ReadAllText(sysfs).Trim(), out var sectors) ? sectors * 512 : null;
    }

    private void WriteHeader()
    {
        var header = new byte[4096];
        BinaryPrimitives.WriteUInt64LittleEndian(header, HeaderMagic);
        PoolId.TryWriteBytes(header.AsSpan(8, 16));
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(24), _clusterSize);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(28), _clusterCount);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(36), Crc32CChecksum.Compute(header.AsSpan(0, 36)));
        RandomAccess.Write(_data, header, 0);
        SyncData();
    }

    private static (Guid PoolId, int ClusterSize)? ReadHeader(SafeFileHandle data, int clusterSize)
    {
        var header = new byte[4096];
        if (RandomAccess.Read(data, header, 0) < 40 || BinaryPrimitives.ReadUInt64LittleEndian(header) != HeaderMagic)
        {
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(36)) != Crc32CChecksum.Compute(header.AsSpan(0, 36)))
        {
            throw new InvalidDataException("the pool header fails its checksum");
        }

        return (new Guid(header.AsSpan(8, 16)), BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(24)));
    }

    private void AppendPoolHeader()
    {
        Span<byte> payload = stackalloc byte[28];
        PoolId.TryWriteBytes(payload);
        BinaryPrimitives.WriteInt32LittleEndian(payload[16..], _clusterSize);
        BinaryPrimitives.WriteInt64LittleEndian(payload[20..], _clusterCount);
        _journal.Append(JournalRecordType.PoolHeader, payload);
    }

    private static (Guid, int, long) ParsePoolHeader((JournalRecordType Type, byte[] Payload) record)
    {
        if (record.Type != JournalRecordType.PoolHeader || record.Payload.Length < 28)
        {
            throw new InvalidDataException("the journal does not start with a pool header");
        }

        var p = record.Payload;
        return (new Guid(p.AsSpan(0, 16)), BinaryPrimitives.ReadInt32LittleEndian(p.AsSpan(16)), BinaryPrimitives.ReadInt64LittleEndian(p.AsSpan(20)));
    }

    // ---------------------------------------------------------------- public image operations

    public IReadOnlyList<ThinImageInfo> ListImages()
    {
        _topology.EnterReadLock();
        try
        {
            lock (_metaLock)
            {
                return _images.Values.OrderBy(i => i.Index).Select(Describe).ToArray();
            }
        }
        finally
        {
            _topology.ExitReadLock();
        }
    }

    public ThinImageInfo? GetImage(Guid id)
    {
        lock (_metaLock)
        {
            return _images.TryGetValue(id, out var image) ? Describe(image) : null;
        }
    }

    private ThinImageInfo Describe(ThinImage image) => new(
        image.Id,
        image.Kind,
        image.Name,
        Volatile.Read(ref image.SizeBytes),
        image.BlockSize,
        image.Parent?.Id,
        image.Map.OwnedCount * _clusterSize,
        DateTimeOffset.FromUnixTimeMilliseconds(image.CreatedUnixMs),
        image.Deleted,
        image.Children.Count,
        image.State,
        image.Annotation);

    /// <summary>
    /// Creates an empty thin volume; durable on return, with <paramref name="state"/> and <paramref name="annotation"/>
    /// in the same commit.
    /// </summary>
    public ThinVolume CreateVolume(
        Guid id, string name, long sizeBytes, int blockSize, ThinImageState state = ThinImageState.Committed, string annotation = "") =>
        CreateImage(id, name, sizeBytes, blockSize, parent: null, state, annotation);

    /// <summary>A new volume reading through <paramref name="snapshotId"/>: O(1), writable at once, shares every unchanged cluster.</summary>
    public ThinVolume CloneFromSnapshot(
        Guid id, string name, Guid snapshotId, long sizeBytes, int blockSize, ThinImageState state = ThinImageState.Committed, string annotation = "")
    {
        ValidateAnnotation(annotation);
        _topology.EnterWriteLock();
        try
        {
            var snapshot = Find(snapshotId, ThinImageKind.Snapshot);
            if (snapshot.Deleted)
            {
                throw new KeyNotFoundException($"snapshot {snapshotId} does not exist");
            }

            if (sizeBytes < snapshot.SizeBytes)
            {
                throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"a clone must be at least as large as its source ({snapshot.SizeBytes} bytes)");
            }

            VolumeGeometry.Validate(sizeBytes, blockSize);
            AddImage(id, name, sizeBytes, blockSize, snapshot, state, annotation);
        }
        finally
        {
            _topology.ExitWriteLock();
        }

        // Committed outside the exclusive lock: a commit waits for that lock to release freed clusters.
        Commit();
        return OpenVolume(id);
    }

    /// <summary>A new volume from the current content of another: an internal snapshot is taken and hidden.</summary>
    public ThinVolume CloneFromVolume(
        Guid id, string name, Guid sourceVolumeId, long sizeBytes, int blockSize, ThinImageState state = ThinImageState.Committed, string annotation = "")
    {
        ValidateAnnotation(annotation);
        _topology.EnterWriteLock();
        try
        {
            var source = Find(sourceVolumeId, ThinImageKind.Volume);
            if (sizeBytes < source.SizeBytes)
            {
                throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"a clone must be at least as large as its source ({source.SizeBytes} bytes)");
            }

            // Checked before the hidden snapshot exists: a refusal after it would leave it behind as a live snapshot.
            VolumeGeometry.Validate(sizeBytes, blockSize);
            // The three records are appended under one hold of the lock, so no commit (the background one included)
            // can make the hidden snapshot durable without its create and delete.
            lock (_metaLock)
            {
                if (_images.ContainsKey(id))
                {
                    throw new InvalidOperationException($"image {id} already exists");
                }

                var hidden = TakeSnapshot(source, Guid.NewGuid(), $"clone-source-of-{id:D}", ThinImageState.Committed, "");
                AddImage(id, name, sizeBytes, blockSize, hidden, state, annotation);
                // Hidden from the start: it disappears (merging into the survivor) once either side is deleted.
                DeleteImage(hidden);
            }
        }
        finally
        {
            _topology.ExitWriteLock();
            Commit();
        }

        return OpenVolume(id);
    }

    /// <summary>
    /// Takes a crash-consistent snapshot in O(1): in-flight writes finish first, later ones copy on write. Durable on return.
    /// </summary>
    public ThinImageInfo CreateSnapshot(Guid volumeId, Guid snapshotId, string name, ThinImageState state = ThinImageState.Committed, string annotation = "")
    {
        ValidateAnnotation(annotation);
        ThinImage snapshot;
        _topology.EnterWriteLock();
        try
        {
            var volume = Find(volumeId, ThinImageKind.Volume);
            if (_images.ContainsKey(snapshotId))
            {
                throw new InvalidOperationException($"image {snapshotId} already exists");
            }

            snapshot = TakeSnapshot(volume, snapshotId, name, state, annotation);
        }
        finally
        {
            _topology.ExitWriteLock();
        }

        Commit();
        lock (_metaLock)
        {
            return Describe(snapshot);
        }
    }

    /// <summary>Deletes a volume; its clusters return to the pool once no snapshot or clone reads them.</summary>
    public void DeleteVolume(Guid id) => DeleteAny(id, ThinImageKind.Volume);

    /// <summary>Deletes a snapshot; clusters still read by clones stay until those go.</summary>
    public void DeleteSnapshot(Guid id) => DeleteAny(id, ThinImageKind.Snapshot);

    private void DeleteAny(Guid id, ThinImageKind kind)
    {
        _topology.EnterWriteLock();
        try
        {
            var image = Find(id, kind);
            if (image.Deleted)
            {
                throw new KeyNotFoundException($"{kind.ToString().ToLowerInvariant()} {id} does not exist");
            }

            lock (_openVolumes)
            {
                _openVolumes.Remove(id);
            }

            DeleteImage(image);
        }
        finally
        {
            _topology.ExitWriteLock();
        }

        Commit();
    }

    /// <summary>Returns the I/O view of a volume.</summary>
    public ThinVolume OpenVolume(Guid id)
    {
        lock (_openVolumes)
        {
            if (_openVolumes.TryGetValue(id, out var open))
            {
                return open;
            }

            ThinImage image;
            lock (_metaLock)
            {
                image = Find(id, ThinImageKind.Volume);
            }

            var volume = new ThinVolume(this, image);
            _openVolumes[id] = volume;
            return volume;
        }
    }

    private ThinImage Find(Guid id, ThinImageKind kind)
    {
        if (!_images.TryGetValue(id, out var image) || image.Kind != kind)
        {
            throw new KeyNotFoundException($"{kind.ToString().ToLowerInvariant()} {id} does not exist");
        }

        return image;
    }

    private ThinVolume CreateImage(Guid id, string name, long sizeBytes, int blockSize, ThinImage? parent, ThinImageState state, string annotation)
    {
        VolumeGeometry.Validate(sizeBytes, blockSize);
        ValidateAnnotation(annotation);
        AddImage(id, name, sizeBytes, blockSize, parent, state, annotation);
        Commit();
        return OpenVolume(id);
    }

    /// <summary>
    /// The state and annotation records follow the creation under the same hold of the lock, so no commit can make the
    /// image durable without them (a committed image without its owner's record would stop the owner's start).
    /// </summary>
    private void AddImage(Guid id, string name, long sizeBytes, int blockSize, ThinImage? parent, ThinImageState state, string annotation)
    {
        lock (_metaLock)
        {
            if (_images.ContainsKey(id))
            {
                throw new InvalidOperationException($"image {id} already exists");
            }

            var index = _nextImageIndex;
            var created = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var image = ApplyCreate(index, id, ThinImageKind.Volume, parent?.Index ?? -1, sizeBytes, blockSize, created, name);
            _journal.Append(JournalRecordType.CreateImage, EncodeCreate(image));
            Annotate(_journal, image, state, annotation);
        }
    }

    private ThinImage TakeSnapshot(ThinImage volume, Guid snapshotId, string name, ThinImageState state, string annotation)
    {
        lock (_metaLock)
        {
            var created = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var snapshot = ApplySnapshot(volume, _nextImageIndex, snapshotId, created, name);
            var payload = new byte[4 + 4 + 16 + 8 + 2 + Encoding.UTF8.GetByteCount(name)];
            BinaryPrimitives.WriteInt32LittleEndian(payload, volume.Index);
            BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), snapshot.Index);
            snapshotId.TryWriteBytes(payload.AsSpan(8));
            BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(24), created);
            WriteName(payload.AsSpan(32), name);
            _journal.Append(JournalRecordType.Snapshot, payload);
            Annotate(_journal, snapshot, state, annotation);
            return snapshot;
        }
    }

    private void DeleteImage(ThinImage image)
    {
        lock (_metaLock)
        {
            Span<byte> payload = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(payload, image.Index);
            _journal.Append(JournalRecordType.DeleteImage, payload);
            ApplyDelete(image, _pendingFree);
        }
    }

    internal void Resize(ThinImage image, long newSizeBytes)
    {
        _topology.EnterReadLock();
        try
        {
            lock (_metaLock)
            {
                if (image.Removed)
                {
                    throw new ObjectDisposedException(nameof(ThinVolume));
                }

                if (newSizeBytes < image.SizeBytes)
                {
                    throw new ArgumentOutOfRangeException(nameof(newSizeBytes), "a volume cannot shrink");
                }

                VolumeGeometry.Validate(newSizeBytes, image.BlockSize);
                Span<byte> payload = stackalloc byte[12];
                BinaryPrimitives.WriteInt32LittleEndian(payload, image.Index);
                BinaryPrimitives.WriteInt64LittleEndian(payload[4..], newSizeBytes);
                _journal.Append(JournalRecordType.Resize, payload);
                ApplyResize(image, newSizeBytes);
            }
        }
        finally
        {
            _topology.ExitReadLock();
        }

        Commit();
    }

    // ---------------------------------------------------------------- the model (shared by live changes and replay)

    private ThinImage ApplyCreate(int index, Guid id, ThinImageKind kind, int parentIndex, long size, int blockSize, long created, string name)
    {
        var image = new ThinImage(index, id, kind, name, size, blockSize, created, new ClusterMap(ClustersFor(size)));
        if (parentIndex >= 0)
        {
            var parent = _imagesByIndex[parentIndex];
            image.Parent = parent;
            parent.Children.Add(image);
        }

        _images[id] = image;
        _imagesByIndex[index] = image;
        _nextImageIndex = Math.Max(_nextImageIndex, index + 1);
        return image;
    }

    /// <summary>The volume's map becomes the snapshot's, the volume starts an empty map on top of it.</summary>
    private ThinImage ApplySnapshot(ThinImage volume, int index, Guid snapshotId, long created, string name)
    {
        var snapshot = new ThinImage(index, snapshotId, ThinImageKind.Snapshot, name, volume.SizeBytes, volume.BlockSize, created, volume.Map);
        snapshot.Parent = volume.Parent;
        if (volume.Parent is { } grandParent)
        {
            grandParent.Children[grandParent.Children.IndexOf(volume)] = snapshot;
        }

        snapshot.Children.Add(volume);
        volume.Parent = snapshot;
        volume.Map = new ClusterMap(ClustersFor(volume.SizeBytes));
        _images[snapshotId] = snapshot;
        _imagesByIndex[index] = snapshot;
        _nextImageIndex = Math.Max(_nextImageIndex, index + 1);
        return snapshot;
    }

    private void ApplyResize(ThinImage image, long size)
    {
        image.Map.EnsureCapacity(ClustersFor(size));
        Volatile.Write(ref image.SizeBytes, size);
    }

    /// <summary>
    /// Removes a volume, or marks a snapshot deleted, then collapses deleted snapshots: one with no child goes away
    /// with its clusters, one with a single child merges into it (the child's newer clusters win).
    /// </summary>
    private void ApplyDelete(ThinImage image, List<int>? freed)
    {
        ThinImage? collapse;
        if (image.Kind == ThinImageKind.Volume)
        {
            collapse = image.Parent;
            Remove(image, freed);
        }
        else
        {
            image.Deleted = true;
            collapse = image;
        }

        while (collapse is { Deleted: true })
        {
            var parent = collapse.Parent;
            if (collapse.Children.Count == 0)
            {
                Remove(collapse, freed);
                collapse = parent;
                continue;
            }

            if (collapse.Children.Count == 1)
            {
                var child = collapse.Children[0];
                foreach (var (cluster, value) in collapse.Map.Entries())
                {
                    if (child.Map.Get(cluster) != ClusterMap.Unmapped)
                    {
                        if (value > 0)
                        {
                            freed?.Add(value - 1);
                        }
                    }
                    else
                    {
                        child.Map.Set(cluster, value);
                    }
                }

                child.Parent = parent;
                if (parent is not null)
                {
                    parent.Children[parent.Children.IndexOf(collapse)] = child;
                }

                collapse.Children.Clear();
                collapse.Map = new ClusterMap(0);
                Detach(collapse);
            }

            break;
        }
    }

    private void Remove(ThinImage image, List<int>? freed)
    {
        foreach (var (_, value) in image.Map.Entries())
        {
            if (value > 0)
            {
                freed?.Add(value - 1);
            }
        }

        image.Parent?.Children.Remove(image);
        image.Map = new ClusterMap(0);
        Detach(image);
    }

    private void Detach(ThinImage image)
    {
        image.Removed = true;
        _images.Remove(image.Id);
        _imagesByIndex.Remove(image.Index);
    }

    private long ClustersFor(long bytes) => (bytes + _clusterSize - 1) >> _clusterShift;

    private static byte[] EncodeCreate(ThinImage image) => EncodeImage(image, image.Parent?.Index ?? -1, includeDeleted: false);

    private static byte[] EncodeImage(ThinImage image, int parentIndex, bool includeDeleted)
    {
        var nameLength = Encoding.UTF8.GetByteCount(image.Name);
        var payload = new byte[4 + 16 + 1 + 4 + 8 + 4 + 8 + (includeDeleted ? 1 : 0) + 2 + nameLength];
        var span = payload.AsSpan();
        BinaryPrimitives.WriteInt32LittleEndian(span, image.Index);
        image.Id.TryWriteBytes(span[4..]);
        span[20] = (byte)image.Kind;
        BinaryPrimitives.WriteInt32LittleEndian(span[21..], parentIndex);
        BinaryPrimitives.WriteInt64LittleEndian(span[25..], image.SizeBytes);
        BinaryPrimitives.WriteInt32LittleEndian(span[33..], image.BlockSize);
        BinaryPrimitives.WriteInt64LittleEndian(span[37..], image.CreatedUnixMs);
        var at = 45;
        if (includeDeleted)
        {
            span[at++] = image.Deleted ? (byte)1 : (byte)0;
        }

        WriteName(span[at..], image.Name);
        return payload;
    }

    private static void WriteName(Span<byte> destination, string name)
    {
        var length = Encoding.UTF8.GetBytes(name, destination[2..]);
        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)length);
    }

    private static string ReadName(ReadOnlySpan<byte> source) =>
        Encoding.UTF8.GetString(source.Slice(2, BinaryPrimitives.ReadUInt16LittleEndian(source)));

    private void Replay(List<(JournalRecordType Type, byte[] Payload)> records)
    {
        for (var r = 1; r < records.Count; r++)
        {
            var (type, p) = records[r];
            var span = p.AsSpan();
            switch (type)
            {
                case JournalRecordType.CreateImage:
                case JournalRecordType.ImageState:
                    {
                        var index = BinaryPrimitives.ReadInt32LittleEndian(span);
                        var id = new Guid(span.Slice(4, 16));
                        var kind = (ThinImageKind)span[20];
                        var parentIndex = BinaryPrimitives.ReadInt32LittleEndian(span[21..]);
                        var size = BinaryPrimitives.ReadInt64LittleEndian(span[25..]);
                        var blockSize = BinaryPrimitives.ReadInt32LittleEndian(span[33..]);
                        var created = BinaryPrimitives.ReadInt64LittleEndian(span[37..]);
                        var at = 45;
                        var deleted = type == JournalRecordType.ImageState && span[at++] != 0;
                        var image = ApplyCreate(index, id, kind, parentIndex, size, blockSize, created, ReadName(span[at..]));
                        image.Deleted = deleted;
                        break;
                    }

                case JournalRecordType.SetMapping:
                    {
                        var image = _imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(span)];
                        image.Map.Set(BinaryPrimitives.ReadInt64LittleEndian(span[4..]), BinaryPrimitives.ReadInt32LittleEndian(span[12..]));
                        break;
                    }

                case JournalRecordType.Snapshot:
                    ApplySnapshot(
                        _imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(span)],
                        BinaryPrimitives.ReadInt32LittleEndian(span[4..]),
                        new Guid(span.Slice(8, 16)),
                        BinaryPrimitives.ReadInt64LittleEndian(span[24..]),
                        ReadName(span[32..]));
                    break;
                case JournalRecordType.DeleteImage:
                    ApplyDelete(_imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(span)], freed: null);
                    break;
                case JournalRecordType.Resize:
                    ApplyResize(_imagesByIndex[BinaryPrimitives.ReadInt32LittleEndian(span)], BinaryPrimitives.ReadInt64LittleEndian(span[4..]));
                    break;
                case JournalRecordType.ImageLifecycle:
                case JournalRecordType.ImageAnnotation:
                case JournalRecordType.PoolAnnotation:
                    ReplayAnnotation(type, span);
                    break;
                default:
                    throw new InvalidDataException($"unknown journal record type {type}");
            }
        }
    }

    /// <summary>Recomputes the allocation bitmap from the maps; a cluster mapped twice is corruption.</summary>
    private void RebuildAllocation()
    {
        Array.Clear(_allocated);
        SetBit(_allocated, 0);
        long count = 0;
        foreach (var image in _images.Values)
        {
            foreach (var (_, value) in image.Map.Entries())
            {
                if (value <= 0)
                {
                    continue;
                }

                var physical = value - 1;
                if (physical <= 0 || physical >= _clusterCount)
                {
                    throw new InvalidDataException($"image {image.Id} maps cluster {physical}, outside the pool");
                }

                if (TestBit(_allocated, physical))
                {
                    throw new InvalidDataException($"cluster {physical} is mapped by two images; the pool metadata is corrupted");
                }

                SetBit(_allocated, physical);
                count++;
            }
        }

        _allocatedCount = count;
    }

    /// <summary>
    /// Free clusters of a file pool are punched out so they read as zeros and cost no space; after that a partial
    /// write into a newly allocated cluster needs no zero fill. A device pool makes no such promise.
    /// </summary>
    private void MarkAllFreeZero(bool freshFile)
    {
        if (_isDevice)
        {
            return;
        }

        long runStart = -1;
        for (long c = 1; c <= _clusterCount; c++)
        {
            var free = c < _clusterCount && !TestBit(_allocated, c);
            if (free && runStart < 0)
            {
                runStart = c;
            }
            else if (!free && runStart >= 0)
            {
                if (freshFile || LinuxFile.PunchHole(_data, runStart * _clusterSize, (c - runStart) * _clusterSize) == 0)
                {
                    for (var z = runStart; z < c; z++)
                    {
                        SetBit(_knownZero, z);
                    }
                }

                runStart = -1;
            }
        }
    }

    // ---------------------------------------------------------------- data path

    internal StorageStatus Read(ThinImage image, long offset, Span<byte> destination)
    {
        _topology.EnterReadLock();
        try
        {
            if (image.Removed || _disposed)
            {
                return StorageStatus.Unavailable;
            }

            if (offset < 0 || offset + destination.Length > Volatile.Read(ref image.SizeBytes))
            {
                return StorageStatus.OutOfRange;
            }

            while (!destination.IsEmpty)
            {
                var cluster = offset >> _clusterShift;
                var within = (int)(offset & (_clusterSize - 1));
                var length = Math.Min(destination.Length, _clusterSize - within);
                var physical = Resolve(image, cluster);
                var piece = destination[..length];
                if (physical < 0)
                {
                    piece.Clear();
                }
                else if (!ReadData(physical * (long)_clusterSize + within, piece))
                {
                    return StorageStatus.MediaError;
                }

                destination = destination[length..];
                offset += length;
            }

            return StorageStatus.Success;
        }
        finally
        {
            _topology.ExitReadLock();
        }
    }

    /// <summary>Reads any image, snapshots included (they have no <see cref="ThinVolume"/>); for checks and tests.</summary>
    internal StorageStatus ReadImage(Guid id, long offset, Span<byte> destination)
    {
        ThinImage? image;
        lock (_metaLock)
        {
            _images.TryGetValue(id, out image);
        }

        return image is null ? StorageStatus.Unavailable : Read(image, offset, destination);
    }

    /// <summary>The physical cluster holding a virtual cluster for an image, or -1 for zeros.</summary>
    private long Resolve(ThinImage image, long cluster)
    {
        for (var current = image; current is not null; current = current.Parent)
        {
            if (cluster << _clusterShift >= Volatile.Read(ref current.SizeBytes))
            {
                return -1;
            }

            var value = current.Map.Get(cluster);
            if (value > 0)
            {
                return value - 1;
            }

            if (value == ClusterMap.Zero)
            {
                return -1;
            }
        }

        return -1;
    }

    internal StorageStatus Write(ThinImage image, long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        var status = WriteCore(image, offset, source, zeroes: false);
        if (status == StorageStatus.CapacityExceeded && HasPendingFrees && Flush() == StorageStatus.Success)
        {
            // Space given back by deallocations becomes reusable at the next commit; make it now rather than fail.
            status = WriteCore(image, offset, source, zeroes: false);
        }

        if (status == StorageStatus.CapacityExceeded)
        {
            NoteOutOfSpace(image);
        }

        return status == StorageStatus.Success && forceUnitAccess ? Flush() : status;
    }

    /// <summary>Zeroes a range: whole clusters are unmapped (or masked when a snapshot below has data), edges are written.</summary>
    internal StorageStatus Deallocate(ThinImage image, long offset, long length)
    {
        var status = WriteCore(image, offset, default, zeroes: true, zeroLength: length);
        if (status == StorageStatus.CapacityExceeded && HasPendingFrees && Flush() == StorageStatus.Success)
        {
            status = WriteCore(image, offset, default, zeroes: true, zeroLength: length);
        }

        if (status == StorageStatus.CapacityExceeded)
        {
            NoteOutOfSpace(image);
        }

        return status;
    }

    private bool HasPendingFrees
    {
        get
        {
            lock (_metaLock)
            {
                return _pendingFree.Count > 0;
            }
        }
    }

    private StorageStatus WriteCore(ThinImage image, long offset, ReadOnlySpan<byte> source, bool zeroes, long zeroLength = 0)
    {
        _topology.EnterReadLock();
        try
        {
            if (image.Removed || _disposed)
            {
                return StorageStatus.Unavailable;
            }

            var remaining = zeroes ? zeroLength : source.Length;
            if (offset < 0 || remaining < 0 || offset + remaining > Volatile.Read(ref image.SizeBytes))
            {
                return StorageStatus.OutOfRange;
            }

            while (remaining > 0)
            {
                var cluster = offset >> _clusterShift;
                var within = (int)(offset & (_clusterSize - 1));
                var length = (int)Math.Min(remaining, _clusterSize - within);
                StorageStatus status;
                if (zeroes && length == _clusterSize)
                {
                    status = UnmapCluster(image, cluster);
                }
                else
                {
                    var piece = zeroes ? ReadOnlySpan<byte>.Empty : source[..length];
                    status = WriteCluster(image, cluster, within, length, piece, zeroes);
                    if (!zeroes)
                    {
                        source = source[length..];
                    }
                }

                if (status != StorageStatus.Success)
                {
                    return status;
                }

                remaining -= length;
                offset += length;
            }

            return StorageStatus.Success;
        }
        finally
        {
            _topology.ExitReadLock();
        }
    }

    private StorageStatus WriteCluster(ThinImage image, long cluster, int within, int length, ReadOnlySpan<byte> data, bool zeroes)
    {
        var value = image.Map.Get(cluster);
        if (value > 0)
        {
            // Fast path: the image owns the cluster, overwrite in place.
            return WritePiece(value - 1, within, length, data, zeroes);
        }

        lock (_stripes[(int)((cluster ^ ((long)image.Index << 20)) & (StripeCount - 1))])
        {
            value = image.Map.Get(cluster);
            if (value > 0)
            {
                return WritePiece(value - 1, within, length, data, zeroes);
            }

            var older = value == ClusterMap.Zero ? -1 : ResolveBelow(image, cluster);
            if (zeroes && older < 0)
            {
                // Zeroing part of a cluster that already reads as zeros.
                return StorageStatus.Success;
            }

            var physical = Allocate(out var knownZero);
            if (physical < 0)
            {
                return StorageStatus.CapacityExceeded;
            }

            var status = FillNewCluster(physical, older, knownZero, within, length, data, zeroes);
            if (status != StorageStatus.Success)
            {
                ReleaseUnused(physical);
                return status;
            }

            Publish(image, cluster, (int)physical + 1);
            if (Volatile.Read(ref _outOfSpace) != 0)
            {
                NoteSpaceAvailable();
            }

            return StorageStatus.Success;
        }
    }

    /// <summary>What a cluster reads as below an image (through its parent chain), or -1 for zeros.</summary>
    private long ResolveBelow(ThinImage image, long cluster) => image.Parent is null ? -1 : Resolve(image.Parent, cluster);

    /// <summary>
    /// Writes a new cluster whole: the older content (from a snapshot below) or zeros around the new piece, so the
    /// cluster never exposes what a previous owner left in it.
    /// </summary>
    private StorageStatus FillNewCluster(long physical, long older, bool knownZero, int within, int length, ReadOnlySpan<byte> data, bool zeroes)
    {
        var clusterOffset = physical * _clusterSize;
        if (older < 0 && knownZero)
        {
            return zeroes ? StorageStatus.Success : WriteData(clusterOffset + within, data);
        }

        if (older < 0 && within == 0 && length == _clusterSize && !zeroes)
        {
            return WriteData(clusterOffset, data);
        }

        var buffer = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            var full = buffer.AsSpan(0, _clusterSize);
            if (older >= 0)
            {
                if (!ReadData(older * _clusterSize, full))
                {
                    return StorageStatus.MediaError;
                }
            }
            else
            {
                full.Clear();
            }

            if (zeroes)
            {
                full.Slice(within, length).Clear();
            }
            else
            {
                data.CopyTo(full[within..]);
            }

            return WriteData(clusterOffset, full);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private StorageStatus WritePiece(long physical, int within, int length, ReadOnlySpan<byte> data, bool zeroes)
    {
        var at = physical * _clusterSize + within;
        if (!zeroes)
        {
            return WriteData(at, data);
        }

        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            buffer.AsSpan(0, length).Clear();
            return WriteData(at, buffer.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private StorageStatus UnmapCluster(ThinImage image, long cluster)
    {
        lock (_stripes[(int)((cluster ^ ((long)image.Index << 20)) & (StripeCount - 1))])
        {
            var value = image.Map.Get(cluster);
            var target = ResolveBelow(image, cluster) >= 0 ? ClusterMap.Zero : ClusterMap.Unmapped;
            if (value == target)
            {
                return StorageStatus.Success;
            }

            Publish(image, cluster, target);
            return StorageStatus.Success;
        }
    }

    /// <summary>Records a mapping change; a replaced cluster is freed once the change is durable.</summary>
    private void Publish(ThinImage image, long cluster, int value)
    {
        Span<byte> payload = stackalloc byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(payload, image.Index);
        BinaryPrimitives.WriteInt64LittleEndian(payload[4..], cluster);
        BinaryPrimitives.WriteInt32LittleEndian(payload[12..], value);
        lock (_metaLock)
        {
            var previous = image.Map.Set(cluster, value);
            _journal.Append(JournalRecordType.SetMapping, payload);
            if (previous > 0)
            {
                _pendingFree.Add(previous - 1);
            }
        }
    }

    private long Allocate(out bool knownZero)
    {
        lock (_allocLock)
        {
            knownZero = false;
            if (_allocatedCount >= _clusterCount - 1)
            {
                return -1;
            }

            for (long scanned = 0; scanned < _clusterCount; scanned++)
            {
                var candidate = _allocationCursor;
                _allocationCursor = candidate + 1 >= _clusterCount ? 1 : candidate + 1;
                if (!TestBit(_allocated, candidate))
                {
                    SetBit(_allocated, candidate);
                    knownZero = TestBit(_knownZero, candidate);
                    ClearBit(_knownZero, candidate);
                    _allocatedCount++;
                    return candidate;
                }
            }

            return -1;
        }
    }

    /// <summary>A cluster allocated but never published (the write failed) goes straight back; nothing refers to it.</summary>
    private void ReleaseUnused(long physical)
    {
        lock (_allocLock)
        {
            ClearBit(_allocated, physical);
            _allocatedCount--;
        }
    }

    private bool ReadData(long offset, Span<byte> destination)
    {
        try
        {
            var done = 0;
            while (done < destination.Length)
            {
                var n = RandomAccess.Read(_data, destination[done..], offset + done);
                if (n == 0)
                {
                    destination[done..].Clear();
                    break;
                }

                done += n;
            }

            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private StorageStatus WriteData(long offset, ReadOnlySpan<byte> source)
    {
        try
        {
            RandomAccess.Write(_data, source, offset);
            return StorageStatus.Success;
        }
        catch (IOException ex) when ((ex.HResult & 0xFFFF) is LinuxFile.Enospc or LinuxFile.Edquot)
        {
            return StorageStatus.CapacityExceeded;
        }
        catch (IOException)
        {
            return StorageStatus.MediaError;
        }
    }

    // ---------------------------------------------------------------- durability

    /// <summary>Makes every completed write and every metadata change durable (host Flush, FUA, API calls).</summary>
    public StorageStatus Flush()
    {
        try
        {
            Commit();
            return StorageStatus.Success;
        }
        catch (IOException)
        {
            return StorageStatus.MediaError;
        }
        catch (ObjectDisposedException)
        {
            return StorageStatus.Unavailable;
        }
    }

    /// <summary>Data sync, then journal records; then clusters those records freed become reusable.</summary>
    public void Commit()
    {
        lock (_commitLock)
        {
            if (_disposed)
            {
                throw new ObjectDisposedException(nameof(ThinPool));
            }

            byte[] records;
            int[] freed;
            lock (_metaLock)
            {
                records = _journal.TakePending();
                freed = _pendingFree.ToArray();
                _pendingFree.Clear();
            }

            SyncData();
            _journal.WriteDurably(records);
            ReleaseFreed(freed);
            if (_journal.Length > Math.Max(_options.CompactThresholdBytes, 2 * _lengthAfterCompaction))
            {
                ReleaseFreed(Compact());
                _lengthAfterCompaction = _journal.Length;
            }
        }
    }

    private long _lengthAfterCompaction;

    private void SyncData()
    {
        var error = LinuxFile.DataSync(_data);
        if (error != 0)
        {
            throw new IOException($"{_options.DataPath}: fdatasync failed with errno {error}");
        }
    }

    private void ReleaseFreed(int[] freed)
    {
        if (freed.Length == 0)
        {
            return;
        }

        // A barrier: I/O holds the topology lock shared while it uses a cluster number it looked up, so once the
        // exclusive lock is granted no I/O still holds one of these clusters, and reusing them cannot let a late read
        // or write of the old owner touch a new owner's data.
        _topology.EnterWriteLock();
        _topology.ExitWriteLock();
        Array.Sort(freed);

        var zeroed = new bool[freed.Length];
        if (!_isDevice)
        {
            // One hole per run of adjacent clusters: deleting a large volume is a few calls, not one per cluster.
            for (var start = 0; start < freed.Length;)
            {
                var end = start + 1;
                while (end < freed.Length && freed[end] == freed[end - 1] + 1)
                {
                    end++;
                }

                var punched = LinuxFile.PunchHole(_data, (long)freed[start] * _clusterSize, (long)(end - start) * _clusterSize) == 0;
                for (var i = start; i < end; i++)
                {
                    zeroed[i] = punched;
                }

                start = end;
            }
        }

        lock (_allocLock)
        {
            for (var i = 0; i < freed.Length; i++)
            {
                ClearBit(_allocated, freed[i]);
                if (zeroed[i])
                {
                    SetBit(_knownZero, freed[i]);
                }

                _allocatedCount--;
            }
        }

        if (Volatile.Read(ref _outOfSpace) != 0)
        {
            NoteSpaceAvailable();
        }
    }

    /// <summary>Rewrites the journal as the current state; runs under the commit lock with no change in between.</summary>
    /// <returns>The clusters freed by changes folded into the compacted journal, released by the caller outside the lock.</returns>
    private int[] Compact()
    {
        int[] freed;
        lock (_metaLock)
        {
            // Changes since the last commit are in the state written below, so their data must be durable first.
            SyncData();
            _journal.TakePending();
            freed = _pendingFree.ToArray();
            _pendingFree.Clear();
            _journal.Rewrite(compact =>
            {
                Span<byte> header = stackalloc byte[28];
                PoolId.TryWriteBytes(header);
                BinaryPrimitives.WriteInt32LittleEndian(header[16..], _clusterSize);
                BinaryPrimitives.WriteInt64LittleEndian(header[20..], _clusterCount);
                compact.Append(JournalRecordType.PoolHeader, header);
                if (_annotation.Length > 0)
                {
                    AnnotatePool(compact, _annotation);
                }

                var ordered = new List<ThinImage>();
                foreach (var root in _images.Values.Where(i => i.Parent is null).OrderBy(i => i.Index))
                {
                    var queue = new Queue<ThinImage>([root]);
                    while (queue.Count > 0)
                    {
                        var image = queue.Dequeue();
                        ordered.Add(image);
                        foreach (var child in image.Children)
                        {
                            queue.Enqueue(child);
                        }
                    }
                }

                Span<byte> mapping = stackalloc byte[16];
                foreach (var image in ordered)
                {
                    compact.Append(JournalRecordType.ImageState, EncodeImage(image, image.Parent?.Index ?? -1, includeDeleted: true));
                    Annotate(compact, image, image.State, image.Annotation);
                    foreach (var (cluster, value) in image.Map.Entries())
                    {
                        BinaryPrimitives.WriteInt32LittleEndian(mapping, image.Index);
                        BinaryPrimitives.WriteInt64LittleEndian(mapping[4..], cluster);
                        BinaryPrimitives.WriteInt32LittleEndian(mapping[12..], value);
                        compact.Append(JournalRecordType.SetMapping, mapping);
                    }
                }
            });
        }

        return freed;
    }

    private void BackgroundCommit()
    {
        try
        {
            bool pending;
            lock (_metaLock)
            {
                pending = _journal.HasPending || _pendingFree.Count > 0;
            }

            if (pending && !_disposed)
            {
                Commit();
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The next host Flush reports the error; a background commit has nobody to tell.
        }
    }

    // ---------------------------------------------------------------- checks

    /// <summary>
    /// Verifies that no cluster is mapped twice or mapped while free, and returns allocated-but-unreferenced
    /// clusters (leaks) to the free space.
    /// </summary>
    public ThinPoolCheckReport Check()
    {
        _topology.EnterWriteLock();
        try
        {
            lock (_metaLock)
            {
                lock (_allocLock)
                {
                    var errors = new List<string>();
                    var referenced = new ulong[_allocated.Length];
                    long referencedCount = 0;
                    foreach (var image in _images.Values)
                    {
                        foreach (var (cluster, value) in image.Map.Entries())
                        {
                            if (value <= 0)
                            {
                                continue;
                            }

                            var physical = value - 1;
                            if (TestBit(referenced, physical))
                            {
                                errors.Add($"cluster {physical} is mapped twice (image {image.Id}, virtual cluster {cluster})");
                            }

                            if (!TestBit(_allocated, physical))
                            {
                                errors.Add($"cluster {physical} is mapped by image {image.Id} but marked free");
                            }

                            SetBit(referenced, physical);
                            referencedCount++;
                        }
                    }

                    foreach (var pending in _pendingFree)
                    {
                        SetBit(referenced, pending);
                    }

                    long leaked = 0;
                    for (long c = 1; c < _clusterCount; c++)
                    {
                        if (TestBit(_allocated, c) && !TestBit(referenced, c))
                        {
                            ClearBit(_allocated, c);
                            _allocatedCount--;
                            leaked++;
                        }
                    }

                    return new ThinPoolCheckReport(referencedCount, _allocatedCount, leaked, errors);
                }
            }
        }
        finally
        {
            _topology.ExitWriteLock();
        }
    }

    private static bool TestBit(ulong[] bits, long index) => (bits[index >> 6] & (1UL << (int)(index & 63))) != 0;

    private static void SetBit(ulong[] bits, long index) => bits[index >> 6] |= 1UL << (int)(index & 63);

    private static void ClearBit(ulong[] bits, long index) => bits[index >> 6] &= ~(1UL << (int)(index & 63));

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _commitTimer.Dispose();
        try
        {
            Commit();
        }
        catch (IOException)
        {
            // Closing anyway; what was not durable is lost as in a crash.
        }

        _disposed = true;
        _journal.Dispose();
        _data.Dispose();
    }
}
