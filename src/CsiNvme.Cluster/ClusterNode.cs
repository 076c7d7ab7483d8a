using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Api;
using CsiNvme.Host;
using CsiNvme.Metadata;
using CsiNvme.Target;
using CsiNvme.Volumes.Local;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>
/// This storage node's part in the cluster: its membership (a lease in etcd, rejoined when lost), a view of the
/// cluster's records kept current by the store's change feed, and the reconciler that makes this node's storage,
/// exports, ANA states, primaries, promotions, drains and rebuilds match the records. Everything it decides is written
/// with compare-and-swap on the volume records; etcd's leases and transactions are the only consensus.
/// </summary>
public sealed partial class ClusterNode : IAsyncDisposable
{
    private readonly IClusterStore _store;
    private readonly LocalVolumes _local;
    private readonly ClusterNodeOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly LeaseGuard _lease = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, ClusterVolume> _volumes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, NodeStatus> _nodes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, VolumeRecord> _records = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SnapshotRecord> _snapshots = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly SemaphoreSlim _openGate = new(1, 1);
    private readonly List<Task> _loops = new();
    private NodeRecord _self = null!;
    private INodeMembership? _membership;
    private long _revision;
    private int _disposed;

    public ClusterNode(IClusterStore store, LocalVolumes local, int ordinal, ClusterNodeOptions options, NodeAgentClients agents, ILoggerFactory loggerFactory)
    {
        _store = store;
        _local = local;
        Ordinal = ordinal;
        _options = options;
        Agents = agents;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<ClusterNode>();
        HostNqn = VolumeNaming.StorageNodeHostNqn(store.ClusterId, options.NodeName);
    }

    public string Name => _options.NodeName;

    public int Ordinal { get; }

    public IClusterStore Store => _store;

    public NodeAgentClients Agents { get; }

    public LocalVolumes Local => _local;

    /// <summary>The host NQN this node uses for replication links (and that replica subsystems allow).</summary>
    public string HostNqn { get; }

    /// <summary>This node's membership lease as the replicated volumes check it.</summary>
    public LeaseGuard Lease => _lease;

    public bool IsJoined => _membership is { IsValid: true };

    /// <summary>The nodes of the cluster as last seen.</summary>
    public IReadOnlyList<NodeStatus> Nodes => _nodes.Values.OrderBy(n => n.Name, StringComparer.Ordinal).ToArray();

    /// <summary>The volume records as last seen.</summary>
    public IReadOnlyCollection<VolumeRecord> Records => _records.Values.ToArray();

    public IReadOnlyCollection<SnapshotRecord> Snapshots => _snapshots.Values.ToArray();

    public VolumeRecord? RecordOf(string name) => _records.TryGetValue(name, out var record) ? record : null;

    public NodeStatus? NodeOf(string name) => _nodes.TryGetValue(name, out var node) ? node : null;

    public bool IsLive(string node) => node == Name ? IsJoined : _nodes.TryGetValue(node, out var status) && status.IsLive;

    /// <summary>Checks this node's pools against the cluster before the node starts (<see cref="ClusterPoolCheck"/>).</summary>
    public static Task CheckPoolsAsync(IClusterStore store, Volumes.Backends.IVolumeBackend backend, string node, ILogger logger, CancellationToken cancellationToken) =>
        ClusterPoolCheck.RunAsync(store, backend, node, logger, cancellationToken);

    /// <summary>
    /// Joins the cluster and starts reconciling: <paramref name="self"/> is what this node publishes (its listeners and
    /// management address must already be bound). Returns once every volume of this node is exported.
    /// </summary>
    public async Task StartAsync(NodeRecord self, CancellationToken cancellationToken)
    {
        _self = self;
        await JoinAsync(cancellationToken).ConfigureAwait(false);
        await LoadStateAsync(cancellationToken).ConfigureAwait(false);
        _loops.Add(Task.Run(() => WatchLoopAsync(_stopping.Token), CancellationToken.None));
        _loops.Add(Task.Run(() => CheckLoopAsync(_stopping.Token), CancellationToken.None));
    }

    private async Task JoinAsync(CancellationToken cancellationToken)
    {
        var membership = await _store.JoinAsync(_self with { Pools = PoolsNow() }, _options.LeaseTtl, cancellationToken).ConfigureAwait(false);
        _membership = membership;
        _lease.Membership = membership;
        ClusterLog.Joined(_logger, Name, Ordinal, _store.ClusterId, membership.GrantedTtl.TotalSeconds);
        _ = membership.Lost.Register(() => _wake.Release());
    }

