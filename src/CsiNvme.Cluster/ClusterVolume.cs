using System.Collections.Concurrent;
using CsiNvme.Api;
using CsiNvme.Metadata;
using CsiNvme.Protocol.Logs;
using CsiNvme.Replication;
using CsiNvme.Storage;
using CsiNvme.Target.Subsystems;
using CsiNvme.Volumes.Local;

namespace CsiNvme.Cluster;

/// <summary>What this node is for a volume.</summary>
public enum VolumeRole
{
    /// <summary>Holds a copy and exports its path inaccessible; takes the primary's replication.</summary>
    Replica,

    /// <summary>Serves hosts (its path optimized) and replicates to the others.</summary>
    Primary,
}

/// <summary>
/// One volume this node holds a replica of: its copy (tracked for a promotion resync), the host subsystem every
/// replica node exports with the same identity (ANA optimized here only while primary), the replica subsystem the
/// primary replicates into (epoch fenced), and while primary the replicated volume with its links and rebuilds.
/// Every change goes through <see cref="Gate"/>, one at a time.
/// </summary>
internal sealed class ClusterVolume
{
    public ClusterVolume(VolumeRecord record, IBlockVolume storage)
    {
        Record = record;
        Storage = storage;
        Tracked = new ReplicaSideVolume(storage);
        Switch = new SwitchableVolume(Tracked);
        Fence = new EpochFence(record.Epoch);
    }

    /// <summary>Serializes reconciling, role changes, snapshots and resizes of this volume on this node.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    public VolumeRecord Record { get; set; }

    /// <summary>The copy in this node's pool.</summary>
    public IBlockVolume Storage { get; }

    /// <summary>The copy with its changes since the last flush tracked: what both subsystems write through.</summary>
    public ReplicaSideVolume Tracked { get; }

    /// <summary>What the host subsystem's namespace serves: the replicated volume while primary, the copy otherwise.</summary>
    public SwitchableVolume Switch { get; }

    public EpochFence Fence { get; }

    /// <summary>The host subsystem (same NQN, namespace, NGUID and UUID on every replica node).</summary>
    public LocalVolume? Host { get; set; }

    /// <summary>The replica subsystem the primary replicates into.</summary>
    public Subsystem? ReplicaSubsystem { get; set; }

    public VolumeRole Role { get; set; } = VolumeRole.Replica;

    /// <summary>The epoch this node serves as primary at; 0 while replica.</summary>
    public long PrimaryEpoch { get; set; }

    /// <summary>While primary: the replicated volume over the copy.</summary>
    public ReplicatedVolume? Replicated { get; set; }

    /// <summary>While primary: records replica states in the volume record, at <see cref="PrimaryEpoch"/>.</summary>
    public ReplicaStateRecorder? Recorder { get; set; }

    /// <summary>While primary: the rebuild running per replica node, with its progress.</summary>
    public ConcurrentDictionary<string, RebuildRun> Rebuilds { get; } = new(StringComparer.Ordinal);

    /// <summary>While primary: when a rebuild of a node may be tried again (after a failure).</summary>
    public ConcurrentDictionary<string, DateTime> RebuildRetryAt { get; } = new(StringComparer.Ordinal);

    /// <summary>Replicas whose dirty map is unknown (this node did not see what they missed): compared by checksums before a rebuild.</summary>
    public ConcurrentDictionary<string, bool> UnknownDirty { get; } = new(StringComparer.Ordinal);

    public string Name => Record.Name;

    public Guid Id => Record.Id;

    public string HostNqn => VolumeNaming.SubsystemNqn(Record.Id);

    public string ReplicaNqn => VolumeNaming.ReplicaSubsystemNqn(Record.Id);

    public AnaState AnaState => Host?.Subsystem.AnaState ?? AnaState.Inaccessible;
}

/// <summary>A rebuild of one replica, as the primary runs it.</summary>
internal sealed class RebuildRun
{
    public Task<RebuildResult>? Task { get; set; }

    public RebuildProgress Progress { get; set; } = new(0, 0, 0, 0);

    public CancellationTokenSource Cancel { get; } = new();
}
