using CsiNvme.Protocol.Tls;
using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Logs;

namespace CsiNvme.Target.Subsystems;

/// <summary>A listener of another storage node that exports the same subsystem, listed in the discovery log.</summary>
public sealed record PeerPort(IPEndPoint Endpoint, ushort PortId);

/// <summary>
/// An NVM subsystem exported by the target: one NQN, its namespaces, and who may connect.
/// An empty allowed list denies every host unless the subsystem was opened to any host on purpose.
/// </summary>
public sealed class Subsystem
{
    private readonly object _gate = new();
    private readonly SortedDictionary<uint, TargetNamespace> _namespaces = new();
    private readonly HashSet<string> _allowedHosts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DhchapCredentials> _credentials = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TlsPsk> _tlsPsks = new(StringComparer.Ordinal);
    private volatile bool _tlsRequired;
    private readonly ConcurrentDictionary<ushort, ISubsystemController> _controllers = new();
    // Queues closed (controllers shut down, or I/O queues closed alone) whose commands may still be running, by host.
    private readonly List<DrainingQueues> _draining = new();
    private TargetNamespace[] _namespaceSnapshot = [];
    private PeerPort[] _peerPorts = [];
    private int _nextControllerId;
    private AnaState _anaState = AnaState.Optimized;
    private NvmeStatus _ioRefusal = NvmeStatus.Success;
    private ulong _anaChangeCount;

    public Subsystem(string nqn, string serialNumber, bool allowAnyHost, IEnumerable<string>? allowedHosts = null)
    {
        Nqn = nqn;
        SerialNumber = serialNumber;
        AllowAnyHost = allowAnyHost;
        if (allowedHosts is not null)
        {
            foreach (var host in allowedHosts)
            {
                _allowedHosts.Add(host);
            }
        }
    }

    public string Nqn { get; }

    /// <summary>Serial number reported in Identify Controller (20 ASCII characters at most).</summary>
    public string SerialNumber { get; }

    public bool AllowAnyHost { get; private set; }

    /// <summary>Namespaces in ascending NSID order. The array is replaced, never mutated, so readers need no lock.</summary>
    public IReadOnlyList<TargetNamespace> Namespaces => Volatile.Read(ref _namespaceSnapshot);

