namespace CsiNvme.Metadata;

/// <summary>
/// The metadata of a cluster of storage nodes: the volume and snapshot records of <see cref="IMetadataStore"/>, plus
/// node membership under leases, persistent node ordinals and admin states, compare-and-swap on volume records and a
/// change feed. The store's leases and transactions are the only consensus; nothing here elects anything by itself.
/// </summary>
public interface IClusterStore : IMetadataStore
{
    /// <summary>The cluster's id, created at the first connection to an empty store and the same for every node after.</summary>
    string ClusterId { get; }

    /// <summary>
    /// The node's ordinal: the smallest number not taken when the node first asked, then the same for that node name
    /// forever (across restarts and reconnections) and never shared. The NVMe layer derives controller-ID ranges and
    /// ANA group ids from it.
    /// </summary>
    /// <exception cref="InvalidOperationException">All <see cref="ClusterLimits.MaxNodes"/> ordinals are taken.</exception>
    Task<int> ReserveOrdinalAsync(string nodeName, CancellationToken cancellationToken = default);

    /// <summary>
    /// Makes the node live: grants a lease of at least <paramref name="leaseTtl"/> (the store may round it up to its
    /// minimum), puts the node's live record under it and keeps the lease alive in the background until the
    /// membership is disposed (a clean leave revokes the lease) or lost. If the node's record is still held by an
    /// earlier incarnation's lease (a restart within the lease time), this waits for that lease to expire, so the
    /// cluster always sees the node go down between two incarnations; it fails when the record stays held longer
    /// than that lease's time to live (another process runs with this node name).
    /// </summary>
    /// <exception cref="InvalidOperationException">The node has no ordinal, <paramref name="self"/> carries another, or another live process holds the name.</exception>
    Task<INodeMembership> JoinAsync(NodeRecord self, TimeSpan leaseTtl, CancellationToken cancellationToken = default);

    /// <summary>Every known node (one that reserved an ordinal), ordered by name, with its live record when its lease holds.</summary>
    Task<IReadOnlyList<NodeStatus>> ListNodesAsync(CancellationToken cancellationToken = default);

    /// <summary>Sets a known node's admin state; it persists across restarts (it is not under the node's lease).</summary>
    /// <exception cref="InvalidOperationException">The node is not known.</exception>
    Task SetNodeAdminStateAsync(string nodeName, NodeAdminState state, CancellationToken cancellationToken = default);

    /// <summary>
    /// Replaces the volume record if the stored one is still at <paramref name="expectedRevision"/> (the
    /// <see cref="VolumeRecord.Revision"/> it was read with); returns false when it changed since or is gone. The
    /// fields fixed at creation (id, creation time, pool, labels) keep their stored values, as in
    /// <see cref="IMetadataStore.UpdateVolumeAsync"/>.
    /// </summary>
    Task<bool> TryUpdateVolumeAsync(VolumeRecord updated, long expectedRevision, CancellationToken cancellationToken = default);

    /// <summary>Deletes the volume record if it is still at <paramref name="expectedRevision"/>; returns false otherwise.</summary>
    Task<bool> TryDeleteVolumeAsync(string name, long expectedRevision, CancellationToken cancellationToken = default);

    /// <summary>Nodes, volumes and snapshots read at one revision: list, then <see cref="WatchAsync"/> from its revision.</summary>
    Task<ClusterState> GetStateAsync(CancellationToken cancellationToken = default);

    /// <summary>The store's current revision.</summary>
    Task<long> GetRevisionAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Every change after <paramref name="afterRevision"/>, in order, each exactly once, until cancelled. Connection
    /// errors are retried in the background and the feed resumes after the last revision it delivered; when the store
    /// no longer has the history to resume from, <see cref="ResyncRequired"/> is the last item.
    /// </summary>
    IAsyncEnumerable<ClusterChange> WatchAsync(long afterRevision, CancellationToken cancellationToken = default);
}

/// <summary>
/// A node's membership in the cluster: its lease, kept alive in the background. A node acting on its lease (a
/// primary completing writes) checks <see cref="IsValid"/> right before each such act: it turns false before the
/// store itself can let the lease expire, so a node that lost its lease stops before another is promoted.
/// </summary>
public interface INodeMembership : IAsyncDisposable
{
    long LeaseId { get; }

    /// <summary>The TTL the store granted (it may round the requested one up).</summary>
    TimeSpan GrantedTtl { get; }

    /// <summary>
    /// True while this process may act as the lease's holder: the lease was not found lost and
    /// <see cref="ValidUntilTimestamp"/> has not passed.
    /// </summary>
    bool IsValid { get; }

    /// <summary>
    /// A <see cref="System.Diagnostics.Stopwatch"/> timestamp until which the lease certainly holds: the time at which
    /// the last keep-alive the store answered was sent, plus the TTL it granted in that answer, minus
    /// <see cref="SafetyMargin"/>. The store renews no earlier than the request was sent, so its own expiry is later.
    /// </summary>
    long ValidUntilTimestamp { get; }

    /// <summary>Subtracted from every deadline: covers the time between a check of <see cref="IsValid"/> and the act it guards.</summary>
    TimeSpan SafetyMargin { get; }

    /// <summary>
    /// Cancelled once the lease is known lost (the store answered that it expired, or the deadline passed without an
    /// answered keep-alive) or the membership was disposed. A lost membership is never renewed: the owner decides
    /// whether to join again with a new <see cref="IClusterStore.JoinAsync"/>.
    /// </summary>
    CancellationToken Lost { get; }

    /// <summary>Why the lease was lost, or null while it holds.</summary>
    string? LostReason { get; }

    /// <summary>Rewrites the node's live record under the same lease (free space, listeners).</summary>
    /// <exception cref="InvalidOperationException">The lease is lost.</exception>
    Task UpdateAsync(NodeRecord self, CancellationToken cancellationToken = default);
}
