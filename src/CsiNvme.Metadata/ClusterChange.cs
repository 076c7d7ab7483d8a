namespace CsiNvme.Metadata;

/// <summary>
/// One change of the cluster's records, as <see cref="IClusterStore.WatchAsync"/> reports it, in store order.
/// Several changes written in one transaction share a revision.
/// </summary>
/// <param name="Revision">The store revision of the change.</param>
public abstract record ClusterChange(long Revision);

/// <summary>A node joined: its live record appeared under a new lease.</summary>
public sealed record NodeUp(long Revision, NodeRecord Node) : ClusterChange(Revision);

/// <summary>A live node rewrote its record (free space, listeners).</summary>
public sealed record NodeChanged(long Revision, NodeRecord Node) : ClusterChange(Revision);

/// <summary>A node's live record went away: its lease expired or was revoked (a clean leave).</summary>
/// <param name="Last">The record the node had last published, when the store still had it.</param>
public sealed record NodeDown(long Revision, string Name, NodeRecord? Last) : ClusterChange(Revision);

/// <summary>A node became known to the cluster (it reserved its ordinal) or its admin state changed.</summary>
public sealed record NodeAdminChanged(long Revision, string Name, int Ordinal, NodeAdminState AdminState) : ClusterChange(Revision);

/// <summary>A volume record was created or replaced; <see cref="VolumeRecord.Revision"/> equals the change's revision.</summary>
public sealed record VolumePut(long Revision, VolumeRecord Volume) : ClusterChange(Revision);

public sealed record VolumeDeleted(long Revision, string Name) : ClusterChange(Revision);

public sealed record SnapshotPut(long Revision, SnapshotRecord Snapshot) : ClusterChange(Revision);

public sealed record SnapshotDeleted(long Revision, string Name) : ClusterChange(Revision);

/// <summary>
/// The changes after the requested revision are no longer available (the store compacted its history): the watcher
/// must read the whole state again (<see cref="IClusterStore.GetStateAsync"/>) and watch from its revision. The watch
/// ends after this change.
/// </summary>
/// <param name="Revision">The oldest revision the store still has.</param>
public sealed record ResyncRequired(long Revision) : ClusterChange(Revision);