    public IReadOnlyCollection<string> AllowedHosts
    {
        get
        {
            lock (_gate)
            {
                return _allowedHosts.Order(StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>Host NQNs with a live controller.</summary>
    public IReadOnlyCollection<string> ConnectedHosts =>
        _controllers.Values.Select(c => c.HostNqn).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();

    public int ControllerCount => _controllers.Count;

    /// <summary>
    /// The ANA group of this subsystem's namespaces on this target (NVMe base 2.0, 8.1.3). In a cluster every storage
    /// node exporting the subsystem is a group of its own (its ordinal + 1), so one state per node describes its path.
    /// </summary>
    public uint AnaGroupId { get; init; } = 1;

    /// <summary>The ANA state this target reports for <see cref="AnaGroupId"/>.</summary>
    public AnaState AnaState
    {
        get
        {
            lock (_gate)
            {
                return _anaState;
            }
        }
    }

    /// <summary>Counts the ANA state changes (the group descriptor's and the log's CHGCNT).</summary>
    public ulong AnaChangeCount
    {
        get
        {
            lock (_gate)
            {
                return _anaChangeCount;
            }
        }
    }

    /// <summary>
    /// The status I/O commands get while the ANA state does not allow I/O on this path; success when it does. One field
    /// read per command.
    /// </summary>
    internal NvmeStatus IoRefusal => _ioRefusal;

    /// <summary>
    /// Set on a replica subsystem (the one a volume's primary replicates to): changes are accepted only from controllers
    /// whose replication epoch is current. Null on the subsystems hosts use.
    /// </summary>
    public EpochFence? Fence { get; init; }

    /// <summary>Listeners of the other nodes exporting this subsystem, listed in the discovery log after our own.</summary>
    public IReadOnlyList<PeerPort> PeerPorts => Volatile.Read(ref _peerPorts);

    /// <summary>
    /// Changes the ANA state of this path and tells every controller's host with an ANA change notice, so it re-reads the
    /// ANA log and moves its I/O (NVMe base 2.0, 8.1.3.9). False when the state was already <paramref name="state"/>.
    /// </summary>
    public bool SetAnaState(AnaState state)
    {
        lock (_gate)
        {
            if (_anaState == state)
            {
                return false;
            }

            _anaState = state;
            _anaChangeCount++;
            _ioRefusal = state switch
            {
                AnaState.Optimized or AnaState.NonOptimized => NvmeStatus.Success,
                AnaState.PersistentLoss => NvmeStatus.AsymmetricAccessPersistentLoss,
                AnaState.Change => NvmeStatus.AsymmetricAccessTransition,
                _ => NvmeStatus.AsymmetricAccessInaccessible,
            };
        }

        foreach (var controller in _controllers.Values)
        {
            controller.NotifyAnaChanged();
        }

        return true;
    }

    /// <summary>
    /// Shuts down the controllers whose replication epoch is below <paramref name="epoch"/>: they belong to a primary
    /// that has been replaced. Also called when the node learns of a promotion from the cluster metadata.
    /// </summary>
    public void FenceBelow(long epoch)
    {
        foreach (var controller in _controllers.Values)
        {
            // A controller that has set no epoch yet can change nothing, and may be the new primary's own link
            // between its Connect and its Set Features: only an older epoch that was set is fenced.
            if (controller.ReplicationEpoch != 0 && controller.ReplicationEpoch < epoch)
            {
                controller.Shutdown($"fenced: replication epoch {controller.ReplicationEpoch} is below {epoch}");
            }
        }
    }

    /// <summary>Replaces the peer listeners; true when they changed (the caller then bumps the discovery generation).</summary>
    public bool SetPeerPorts(IEnumerable<PeerPort> ports)
    {
        var next = ports.OrderBy(p => p.PortId).ToArray();
        var current = Volatile.Read(ref _peerPorts);
        if (current.SequenceEqual(next))
        {
            return false;
        }

        Volatile.Write(ref _peerPorts, next);
        return true;
    }

    public bool IsHostAllowed(string hostNqn)
    {
        lock (_gate)
        {
            return AllowAnyHost || _allowedHosts.Contains(hostNqn);
        }
    }

    /// <summary>
    /// Sets what <paramref name="hostNqn"/> must prove with DH-HMAC-CHAP before it is served, or (null) lets it in on its
    /// NQN alone again. Live controllers keep their queues: credentials are checked at Connect and at the host's next
    /// re-authentication (NVMe base 2.0, 8.13: a successful authentication stays valid until the association ends).
    /// </summary>
    public void SetHostCredentials(string hostNqn, DhchapCredentials? credentials)
    {
        lock (_gate)
        {
            if (credentials is null)
            {
                _credentials.Remove(hostNqn);
            }
            else
            {
                _credentials[hostNqn] = credentials;
            }
        }
    }

    /// <summary>The DH-HMAC-CHAP credentials of a host, or null when its NQN alone admits it.</summary>
    public DhchapCredentials? FindHostCredentials(string hostNqn)
    {
        lock (_gate)
        {
            return _credentials.GetValueOrDefault(hostNqn);
        }
    }

    /// <summary>
    /// Whether hosts must connect through the NVMe/TCP TLS secure channel: a plaintext Connect is refused, and the
    /// discovery log says TLS 1.3 is required. Turning it on tears down the plaintext controllers already there.
    /// </summary>
    public bool TlsRequired => _tlsRequired;

    public void SetTlsRequired(bool required)
    {
        _tlsRequired = required;
        if (required)
        {
            foreach (var controller in _controllers.Values)
            {
                if (!controller.IsOverTls)
                {
                    controller.Shutdown("the subsystem now requires TLS");
                }
            }
        }
    }

    /// <summary>
    /// Sets (or with null removes) the configured TLS PSK <paramref name="hostNqn"/> opens its secure channel to this
    /// subsystem with. Established channels keep their keys until they close.
    /// </summary>
    public void SetHostTlsPsk(string hostNqn, TlsPsk? psk)
    {
        lock (_gate)
        {
            if (psk is null)
            {
                _tlsPsks.Remove(hostNqn);
            }
            else
            {
                _tlsPsks[hostNqn] = psk;
            }
        }
    }

    public TlsPsk? FindHostTlsPsk(string hostNqn)
    {
        lock (_gate)
        {
            return _tlsPsks.GetValueOrDefault(hostNqn);
        }
    }

    /// <summary>Hosts with a TLS PSK, for the management API.</summary>
    public IReadOnlyCollection<string> HostsWithTlsPsk
    {
        get
        {
            lock (_gate)
            {
                return _tlsPsks.Keys.Order(StringComparer.Ordinal).ToArray();
            }
        }
    }

    /// <summary>Hosts that must authenticate, for the management API's "authentication: required".</summary>
    public IReadOnlyCollection<string> HostsRequiringAuthentication
    {
        get
        {
            lock (_gate)
            {
                return _credentials.Keys.Order(StringComparer.Ordinal).ToArray();
            }
        }
    }

    public void AllowHost(string hostNqn)
    {
        lock (_gate)
        {
            _allowedHosts.Add(hostNqn);
        }
    }

    /// <summary>
    /// Removes a host from the allowed list and tears down its controllers. The task completes once the host has no
    /// controller here and every command its controllers accepted has completed or been dropped
    /// (<see cref="WhenHostDrained"/>); its Connects are refused from the moment this returns.
    /// </summary>
    public Task DenyHost(string hostNqn)
    {
        lock (_gate)
        {
            _allowedHosts.Remove(hostNqn);
        }

        DisconnectUnauthorizedHosts();
        return WhenHostDrained(hostNqn);
    }

    /// <summary>
    /// Completes once <paramref name="hostNqn"/> has no live controller here and no command that any of its queues on
    /// this subsystem accepted is still running: a write the host sent before its controllers were torn down has landed
    /// or failed by then, and none can land later. A host that is still allowed keeps its controllers, so wait on this
    /// only for a host that lost access (or after its controllers ended).
    /// </summary>
    public Task WhenHostDrained(string hostNqn)
    {
        var waits = new List<Task>();
        foreach (var controller in _controllers.Values)
        {
            if (controller.HostNqn == hostNqn && !IsHostAllowed(hostNqn))
            {
                // Already shutting down (a concurrent deny, a keep-alive timeout): the same drain task.
                waits.Add(controller.Shutdown("host no longer allowed"));
            }
            else if (controller.HostNqn == hostNqn)
            {
                return Task.FromException(new InvalidOperationException($"host {hostNqn} is allowed on {Nqn} and keeps its controllers"));
            }
        }

        lock (_gate)
        {
            foreach (var entry in _draining)
            {
                if (entry.HostNqn == hostNqn)
                {
                    waits.Add(entry.Drained);
                }
            }
        }

        return Task.WhenAll(waits);
    }

    /// <summary><see cref="WhenHostDrained"/> for every host with a controller or draining queues here that is no longer allowed.</summary>
    public Task WhenDeniedHostsDrained()
    {
        var hosts = new HashSet<string>(_controllers.Values.Select(c => c.HostNqn), StringComparer.Ordinal);
        lock (_gate)
        {
            hosts.UnionWith(_draining.Select(d => d.HostNqn));
        }

        return Task.WhenAll(hosts.Where(h => !IsHostAllowed(h)).Select(WhenHostDrained));
    }

    /// <summary>Hosts with closed queues here whose commands are still running, for error messages.</summary>
    public IReadOnlyCollection<string> DrainingHosts
    {
        get
        {
            lock (_gate)
            {
                return _draining.Where(d => !d.Drained.IsCompleted).Select(d => d.HostNqn).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
            }
        }
    }

    public void SetAllowAnyHost(bool allowAnyHost)
    {
        lock (_gate)
        {
            AllowAnyHost = allowAnyHost;
        }

        DisconnectUnauthorizedHosts();
    }

    public TargetNamespace? FindNamespace(uint namespaceId)
    {
        // The array itself, not the IReadOnlyList view: enumerating the interface would allocate on every I/O.
        foreach (var ns in Volatile.Read(ref _namespaceSnapshot))
        {
            if (ns.NamespaceId == namespaceId)
            {
                return ns;
            }
        }

        return null;
    }

    public void AddNamespace(TargetNamespace ns)
    {
        lock (_gate)
        {
            if (!_namespaces.TryAdd(ns.NamespaceId, ns))
            {
                throw new InvalidOperationException($"namespace {ns.NamespaceId} already exists in {Nqn}");
            }

            Volatile.Write(ref _namespaceSnapshot, _namespaces.Values.ToArray());
        }

        NotifyNamespaceChanged(ns.NamespaceId);
    }

    public bool RemoveNamespace(uint namespaceId)
    {
        lock (_gate)
        {
            if (!_namespaces.Remove(namespaceId))
            {
                return false;
            }

            Volatile.Write(ref _namespaceSnapshot, _namespaces.Values.ToArray());
        }

        NotifyNamespaceChanged(namespaceId);
        return true;
    }

    /// <summary>
    /// Tells every connected controller that a namespace's attributes changed (e.g. after a resize),
    /// so hosts re-read Identify Namespace without reconnecting (Namespace Attribute Changed notice).
    /// </summary>
    public void NotifyNamespaceChanged(uint namespaceId)
    {
        foreach (var controller in _controllers.Values)
        {
            controller.NotifyNamespaceChanged(namespaceId);
        }
    }

    /// <summary>Tears down every controller (subsystem removal or server shutdown).</summary>
    public void DisconnectAll()
    {
        foreach (var controller in _controllers.Values)
        {
            controller.Shutdown("subsystem removed");
        }
    }

    /// <summary>
    /// Gives the controller an id from [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>):
    /// the ids of one subsystem must be unique across every node exporting it, so each node has a range of its own.
    /// </summary>
    internal ushort RegisterController(ISubsystemController controller, ushort first, ushort count)
    {
        for (var attempt = 0; attempt < count; attempt++)
        {
            var id = (ushort)(first + (uint)Interlocked.Increment(ref _nextControllerId) % count);
            if (_controllers.TryAdd(id, controller))
            {
                return id;
            }
        }

        return 0;
    }

    /// <summary>
    /// Forgets a controller that shut down; until <paramref name="drained"/> completes its host counts as draining here.
    /// Only the controller registered under the id is removed (a shutdown before registration leaves others alone).
    /// </summary>
    internal void UnregisterController(ushort controllerId, ISubsystemController controller, string hostNqn, Task drained)
    {
        TrackDraining(hostNqn, drained);
        _controllers.TryRemove(new KeyValuePair<ushort, ISubsystemController>(controllerId, controller));
    }

    /// <summary>Records closed queues of <paramref name="hostNqn"/> whose commands may still be running, until they are not.</summary>
    internal void TrackDraining(string hostNqn, Task drained)
    {
        if (drained.IsCompleted)
        {
            return;
        }

        var entry = new DrainingQueues(hostNqn, drained);
        lock (_gate)
        {
            _draining.Add(entry);
        }

        drained.ContinueWith(
            static (_, state) =>
            {
                var (subsystem, done) = ((Subsystem, DrainingQueues))state!;
                lock (subsystem._gate)
                {
                    subsystem._draining.Remove(done);
                }
            },
            (this, entry),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    /// <summary>The live controllers (reservation notifications and preemption reach a host through every one of its controllers).</summary>
    internal ICollection<ISubsystemController> Controllers => _controllers.Values;

    internal ISubsystemController? FindController(ushort controllerId) =>
        _controllers.TryGetValue(controllerId, out var controller) ? controller : null;

    private void DisconnectUnauthorizedHosts()
    {
        foreach (var controller in _controllers.Values)
        {
            if (!IsHostAllowed(controller.HostNqn))
            {
                controller.Shutdown("host no longer allowed");
            }
        }
    }
}

/// <summary>What a subsystem needs from a live controller.</summary>
internal interface ISubsystemController
{
    string HostNqn { get; }

    /// <summary>Whether the controller's queues run over the TLS secure channel.</summary>
    bool IsOverTls { get; }

    void NotifyNamespaceChanged(uint namespaceId);

    void NotifyAnaChanged();

    long ReplicationEpoch { get; }

    /// <summary>Tears the controller down; the task completes once every command its queues accepted has finished.</summary>
    Task Shutdown(string reason);
}

/// <summary>Closed queues of a host whose commands may still be running.</summary>
internal sealed record DrainingQueues(string HostNqn, Task Drained);
