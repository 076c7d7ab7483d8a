using Microsoft.Extensions.Logging;

namespace CsiNvme.Server;

internal static partial class ServerLog
{
    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "Volume operation {Operation} refused: {Error} {Message}")]
    public static partial void OperationRefused(ILogger logger, string operation, string error, string message);

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "Volume operation {Operation} on {Name} failed")]
    public static partial void OperationFailed(ILogger logger, Exception exception, string operation, string name);

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

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "DH-HMAC-CHAP secrets are sealed with key {KeyId} from {Path}")]
    public static partial void SecretKeyLoaded(ILogger logger, string keyId, string path);
}
