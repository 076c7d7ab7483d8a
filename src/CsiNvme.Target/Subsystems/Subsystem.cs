using System.Collections.Concurrent;

namespace CsiNvme.Target.Subsystems;

/// <summary>
/// An NVM subsystem exported by the target: one NQN, its namespaces, and who may connect.
/// An empty allowed list denies every host unless the subsystem was opened to any host on purpose.
/// </summary>
public sealed class Subsystem
{
    private readonly object _gate = new();
    private readonly SortedDictionary<uint, TargetNamespace> _namespaces = new();
    private readonly HashSet<string> _allowedHosts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ushort, ISubsystemController> _controllers = new();
    private TargetNamespace[] _namespaceSnapshot = [];
    private int _nextControllerId;

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

    public bool IsHostAllowed(string hostNqn)
    {
        lock (_gate)
        {
            return AllowAnyHost || _allowedHosts.Contains(hostNqn);
        }
    }

    public void AllowHost(string hostNqn)
    {
        lock (_gate)
        {
            _allowedHosts.Add(hostNqn);
        }
    }

    /// <summary>Removes a host from the allowed list and tears down its controllers.</summary>
    public void DenyHost(string hostNqn)
    {
        lock (_gate)
        {
            _allowedHosts.Remove(hostNqn);
        }

        DisconnectUnauthorizedHosts();
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

    internal ushort RegisterController(ISubsystemController controller)
    {
        // CNTLID 0xFFF0..0xFFFF are reserved (NVMe base 2.0, 5.27.1.1), 0 is avoided so a zero never looks valid.
        for (var attempt = 0; attempt < 0xFFEF; attempt++)
        {
            var id = (ushort)(Interlocked.Increment(ref _nextControllerId) % 0xFFEF + 1);
            if (_controllers.TryAdd(id, controller))
            {
                return id;
            }
        }

        throw new InvalidOperationException("no free controller id");
    }

    internal void UnregisterController(ushort controllerId) => _controllers.TryRemove(controllerId, out _);

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

    void NotifyNamespaceChanged(uint namespaceId);

    void Shutdown(string reason);
}
