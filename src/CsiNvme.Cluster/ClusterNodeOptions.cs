using CsiNvme.Replication;

namespace CsiNvme.Cluster;

/// <summary>How a storage node takes part in its cluster.</summary>
public sealed class ClusterNodeOptions
{
    /// <summary>Each node's controller ids: ordinal × this + 1, this − 1 of them (255 nodes fit under CNTLID 0xFFEF).</summary>
    public const int ControllerIdsPerNode = 256;

    /// <summary>Each node's discovery port ids: ordinal × this + 1 onward.</summary>
    public const int PortIdsPerNode = 16;

    public required string NodeName { get; init; }

    /// <summary>Lease of the node's membership; a primary whose lease ran out stops completing writes, and an in-sync replica is promoted.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long after its primary is gone the in-sync replica next in line waits per rank before it promotes itself.</summary>
    public TimeSpan PromotionStagger { get; init; } = TimeSpan.FromSeconds(1.5);

    public ReplicationOptions Replication { get; init; } = new();

    public RebuildOptions Rebuild { get; init; } = new();

    /// <summary>Period of the checks that do not wait for a change (promotions, rebuilds to retry, free space to publish).</summary>
    public TimeSpan CheckPeriod { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a draining primary holds its handover until the hosts connected to it are connected to the replica
    /// taking the role too (a host's CSI node plugin connects a new replica's path within its path keeper period). Past
    /// it the handover goes on, and a host still without that path waits for it on the old, inaccessible one.
    /// </summary>
    public TimeSpan HandoverHostWait { get; init; } = DefaultHandoverHostWait;

    /// <summary>The default of <see cref="HandoverHostWait"/>: four of the node plugin's default path keeper periods.</summary>
    public static readonly TimeSpan DefaultHandoverHostWait = TimeSpan.FromSeconds(60);

    /// <summary>Deadline of one call to another node.</summary>
    public TimeSpan AgentCallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Queue depth of a replication link (commands in flight to one replica of one volume).</summary>
    public int LinkQueueDepth { get; init; } = 256;

    /// <summary>
    /// How long a replication link's receive loop polls before it sleeps: the node's NVMe poll time (--nvme-poll-us),
    /// so one knob says whether this node's NVMe/TCP threads may spin waiting for the next PDU.
    /// </summary>
    public TimeSpan LinkPollTime { get; init; } = TimeSpan.FromMicroseconds(50);

    public static ushort ControllerIdBaseOf(int ordinal) => (ushort)(ordinal * ControllerIdsPerNode + 1);

    public static ushort PortIdBaseOf(int ordinal) => (ushort)(ordinal * PortIdsPerNode + 1);

    /// <summary>The node's ANA group in every subsystem it exports.</summary>
    public static uint AnaGroupOf(int ordinal) => (uint)ordinal + 1;
}
