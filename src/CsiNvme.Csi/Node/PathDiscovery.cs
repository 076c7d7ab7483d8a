using System.Globalization;
using System.Net;
using CsiNvme.Host;
using CsiNvme.Protocol.Logs;

namespace CsiNvme.Csi.Node;

/// <summary>A subsystem listener a discovery log lists.</summary>
public sealed record DiscoveredListener(string SubsystemNqn, FabricsTarget Target);

/// <summary>
/// What the discovery controller at <paramref name="Source"/> answered: the NVM subsystem listeners its log lists for
/// this host, or the error that kept it from answering (<paramref name="Listeners"/> null: the listener is unreachable).
/// </summary>
public sealed record DiscoveryAnswer(FabricsTarget Source, IReadOnlyList<DiscoveredListener>? Listeners, string? Error)
{
    public bool Answered => Listeners is not null;

    /// <summary>
    /// The NVMe/TCP NVM subsystem entries of a discovery log page (NVMe-oF 1.1, 5.3). An entry on a loopback address
    /// read from a listener that is not on one names the storage node's own loopback, which this host cannot reach
    /// (a node listening on 127.0.0.1 behind NAT): it is left out.
    /// </summary>
    public static DiscoveryAnswer From(FabricsTarget source, IEnumerable<DiscoveryLogEntry> entries)
    {
        var sourceIsLoopback = IPAddress.TryParse(source.Address, out var sourceAddress) && IPAddress.IsLoopback(sourceAddress);
        var listeners = new List<DiscoveredListener>();
        foreach (var entry in entries)
        {
            if (entry.TransportType != TransportType.Tcp || entry.SubsystemType != DiscoverySubsystemType.NvmSubsystem ||
                !IPAddress.TryParse(entry.TransportAddress.Trim(), out var address) ||
                !int.TryParse(entry.ServiceId.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is <= 0 or > 65535 ||
                (IPAddress.IsLoopback(address) && !sourceIsLoopback))
            {
                continue;
            }

            var listener = new DiscoveredListener(entry.SubsystemNqn, FabricsTarget.From(address, port));
            if (!listeners.Contains(listener))
            {
                listeners.Add(listener);
            }
        }

        return new DiscoveryAnswer(source, listeners, null);
    }
}

/// <summary>
/// Reads discovery logs as this node's host (its host NQN and host id, so the log lists the subsystems this node may
/// connect to) with the project's NVMe/TCP host, to find the listeners of a volume's subsystem on every storage node
/// holding a replica, and to tell which listeners answer at all before the kernel is asked to connect to them.
/// </summary>
internal sealed class PathDiscovery(NodeOptions options)
{
    private readonly NvmeTcpHost _host = new(new NvmeTcpHostOptions
    {
        HostNqn = options.Identity.HostNqn,
        HostId = options.Identity.HostId,
        ConnectTimeout = options.DiscoveryTimeout,
        Reconnect = false,
    });

    public async Task<DiscoveryAnswer> ReadAsync(FabricsTarget target, CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.DiscoveryTimeout * 2);
        try
        {
            // The log read itself takes no token: a listener that accepts and then goes silent is left behind by WaitAsync.
            var page = await _host.DiscoverAsync(target.EndPoint, limit.Token).WaitAsync(limit.Token);
            return DiscoveryAnswer.From(target, page.Entries);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            return new DiscoveryAnswer(target, null, e is OperationCanceledException ? $"no answer within {(options.DiscoveryTimeout * 2).TotalSeconds:F0} s" : e.Message);
        }
    }
}
