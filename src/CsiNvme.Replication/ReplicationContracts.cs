namespace CsiNvme.Replication;

/// <summary>
/// Whether this node may still act as the volume's primary: true while its cluster lease is valid (conservatively: it
/// turns false before another node could be promoted). A primary completes no write once it is false.
/// </summary>
public interface ILeaseGuard
{
    bool IsValid { get; }
}

/// <summary>Where the primary records replica state changes; the cluster metadata in etcd in a cluster.</summary>
public interface IReplicaStateSink
{
    /// <summary>
    /// Records that the in-sync replica on <paramref name="node"/> missed a write: durable when the task completes. The
    /// writes that skipped the replica complete only after it, so no acknowledged write is missing from a replica the
    /// metadata still calls in sync.
    /// </summary>
    Task MarkOutOfSyncAsync(string node, string reason, CancellationToken cancellationToken);
}

/// <summary>
/// Thrown by an <see cref="IReplicaStateSink"/> when this node is no longer the volume's primary at its epoch: final,
/// the change that waited for the record fails at once with a path status.
/// </summary>
public sealed class NotPrimaryException(string message) : Exception(message);

/// <summary>How a replica takes part in the volume's writes.</summary>
public enum ReplicaMode
{
    /// <summary>In sync: every change waits for it, and a failure is recorded before the change completes.</summary>
    InSync,
    /// <summary>Being rebuilt: it receives every change, but a failure only ends the rebuild.</summary>
    Rebuilding,
    /// <summary>Out of sync, no connection: changes only mark its dirty regions.</summary>
    OutOfSync,
}

/// <summary>
/// Told how long each host change took on the replicas: from sending it to every in-sync replica until the last one
/// acknowledged it (the latency replication adds to a write, on top of the primary's own copy). Called on the
/// replication receive path for every write, so it must not block or allocate.
/// </summary>
public interface IReplicationObserver
{
    /// <param name="flush">True for a Flush, false for a change (Write, Write Zeroes, Deallocate).</param>
    /// <param name="elapsedTimestamp">Elapsed time in <see cref="System.Diagnostics.Stopwatch"/> ticks.</param>
    void Replicated(bool flush, long elapsedTimestamp);
}

/// <summary>Tunables of a replicated volume.</summary>
public sealed class ReplicationOptions
{
    /// <summary>
    /// How long a change that skipped a failed in-sync replica may wait for the out-of-sync record (etcd unreachable)
    /// before it fails with a path status; the host then retries it.
    /// </summary>
    public TimeSpan RecordTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Region size of dirty maps and rebuild copies.</summary>
    public int RegionSize { get; set; } = RegionMap.DefaultRegionSize;
}

/// <summary>What a replicated volume reports about each replica, for the management API and metrics.</summary>
public sealed record ReplicaStatus(string Node, ReplicaMode Mode, long DirtyRegions, long RegionCount, long WritesReplicated, long WritesFailed);
