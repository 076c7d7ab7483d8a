using System.Net;
using CsiNvme.Protocol.Logs;
using CsiNvme.Storage;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// One storage node's export of a replicated volume, as the cluster lays it out (docs/cluster.md, "Exports"): the
/// project's NVMe/TCP target on 127.0.0.1 with the volume's subsystem (same NQN, namespace 1, NGUID and UUID on every
/// node), controller ids from the node's own range, the node's own ANA group, and the other nodes' listeners in its
/// discovery log. The nodes of a test share one in-memory volume, so whichever path the host writes through, every
/// path reads the same data: replication itself is not what these tests are about.
/// </summary>
internal sealed class ReplicaTarget : IAsyncDisposable
{
    private readonly NvmeTarget _target;

    private ReplicaTarget(NvmeTarget target, Subsystem subsystem, int ordinal)
    {
        _target = target;
        Subsystem = subsystem;
        Ordinal = ordinal;
        Port = target.LocalEndpoints[0].Port;
    }

    public Subsystem Subsystem { get; }

    public int Ordinal { get; }

    public int Port { get; }

    /// <summary>Listener id in the discovery logs: each node's range of 16.</summary>
    public ushort PortId => PortIdOf(Ordinal);

    /// <summary>
    /// Starts node <paramref name="ordinal"/> (0, 1, 2) exporting <paramref name="volume"/> as <paramref name="nqn"/>;
    /// <paramref name="port"/> 0 picks a free port, a port of a stopped node starts it again where it was.
    /// </summary>
    public static ReplicaTarget Start(int ordinal, string nqn, Guid volumeId, IBlockVolume volume, AnaState state, int port = 0)
    {
        var options = new NvmeTargetOptions
        {
            ControllerIdBase = (ushort)(ordinal * 4096 + 1),
            ControllerIdCount = 4096,
            PortIdBase = PortIdOf(ordinal),
        };
        options.Listen.Add(new IPEndPoint(IPAddress.Loopback, port));
        var target = new NvmeTarget(options, NullLoggerFactory.Instance);
        try
        {
            var subsystem = target.AddSubsystem(new Subsystem(nqn, $"csinvme-node{ordinal}", allowAnyHost: true) { AnaGroupId = (uint)ordinal + 1 });
            subsystem.AddNamespace(new TargetNamespace(1, volume, volumeId));
            subsystem.SetAnaState(state);
            target.Start();
            return new ReplicaTarget(target, subsystem, ordinal);
        }
        catch
        {
            target.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>Lists the other nodes' listeners in this node's discovery log, at <paramref name="address"/> (as the host reaches them).</summary>
    public void SetPeers(IPAddress address, params ReplicaTarget[] peers)
    {
        if (Subsystem.SetPeerPorts(peers.Select(p => new PeerPort(new IPEndPoint(address, p.Port), p.PortId))))
        {
            _target.NotifyDiscoveryChanged();
        }
    }

    /// <summary>The replica moved off this node: it exports the subsystem no more (its controllers are torn down).</summary>
    public void RemoveExport() => _target.RemoveSubsystem(Subsystem.Nqn);

    public ValueTask DisposeAsync() => _target.DisposeAsync();

    private static ushort PortIdOf(int ordinal) => (ushort)(ordinal * 16 + 1);
}