    private IReadOnlyList<NodePoolRecord> PoolsNow() =>
        _local.Backend.GetPools().Select(p => new NodePoolRecord(p.Name, p.CapacityBytes, Math.Max(0, p.FreeBytes - p.ReserveBytes))).ToArray();

    /// <summary>Reads the whole state and reconciles every volume that concerns this node.</summary>
    private async Task LoadStateAsync(CancellationToken cancellationToken)
    {
        var state = await _store.GetStateAsync(cancellationToken).ConfigureAwait(false);
        _nodes.Clear();
        foreach (var node in state.Nodes)
        {
            _nodes[node.Name] = node;
        }

        var names = state.Volumes.Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var stale in _records.Keys.Where(n => !names.Contains(n)).ToArray())
        {
            _records.TryRemove(stale, out _);
        }

        foreach (var volume in state.Volumes)
        {
            _records[volume.Name] = volume;
        }

        _snapshots.Clear();
        foreach (var snapshot in state.Snapshots)
        {
            _snapshots[snapshot.Name] = snapshot;
        }

        Volatile.Write(ref _revision, state.Revision);
        foreach (var name in _records.Keys.Concat(_volumes.Keys).Distinct(StringComparer.Ordinal).ToArray())
        {
            await ReconcileAsync(name, cancellationToken).ConfigureAwait(false);
        }

