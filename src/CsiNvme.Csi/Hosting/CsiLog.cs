using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Hosting;

internal static partial class CsiLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "CSI driver {Driver} {Version} serving {Mode} on {Endpoint} (node {NodeId}, storage server {Server}, metrics {Metrics}, volumes per node {MaxVolumesPerNode})")]
    public static partial void DriverStarted(ILogger logger, string driver, string version, DriverMode mode, string endpoint, string? nodeId, string? server, string? metrics, string maxVolumesPerNode);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "CSI driver stopped")]
    public static partial void DriverStopped(ILogger logger);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Removed stale socket {Path}")]
    public static partial void StaleSocketRemoved(ILogger logger, string path);

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "{Method} volume={Volume} -> {Code} in {DurationMs:F1} ms")]
    public static partial void CallSucceeded(ILogger logger, string method, string volume, Grpc.Core.StatusCode code, double durationMs);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "{Method} volume={Volume} -> {Code} in {DurationMs:F1} ms: {Detail}")]
    public static partial void CallFailed(ILogger logger, string method, string volume, Grpc.Core.StatusCode code, double durationMs, string detail);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "{Method} volume={Volume} failed unexpectedly after {DurationMs:F1} ms")]
    public static partial void CallCrashed(ILogger logger, Exception exception, string method, string volume, double durationMs);

    [LoggerMessage(EventId = 13, Level = LogLevel.Debug, Message = "{Method} volume={Volume} -> {Code} in {DurationMs:F1} ms: {Detail}")]
    public static partial void CallRefusedQuietly(ILogger logger, string method, string volume, Grpc.Core.StatusCode code, double durationMs, string detail);

    [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "Created volume {Volume} ({SizeBytes} bytes, source {Source}, parameters {Parameters})")]
    public static partial void VolumeCreated(ILogger logger, string volume, long sizeBytes, string source, string parameters);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "Deleted volume {Volume}")]
    public static partial void VolumeDeleted(ILogger logger, string volume);

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "Published volume {Volume} to node {NodeId} ({AccessMode})")]
    public static partial void VolumePublished(ILogger logger, string volume, string nodeId, string accessMode);

    [LoggerMessage(EventId = 23, Level = LogLevel.Information, Message = "Unpublished volume {Volume} from node {NodeId}")]
    public static partial void VolumeUnpublished(ILogger logger, string volume, string nodeId);

    [LoggerMessage(EventId = 24, Level = LogLevel.Information, Message = "Expanded volume {Volume} to {SizeBytes} bytes")]
    public static partial void VolumeExpanded(ILogger logger, string volume, long sizeBytes);

    [LoggerMessage(EventId = 25, Level = LogLevel.Information, Message = "Created snapshot {Snapshot} of volume {Volume}")]
    public static partial void SnapshotCreated(ILogger logger, string snapshot, string volume);

    [LoggerMessage(EventId = 26, Level = LogLevel.Information, Message = "Deleted snapshot {Snapshot}")]
    public static partial void SnapshotDeleted(ILogger logger, string snapshot);

    [LoggerMessage(EventId = 27, Level = LogLevel.Information, Message = "Volume {Volume} requires DH-HMAC-CHAP of node {Node} ({Mode})")]
    public static partial void HostSecretSet(ILogger logger, string volume, string node, string mode);

    [LoggerMessage(EventId = 28, Level = LogLevel.Information, Message = "Volume {Volume} no longer holds DH-HMAC-CHAP secrets of node {Node}")]
    public static partial void HostSecretCleared(ILogger logger, string volume, string node);

    [LoggerMessage(EventId = 29, Level = LogLevel.Information, Message = "Volume {Volume} is to keep {Replicas} replica(s) (ControllerModifyVolume); its primary adds or removes them")]
    public static partial void VolumeReplicasChanged(ILogger logger, string volume, int replicas);

    [LoggerMessage(EventId = 30, Level = LogLevel.Warning, Message = "Probe: storage server {Server} did not answer: {Detail}")]
    public static partial void ProbeFailed(ILogger logger, string server, string detail);
}
