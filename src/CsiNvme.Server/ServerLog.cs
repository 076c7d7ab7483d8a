using Microsoft.Extensions.Logging;

namespace CsiNvme.Server;

internal static partial class ServerLog
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

    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "Volume operation {Operation} refused: {Error} {Message}")]
    public static partial void OperationRefused(ILogger logger, string operation, string error, string message);

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "Volume operation {Operation} on {Name} failed")]
    public static partial void OperationFailed(ILogger logger, Exception exception, string operation, string name);

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

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "Pool {Pool}: {Kind} image {Id} has no metadata record (a crash interrupted its creation or deletion); reclaimed")]
    public static partial void OrphanImageReclaimed(ILogger logger, string kind, Guid id, string pool);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "Pool {Pool} open: {Path}, {CapacityBytes} bytes, {UsedBytes} used, {ClusterSize}-byte clusters")]
    public static partial void PoolOpened(ILogger logger, string pool, string path, long capacityBytes, long usedBytes, int clusterSize);

    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "Storage server started: backend {Backend}, data {DataDirectory}, metadata {MetadataStore}, {VolumeCount} volumes, NVMe/TCP on {NvmeEndpoints}, management on {ManagementEndpoint}, metrics on {MetricsEndpoint}")]
    public static partial void ServerStarted(ILogger logger, string backend, string dataDirectory, string metadataStore, int volumeCount, string nvmeEndpoints, string managementEndpoint, string metricsEndpoint);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Storage server stopping")]
    public static partial void ServerStopping(ILogger logger);

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "Storage server stopped")]
    public static partial void ServerStopped(ILogger logger);

    [LoggerMessage(EventId = 23, Level = LogLevel.Error, Message = "Error during shutdown step {Step}")]
    public static partial void ShutdownStepFailed(ILogger logger, Exception exception, string step);

    [LoggerMessage(EventId = 30, Level = LogLevel.Error, Message = "Unexpected error in gRPC method {Method}")]
    public static partial void UnexpectedRpcError(ILogger logger, Exception exception, string method);
}
