using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>The cluster's log messages: membership, roles, failover, drains, rebuilds (events as the issue asks: one line each).</summary>
internal static partial class ClusterLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Node {Node} (ordinal {Ordinal}) joined cluster {ClusterId} with a {TtlSeconds} s lease")]
    public static partial void Joined(ILogger logger, string node, int ordinal, string clusterId, double ttlSeconds);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "The cluster change feed failed, resuming: {Error}")]
    public static partial void WatchFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Node {Node} is up")]
    public static partial void NodeUp(ILogger logger, string node);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Node {Node} is down (its lease expired or it left)")]
    public static partial void NodeDown(ILogger logger, string node);

    [LoggerMessage(EventId = 104, Level = LogLevel.Error, Message = "A cluster check failed")]
    public static partial void CheckFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 105, Level = LogLevel.Error, Message = "Node {Node} lost its lease ({Reason}): it serves no primary until it has joined again")]
    public static partial void LeaseLost(ILogger logger, string node, string reason);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "Joining the cluster again failed, retrying: {Error}")]
    public static partial void RejoinFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 107, Level = LogLevel.Error, Message = "Volume {Volume}: reconciling this node's replica failed")]
    public static partial void ReconcileFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(EventId = 108, Level = LogLevel.Warning, Message = "Volume {Volume}: this node's copy is missing from pool {Pool} ({Error}); starting empty, out of sync")]
    public static partial void ReplicaMissing(ILogger logger, string volume, string pool, string error);

    [LoggerMessage(EventId = 109, Level = LogLevel.Information, Message = "Volume {Volume} (id {Id}): replica opened in pool {Pool}, recorded {State}")]
    public static partial void ReplicaOpened(ILogger logger, string volume, Guid id, string pool, string state);

    [LoggerMessage(EventId = 110, Level = LogLevel.Warning, Message = "Volume {Volume}: not taking the primary role: {Reason}")]
    public static partial void PromotionAbandoned(ILogger logger, string volume, string reason);

    [LoggerMessage(EventId = 111, Level = LogLevel.Information, Message = "Volume {Volume}: this node is primary at epoch {Epoch}, replicating to [{Replicas}]; its path is optimized")]
    public static partial void BecamePrimary(ILogger logger, string volume, long epoch, string replicas);

    [LoggerMessage(EventId = 112, Level = LogLevel.Warning, Message = "Volume {Volume}: reading what {Node} changed since its last flush failed: {Error}")]
    public static partial void ResyncQueryFailed(ILogger logger, string volume, string node, string error);

    [LoggerMessage(EventId = 113, Level = LogLevel.Information, Message = "Volume {Volume}: {Regions} regions changed since the last flush copied to {Replicas} replicas before serving")]
    public static partial void PromotionResynced(ILogger logger, string volume, long regions, int replicas);

    [LoggerMessage(EventId = 114, Level = LogLevel.Warning, Message = "Volume {Volume}: replication link to {Node} failed: {Error}")]
    public static partial void LinkFailed(ILogger logger, string volume, string node, string error);

    [LoggerMessage(EventId = 115, Level = LogLevel.Warning, Message = "Volume {Volume}: changes in flight took longer than 30 s to finish while stepping down")]
    public static partial void DemoteSlow(ILogger logger, string volume);

    [LoggerMessage(EventId = 116, Level = LogLevel.Information, Message = "Volume {Volume}: this node is no longer primary ({Reason}); its path is inaccessible")]
    public static partial void Demoted(ILogger logger, string volume, string reason);

    [LoggerMessage(EventId = 117, Level = LogLevel.Information, Message = "Volume {Volume} (id {Id}): replica removed from this node ({Reason})")]
    public static partial void ReplicaRemoved(ILogger logger, string volume, Guid id, string reason);

    [LoggerMessage(EventId = 118, Level = LogLevel.Warning, Message = "Volume {Volume}: this node's replica recorded out of sync: {Reason}")]
    public static partial void OwnReplicaOutOfSync(ILogger logger, string volume, string reason);

    [LoggerMessage(EventId = 119, Level = LogLevel.Warning, Message = "Volume {Volume}: promoted this node to primary at epoch {Epoch}; old primary {OldPrimary} was down for {DownMs:F0} ms")]
    public static partial void Promoted(ILogger logger, string volume, long epoch, string oldPrimary, double downMs);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning, Message = "Volume {Volume}: this node drains but no in-sync replica on an active node can take the primary role")]
    public static partial void HandoverBlocked(ILogger logger, string volume);

    [LoggerMessage(EventId = 131, Level = LogLevel.Information, Message = "Volume {Volume}: handover to {Target} waits for hosts {Hosts} to connect to it (at most {WaitS:F0} s more)")]
    public static partial void HandoverWaitsForHosts(ILogger logger, string volume, string target, string hosts, double waitS);

    [LoggerMessage(EventId = 132, Level = LogLevel.Warning, Message = "Volume {Volume}: handing over to {Target} though hosts {Hosts} have no path to it yet: they wait for their node plugin to connect one")]
    public static partial void HandoverWithoutHostPaths(ILogger logger, string volume, string target, string hosts);

    [LoggerMessage(EventId = 133, Level = LogLevel.Information, Message = "Volume {Volume}: replica on {Node} removed: the volume keeps {Count} (its replica count was lowered)")]
    public static partial void ReplicaBeyondCountRemoved(ILogger logger, string volume, string node, int count);

    [LoggerMessage(EventId = 121, Level = LogLevel.Information, Message = "Volume {Volume}: primary role handed over to {Target} at epoch {Epoch} (drain)")]
    public static partial void HandedOver(ILogger logger, string volume, string target, long epoch);

    [LoggerMessage(EventId = 122, Level = LogLevel.Information, Message = "Volume {Volume}: replica on draining node {Node} removed, its replacement is in sync")]
    public static partial void ReplicaMovedOff(ILogger logger, string volume, string node);

    [LoggerMessage(EventId = 123, Level = LogLevel.Warning, Message = "Volume {Volume}: the replica on draining node(s) {Nodes} stays: no active node without a replica has room")]
    public static partial void MoveBlocked(ILogger logger, string volume, string nodes);

    [LoggerMessage(EventId = 124, Level = LogLevel.Warning, Message = "Volume {Volume}: preparing a replica on {Node} failed: {Error}")]
    public static partial void MoveFailed(ILogger logger, string volume, string node, string error);

    [LoggerMessage(EventId = 125, Level = LogLevel.Information, Message = "Volume {Volume}: replica added on {Node} in pool {Pool} ({Why}); it is rebuilt next")]
    public static partial void ReplicaAdded(ILogger logger, string volume, string node, string pool, string why);

    [LoggerMessage(EventId = 126, Level = LogLevel.Warning, Message = "Volume {Volume}: rebuild of the replica on {Node} failed, retrying: {Error}")]
    public static partial void RebuildFailed(ILogger logger, string volume, string node, string error);

    [LoggerMessage(EventId = 127, Level = LogLevel.Information, Message = "Volume {Volume}: replica on {Node} in sync again: {Regions} regions, {Bytes} bytes copied and verified in {Seconds:F1} s")]
    public static partial void ReplicaInSync(ILogger logger, string volume, string node, long regions, long bytes, double seconds);

    [LoggerMessage(EventId = 128, Level = LogLevel.Information, Message = "Volume {Volume}: {Node}'s copy compared by checksums: {Differing} of {Regions} regions differ")]
    public static partial void ChecksumCompared(ILogger logger, string volume, string node, long regions, long differing);

    [LoggerMessage(EventId = 129, Level = LogLevel.Information, Message = "Volume {Volume} (id {Id}): copy prepared in pool {Pool}, pending until recorded")]
    public static partial void ReplicaPrepared(ILogger logger, string volume, Guid id, string pool);

    [LoggerMessage(EventId = 130, Level = LogLevel.Warning, Message = "Snapshot {Snapshot}: the replica on {Node} could not take it ({Error}); the snapshot lists the nodes that have it")]
    public static partial void SnapshotReplicaFailed(ILogger logger, string snapshot, string node, string error);
}
