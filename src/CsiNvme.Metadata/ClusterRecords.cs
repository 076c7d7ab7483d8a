namespace CsiNvme.Metadata;

/// <summary>How current one replica of a volume is.</summary>
public enum ReplicaState
{
    /// <summary>Holds every write the primary completed; the primary replicates to it before completing a write.</summary>
    InSync,

    /// <summary>
    /// Missed writes: the primary marked it before completing the first write that skipped it. It serves nothing and
    /// needs a rebuild.
    /// </summary>
    OutOfSync,

    /// <summary>Being brought back (delta or full rebuild); it receives new writes but is not in sync until the rebuild is verified.</summary>
    Rebuilding,
}

/// <summary>The one spelling of replica states, in etcd, the management API, metrics and messages.</summary>
public static class ReplicaStateNames
{
    public static string Name(this ReplicaState state) => state switch
    {
        ReplicaState.InSync => "in-sync",
        ReplicaState.OutOfSync => "out-of-sync",
        ReplicaState.Rebuilding => "rebuilding",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "unknown replica state"),
    };

    public static bool TryParse(string text, out ReplicaState state)
    {
        foreach (var candidate in Enum.GetValues<ReplicaState>())
        {
            if (candidate.Name() == text)
            {
                state = candidate;
                return true;
            }
        }

        state = default;
        return false;
    }
}

/// <summary>One copy of a volume's data.</summary>
/// <param name="Node">The node holding the copy.</param>
/// <param name="Pool">The storage pool on that node.</param>
/// <param name="State">How current the copy is.</param>
/// <param name="InSyncEpoch">The volume epoch at which this replica was last known in sync.</param>
public sealed record ReplicaRecord(string Node, string Pool, ReplicaState State, long InSyncEpoch);

/// <summary>What the operator wants of a node, kept across restarts (it is not tied to the node's lease).</summary>
public enum NodeAdminState
{
    /// <summary>The node takes primaries and replicas.</summary>
    Active,

    /// <summary>Primaries and then replicas are moved off the node, and no new ones are placed on it.</summary>
    Draining,
}

/// <summary>A storage pool as the node reports it in its live record.</summary>
public sealed record NodePoolRecord(string Name, long CapacityBytes, long FreeBytes);

/// <summary>
/// What a running storage node publishes about itself under its lease: it disappears when the node stops or loses
/// its lease.
/// </summary>
/// <param name="Name">The node's name, unique in the cluster.</param>
/// <param name="Ordinal">The node's ordinal (<see cref="IClusterStore.ReserveOrdinalAsync"/>).</param>
/// <param name="NvmeListeners">NVMe/TCP listeners the other storage nodes connect to (replication), and hosts too unless
/// <see cref="HostNvmeListeners"/> names others, as "address:port".</param>
/// <param name="ManagementAddress">The management API's address, as "address:port".</param>
/// <param name="Pools">The node's storage pools with their space.</param>
/// <param name="StartedAt">When this incarnation of the node process started.</param>
/// <param name="Version">The software version the node runs.</param>
public sealed record NodeRecord(
    string Name,
    int Ordinal,
    IReadOnlyList<string> NvmeListeners,
    string ManagementAddress,
    IReadOnlyList<NodePoolRecord> Pools,
    DateTimeOffset StartedAt,
    string Version)
{
    /// <summary>
    /// The same listeners as hosts reach them, when that is another address (NAT in front of the node, or a front-end
    /// network for hosts apart from the one the nodes replicate over); empty: <see cref="NvmeListeners"/>.
    /// </summary>
    public IReadOnlyList<string> HostNvmeListeners { get; init; } = [];

    /// <summary>What hosts are told to connect to: discovery logs, a volume's listen addresses.</summary>
    public IReadOnlyList<string> HostFacingListeners => HostNvmeListeners.Count > 0 ? HostNvmeListeners : NvmeListeners;

    // Lists compare by content, so two reads of the same record are equal.
    public bool Equals(NodeRecord? other) =>
        other is not null
        && Name == other.Name
        && Ordinal == other.Ordinal
        && NvmeListeners.SequenceEqual(other.NvmeListeners)
        && HostNvmeListeners.SequenceEqual(other.HostNvmeListeners)
        && ManagementAddress == other.ManagementAddress
        && Pools.SequenceEqual(other.Pools)
        && StartedAt == other.StartedAt
        && Version == other.Version;

    public override int GetHashCode() => HashCode.Combine(Name, Ordinal, ManagementAddress, StartedAt);
}

/// <summary>A node known to the cluster (it reserved an ordinal), live or not.</summary>
/// <param name="Live">The node's live record while its lease holds; null when it is down.</param>
/// <param name="Name">The node's name.</param>
/// <param name="Ordinal">Its ordinal, fixed for the node's life.</param>
/// <param name="AdminState">What the operator set (persistent).</param>
/// <param name="IsLive">True when the node's lease holds its live record.</param>
public sealed record NodeStatus(NodeRecord? Live, string Name, int Ordinal, NodeAdminState AdminState, bool IsLive);

/// <summary>The cluster's records read at one store revision, from which a watch can start without missing a change.</summary>
/// <param name="Revision">The store revision the lists were read at; pass it to <see cref="IClusterStore.WatchAsync"/>.</param>
public sealed record ClusterState(
    long Revision,
    IReadOnlyList<NodeStatus> Nodes,
    IReadOnlyList<VolumeRecord> Volumes,
    IReadOnlyList<SnapshotRecord> Snapshots);

/// <summary>Limits of the cluster's records, defined once.</summary>
public static class ClusterLimits
{
    /// <summary>
    /// Ordinals run from 0 to MaxNodes - 1. The NVMe layer derives disjoint controller-ID ranges and ANA group ids
    /// from them, so their number is bounded.
    /// </summary>
    public const int MaxNodes = 256;

    /// <summary>Node names are used in etcd keys and NVMe-visible strings: letters, digits, '-', '_' and '.', at most this long.</summary>
    public const int MaxNodeNameLength = 63;

    public static bool IsValidNodeName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxNodeNameLength && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    /// <summary>Throws unless <paramref name="name"/> is a valid node name.</summary>
    public static void ValidateNodeName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!IsValidNodeName(name))
        {
            throw new ArgumentException(
                $"node name '{name}' is invalid: use at most {MaxNodeNameLength} ASCII letters, digits, '-', '_' or '.'", nameof(name));
        }
    }
}
