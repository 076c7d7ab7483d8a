using Microsoft.Extensions.Logging;

namespace CsiNvme.Metadata.Etcd;

internal static partial class EtcdLog
{
    [LoggerMessage(EventId = 1401, Level = LogLevel.Warning, Message = "etcd keep-alive stream of node {Node} (lease {LeaseId:x}) failed, reconnecting: {Reason}")]
    public static partial void KeepAliveStreamFailed(ILogger logger, string node, long leaseId, string reason);

    [LoggerMessage(EventId = 1402, Level = LogLevel.Warning, Message = "Node {Node} lost its etcd lease {LeaseId:x}: {Reason}")]
    public static partial void LeaseLost(ILogger logger, string node, long leaseId, string reason);

    [LoggerMessage(EventId = 1403, Level = LogLevel.Error, Message = "A callback on the loss of node {Node}'s lease failed")]
    public static partial void LostCallbackFailed(ILogger logger, string node, Exception error);

    [LoggerMessage(EventId = 1404, Level = LogLevel.Information, Message = "Node {Node} is still live under lease {LeaseId:x} of an earlier process ({RemainingSeconds} s left): waiting for it to expire before joining")]
    public static partial void WaitingForEarlierLease(ILogger logger, string node, long leaseId, long remainingSeconds);

    [LoggerMessage(EventId = 1405, Level = LogLevel.Warning, Message = "etcd watch interrupted after revision {Revision}, resuming: {Reason}")]
    public static partial void WatchInterrupted(ILogger logger, long revision, string reason);

    [LoggerMessage(EventId = 1406, Level = LogLevel.Warning, Message = "Revoking lease {LeaseId:x} of node {Node} failed (it expires by itself): {Reason}")]
    public static partial void RevokeFailed(ILogger logger, string node, long leaseId, string reason);
}
