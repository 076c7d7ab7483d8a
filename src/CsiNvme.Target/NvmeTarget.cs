using System.Collections.Concurrent;
using System.Net;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Target;

/// <summary>
/// The NVMe/TCP target: TCP listeners, the discovery subsystem and the exported NVM subsystems.
/// </summary>
public sealed partial class NvmeTarget : IAsyncDisposable
{
    /// <summary>The well-known discovery NQN (NVMe-oF 1.1, 7.1).</summary>
    public const string DiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

    private readonly ConcurrentDictionary<string, Subsystem> _subsystems = new(StringComparer.Ordinal);
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ILogger _connectionLogger;

    public NvmeTarget(NvmeTargetOptions options, ILoggerFactory loggerFactory, ITargetObserver? observer = null)
    {
        Options = options;
        Observer = observer;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<NvmeTarget>();
        _connectionLogger = loggerFactory.CreateLogger<Transport.NvmeTcpConnection>();
    }

    public NvmeTargetOptions Options { get; }

    public ITargetObserver? Observer { get; }

    /// <summary>Bound listener endpoints (with the real port when 0 was asked), valid after <see cref="Start"/>.</summary>
    public IReadOnlyList<IPEndPoint> LocalEndpoints { get; private set; } = [];

    public IReadOnlyCollection<Subsystem> Subsystems => _subsystems.Values.ToArray();

    /// <summary>The open connections, for tests and for waiting on a fenced host's commands.</summary>
    internal IReadOnlyCollection<Transport.NvmeTcpConnection> Connections => _connections.Keys.ToArray();

    /// <summary>Incremented whenever a subsystem is added or removed; reported as the discovery log GENCTR.</summary>
    public ulong DiscoveryGeneration => (ulong)Volatile.Read(ref _discoveryGeneration);

    private long _discoveryGeneration;

    public Subsystem AddSubsystem(Subsystem subsystem)
    {
        if (subsystem.Nqn == DiscoveryNqn || !_subsystems.TryAdd(subsystem.Nqn, subsystem))
        {
            throw new InvalidOperationException($"subsystem {subsystem.Nqn} already exists");
        }

        Interlocked.Increment(ref _discoveryGeneration);
        return subsystem;
    }

    /// <summary>Bumps the discovery log's generation counter after a change that is not a subsystem added or removed (peer listeners).</summary>
    public void NotifyDiscoveryChanged() => Interlocked.Increment(ref _discoveryGeneration);

    public Subsystem? FindSubsystem(string nqn) => _subsystems.TryGetValue(nqn, out var s) ? s : null;

    /// <summary>Removes a subsystem and tears down its controllers.</summary>
    public bool RemoveSubsystem(string nqn)
    {
        if (!_subsystems.TryRemove(nqn, out var subsystem))
        {
            return false;
        }

        Interlocked.Increment(ref _discoveryGeneration);
        subsystem.DisconnectAll();
        return true;
    }
}
