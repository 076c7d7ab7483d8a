using Microsoft.Extensions.Logging;

namespace CsiNvme.Volumes;

/// <summary>Log messages of the volume domain: volumes, snapshots, pools. Event ids are the ones the server used before.</summary>
public static partial class VolumeLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Volume {Name} created: id {Id}, {SizeBytes} bytes ({RequestedBytes} requested), block size {BlockSize}, subsystem {Nqn}")]
    public static partial void VolumeCreated(ILogger logger, string name, Guid id, long sizeBytes, long requestedBytes, int blockSize, string nqn);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Volume {Name} deleted (id {Id})")]
    public static partial void VolumeDeleted(ILogger logger, string name, Guid id);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Volume {Name} resized from {OldSizeBytes} to {NewSizeBytes} bytes")]
    public static partial void VolumeResized(ILogger logger, string name, long oldSizeBytes, long newSizeBytes);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Volume {Name}: host {HostNqn} allowed")]
    public static partial void HostAllowed(ILogger logger, string name, string hostNqn);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Volume {Name}: host {HostNqn} denied")]
    public static partial void HostDenied(ILogger logger, string name, string hostNqn);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Volume {Name}: allow any host = {AllowAnyHost}")]
    public static partial void AllowAnyHostChanged(ILogger logger, string name, bool allowAnyHost);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "Volume {Name} loaded: id {Id}, {SizeBytes} bytes, subsystem {Nqn}")]
    public static partial void VolumeLoaded(ILogger logger, string name, Guid id, long sizeBytes, string nqn);

    [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "Volume {Name}: backing store is {ActualBytes} bytes but metadata says {RecordedBytes}; a resize was interrupted, keeping {ActualBytes} bytes")]
    public static partial void VolumeSizeReconciled(ILogger logger, string name, long actualBytes, long recordedBytes);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "Cleaning up after a failed {Operation} of volume {Name} failed")]
    public static partial void CleanupFailed(ILogger logger, Exception exception, string operation, string name);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "Volume {Name}: flush at shutdown returned {Status}")]
    public static partial void FlushAtShutdownFailed(ILogger logger, string name, string status);

    [LoggerMessage(EventId = 13, Level = LogLevel.Information, Message = "Volume {Name} cloned from {SourceKind} {Source} in pool {Pool}")]
    public static partial void VolumeCloned(ILogger logger, string name, string sourceKind, string source, string pool);

    [LoggerMessage(EventId = 14, Level = LogLevel.Information, Message = "Snapshot {Name} (id {Id}) taken of volume {Volume}: {SizeBytes} bytes, pool {Pool}")]
    public static partial void SnapshotCreated(ILogger logger, string name, Guid id, string volume, long sizeBytes, string pool);

    [LoggerMessage(EventId = 15, Level = LogLevel.Information, Message = "Snapshot {Name} deleted (id {Id})")]
    public static partial void SnapshotDeleted(ILogger logger, string name, Guid id);

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "Pool {Pool}: {Kind} {Name} (id {Id}) was left {State} by an interrupted {Operation} and has no metadata record; reclaimed")]
    public static partial void OrphanImageReclaimed(ILogger logger, string pool, string kind, string name, Guid id, string state, string operation);

    [LoggerMessage(EventId = 18, Level = LogLevel.Error, Message = "Pool {Pool}: {Kind} {Name} (id {Id}, {SizeBytes} bytes, created {CreatedAt:u}) has no record in metadata store {Store}; left in place")]
    public static partial void UnknownPoolImage(ILogger logger, string pool, string kind, string name, Guid id, long sizeBytes, DateTimeOffset createdAt, string store);

    [LoggerMessage(EventId = 19, Level = LogLevel.Warning, Message = "Pool {Pool}: {Kind} {Name} (id {Id}) was left {State} by an interrupted operation but has its metadata record; kept")]
    public static partial void InterruptedImageKept(ILogger logger, string pool, string kind, string name, Guid id, string state);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "Pool {Pool} open: {Path}, pool id {PoolId}, {CapacityBytes} bytes, {UsedBytes} used, {ClusterSize}-byte clusters, {ReserveBytes} bytes reserve for snapshots")]
    public static partial void PoolOpened(ILogger logger, string pool, string path, Guid poolId, long capacityBytes, long usedBytes, int clusterSize, long reserveBytes);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "Recovered {Kind} {Name} from pool {Pool} into metadata store {Store}: id {Id}, {SizeBytes} bytes, block size {BlockSize}, created {CreatedAt:u}{Access}, labels {Labels}{Source}")]
    public static partial void RecordRecovered(ILogger logger, string kind, string name, string pool, string store, Guid id, long sizeBytes, int blockSize, DateTimeOffset createdAt, string access, string labels, string source);

    [LoggerMessage(EventId = 25, Level = LogLevel.Warning, Message = "Pool {Pool}: {Kind} {Name} (id {Id}) {Problem}; its record is rebuilt from what the pool knows: no allowed hosts, no labels{Missing}. Allow its hosts again")]
    public static partial void RecoveredWithoutDetails(ILogger logger, string pool, string kind, string name, Guid id, string problem, string missing);

    [LoggerMessage(EventId = 26, Level = LogLevel.Warning, Message = "Pool {Pool} (id {PoolId}): {Problem}; adopted for metadata store {Store} (store id {StoreId}) by --recover-metadata")]
    public static partial void PoolAdopted(ILogger logger, string pool, Guid poolId, string problem, string store, Guid storeId);

    [LoggerMessage(EventId = 27, Level = LogLevel.Warning, Message = "Pool {Pool}: recording that {Kind} {Name} (id {Id}) is {State} failed; the next start settles it")]
    public static partial void ImageStateNotRecorded(ILogger logger, Exception exception, string pool, string kind, string name, Guid id, string state);

    [LoggerMessage(EventId = 28, Level = LogLevel.Information, Message = "Metadata recovery: {Recovered} records rebuilt from the pools into {Store}, {Existing} existing records kept")]
    public static partial void RecoveryFinished(ILogger logger, int recovered, string store, int existing);

    [LoggerMessage(EventId = 40, Level = LogLevel.Warning, Message = "Pool {Pool} is full: a write to volume {Volume} needed a new cluster and none of its {CapacityBytes} bytes is free. Writes that need new space fail with Capacity Exceeded until space is freed (delete snapshots or volumes, or trim)")]
    public static partial void PoolFull(ILogger logger, string pool, string volume, long capacityBytes);

    [LoggerMessage(EventId = 41, Level = LogLevel.Warning, Message = "Pool {Pool}: a write to volume {Volume} failed because the file system holding {Path} is out of space, although the pool still has {FreeBytes} bytes free. Writes that need new space fail with Capacity Exceeded until the file system has room")]
    public static partial void PoolFileSystemFull(ILogger logger, string pool, string volume, string path, long freeBytes);

    [LoggerMessage(EventId = 42, Level = LogLevel.Information, Message = "Pool {Pool} has space again: {FreeBytes} of {CapacityBytes} bytes free")]
    public static partial void PoolSpaceAvailable(ILogger logger, string pool, long freeBytes, long capacityBytes);

    [LoggerMessage(EventId = 51, Level = LogLevel.Information, Message = "Volume {Volume}: replica count changed from {Old} to {New}")]
    public static partial void ReplicaCountChanged(ILogger logger, string volume, int old, int @new);

    [LoggerMessage(EventId = 43, Level = LogLevel.Warning, Message = "Applying {Operation} on node {Node} failed: {Error}; that node applies the record when it is back")]
    public static partial void OperationRefusedOn(ILogger logger, string operation, string node, string error);

    [LoggerMessage(EventId = 44, Level = LogLevel.Information, Message = "Volume {Name}: host {HostNqn} must authenticate with DH-HMAC-CHAP ({Hash}, DH group {DhGroup}, bidirectional {Bidirectional})")]
    public static partial void HostSecretSet(ILogger logger, string name, string hostNqn, string hash, string dhGroup, bool bidirectional);

    [LoggerMessage(EventId = 45, Level = LogLevel.Information, Message = "Volume {Name}: host {HostNqn} no longer needs to authenticate")]
    public static partial void HostSecretCleared(ILogger logger, string name, string hostNqn);

    [LoggerMessage(EventId = 46, Level = LogLevel.Warning, Message = "Volume {Name}: the DH-HMAC-CHAP secret of host {HostNqn} cannot be used here ({Problem}); the host is refused until it can")]
    public static partial void HostSecretUnavailable(ILogger logger, string name, string hostNqn, string problem);

    [LoggerMessage(EventId = 47, Level = LogLevel.Information, Message = "Volume {Name}: host {HostNqn} has a TLS PSK")]
    public static partial void TlsPskSet(ILogger logger, string name, string hostNqn);

    [LoggerMessage(EventId = 48, Level = LogLevel.Information, Message = "Volume {Name}: TLS PSK of host {HostNqn} removed")]
    public static partial void TlsPskCleared(ILogger logger, string name, string hostNqn);

    [LoggerMessage(EventId = 49, Level = LogLevel.Warning, Message = "Volume {Name}: the TLS PSK of host {HostNqn} cannot be used here ({Problem}); its TLS handshakes fail until it can")]
    public static partial void TlsPskUnavailable(ILogger logger, string name, string hostNqn, string problem);

    [LoggerMessage(EventId = 50, Level = LogLevel.Information, Message = "Volume {Name}: TLS required {TlsRequired}")]
    public static partial void TlsRequiredSet(ILogger logger, string name, bool tlsRequired);
}