        await CommitSnapshotImagesAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task WatchLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await foreach (var change in _store.WatchAsync(Volatile.Read(ref _revision), cancellationToken).ConfigureAwait(false))
                {
                    if (change is ResyncRequired)
                    {
                        await LoadStateAsync(cancellationToken).ConfigureAwait(false);
                        break;
                    }

                    Volatile.Write(ref _revision, change.Revision);
                    await ApplyAsync(change, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                ClusterLog.WatchFailed(_logger, e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task ApplyAsync(ClusterChange change, CancellationToken cancellationToken)
    {
        switch (change)
        {
            case NodeUp up:
                _nodes[up.Node.Name] = StatusOf(up.Node.Name) with { Live = up.Node, IsLive = true, Ordinal = up.Node.Ordinal };
                Agents.Forget(up.Node.ManagementAddress);
                ClusterLog.NodeUp(_logger, up.Node.Name);
                await ReconcileVolumesOfAsync(up.Node.Name, cancellationToken).ConfigureAwait(false);
                break;
            case NodeChanged changed:
                _nodes[changed.Node.Name] = StatusOf(changed.Node.Name) with { Live = changed.Node, IsLive = true };
                break;
            case NodeDown down:
                _nodes[down.Name] = StatusOf(down.Name) with { Live = null, IsLive = false };
                if (down.Name != Name)
                {
                    ClusterLog.NodeDown(_logger, down.Name);
                }

                // Promotions wait for the check loop's stagger; the rest (peer ports) is reconciled now.
                await ReconcileVolumesOfAsync(down.Name, cancellationToken).ConfigureAwait(false);
                _wake.Release();
                break;
            case NodeAdminChanged admin:
                _nodes[admin.Name] = StatusOf(admin.Name) with { AdminState = admin.AdminState, Ordinal = admin.Ordinal };
                _wake.Release();
                break;
            case VolumePut put:
                _records[put.Volume.Name] = put.Volume;
                await ReconcileAsync(put.Volume.Name, cancellationToken).ConfigureAwait(false);
                break;
            case VolumeDeleted deleted:
                _records.TryRemove(deleted.Name, out _);
                await ReconcileAsync(deleted.Name, cancellationToken).ConfigureAwait(false);
                break;
            case SnapshotPut snapshot:
                _snapshots[snapshot.Snapshot.Name] = snapshot.Snapshot;
                await CommitSnapshotImagesAsync(cancellationToken).ConfigureAwait(false);
                break;
            case SnapshotDeleted snapshotDeleted:
                if (_snapshots.TryRemove(snapshotDeleted.Name, out var gone))
                {
                    DeleteSnapshotImage(gone);
                }

                break;
        }
    }

    private NodeStatus StatusOf(string name) =>
        _nodes.TryGetValue(name, out var status) ? status : new NodeStatus(null, name, -1, NodeAdminState.Active, false);

    private async Task ReconcileVolumesOfAsync(string node, CancellationToken cancellationToken)
    {
        foreach (var record in _records.Values.Where(r => r.Replicas.Any(x => x.Node == node || x.Node == Name)).ToArray())
        {
            await ReconcileAsync(record.Name, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The periodic checks: rejoin after a lost lease, promotions after a primary's loss, handovers while draining,
    /// rebuilds to start or retry, replica moves, the free space this node publishes.
    /// </summary>
    private async Task CheckLoopAsync(CancellationToken cancellationToken)
    {
        var lastPublish = DateTime.MinValue;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(_options.CheckPeriod, cancellationToken).ConfigureAwait(false);
                if (_membership is { } membership && membership.Lost.IsCancellationRequested)
                {
                    await HandleLeaseLostAsync(membership, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                await CheckPromotionsAsync(cancellationToken).ConfigureAwait(false);
                await CheckPrimariesAsync(cancellationToken).ConfigureAwait(false);
                if (DateTime.UtcNow - lastPublish > TimeSpan.FromSeconds(10))
                {
                    lastPublish = DateTime.UtcNow;
                    await PublishSelfAsync(cancellationToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                ClusterLog.CheckFailed(_logger, e);
            }
        }
    }

    private async Task PublishSelfAsync(CancellationToken cancellationToken)
    {
        if (_membership is { IsValid: true } membership)
        {
            await membership.UpdateAsync(_self with { Pools = PoolsNow() }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The lease is gone: every primary here stops (its writes already fail: the lease guard is invalid), and the node
    /// joins again with a new lease and reconciles from the records, where another node may be primary by now.
    /// </summary>
    private async Task HandleLeaseLostAsync(INodeMembership lost, CancellationToken cancellationToken)
    {
        ClusterLog.LeaseLost(_logger, Name, lost.LostReason ?? "unknown");
        foreach (var volume in _volumes.Values)
        {
            await volume.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (volume.Role == VolumeRole.Primary)
                {
                    await DemoteAsync(volume, "lease lost").ConfigureAwait(false);
                }
            }
            finally
            {
                volume.Gate.Release();
            }
        }

        await lost.DisposeAsync().ConfigureAwait(false);
        _membership = null;
        _lease.Membership = null;
        var delay = TimeSpan.FromMilliseconds(200);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await JoinAsync(cancellationToken).ConfigureAwait(false);
                await LoadStateAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                ClusterLog.RejoinFailed(_logger, e.Message);
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
            }
        }
    }

    /// <summary>NVMe/TCP endpoints of a node as it publishes them for the other nodes: where replication connects.</summary>
    internal IReadOnlyList<IPEndPoint> ListenersOf(string node) => Endpoints(node, r => r.NvmeListeners);

    /// <summary>NVMe/TCP endpoints of a node as hosts reach them: discovery logs, a volume's listen addresses.</summary>
    internal IReadOnlyList<IPEndPoint> HostListenersOf(string node) => Endpoints(node, r => r.HostFacingListeners);

    private IPEndPoint[] Endpoints(string node, Func<NodeRecord, IReadOnlyList<string>> listeners)
    {
        var record = node == Name ? _self : NodeOf(node)?.Live;
        return record is null
            ? []
            : listeners(record).Select(l => IPEndPoint.TryParse(l, out var e) ? e : null).OfType<IPEndPoint>().ToArray();
    }

    internal NvmeTcpHostOptions LinkOptions() => new()
    {
        HostNqn = HostNqn,
        HostId = NodeHostId,
        Reconnect = false,
        IoQueueCount = 1,
        IoQueueSize = _options.LinkQueueDepth,
        ReceivePollTime = _options.LinkPollTime,
        KeepAliveTimeout = TimeSpan.FromSeconds(5),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>A stable host id per node (reservations on replica subsystems would key on it).</summary>
    private Guid NodeHostId => new(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(HostNqn)));

    /// <summary>Leaves the cluster: primaries close (the host retries on the next primary), the lease is revoked.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        try
        {
            await Task.WhenAll(_loops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        foreach (var volume in _volumes.Values)
        {
            if (volume.Role == VolumeRole.Primary)
            {
                await DemoteAsync(volume, "node stopping").ConfigureAwait(false);
            }
        }

        if (_membership is { } membership)
        {
            await membership.DisposeAsync().ConfigureAwait(false);
        }

        await Agents.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
