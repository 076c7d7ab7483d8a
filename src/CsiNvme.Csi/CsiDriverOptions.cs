using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi;

/// <summary>Which CSI services this process serves (Identity is always served).</summary>
[Flags]
public enum DriverMode
{
    Controller = 1,
    Node = 2,
    All = Controller | Node,
}

public sealed class CsiDriverOptions
{
    public const string DriverName = "nvme.csinvme.io";
    public const string VendorVersion = "0.1.0";
    public const string DefaultEndpoint = "unix:///csi/csi.sock";

    /// <summary>
    /// Default of <see cref="MaxVolumesPerNode"/>. Every volume is its own NVMe subsystem, so each one attached
    /// costs the node a kernel controller per listener, each with its own I/O queues and keep-alive.
    /// </summary>
    public const int DefaultMaxVolumesPerNode = 256;

    public DriverMode Mode { get; set; } = DriverMode.All;

    /// <summary>"unix:///path/to/socket" (what Kubernetes uses) or "tcp://ADDR:PORT" (port 0 picks a free port).</summary>
    public string Endpoint { get; set; } = DefaultEndpoint;

    /// <summary>Node name (Kubernetes node name); the node service derives its NVMe host NQN and host id from it.</summary>
    public string? NodeId { get; set; }

    /// <summary>Management API of the storage server, "ADDR:PORT" or "HOST:PORT"; required by the controller.</summary>
    public string? Server { get; set; }

    /// <summary>
    /// CA that signed the storage server's management certificate (PEM): the controller then talks mutual TLS to
    /// <see cref="Server"/>, presenting <see cref="ServerTlsCertificate"/> (role csi-controller: CN=csi-controller[:NAME]).
    /// </summary>
    public string? ServerTlsCa { get; set; }

    /// <summary>The controller's client certificate (PEM), reloaded when the file changes; needs <see cref="ServerTlsKey"/>.</summary>
    public string? ServerTlsCertificate { get; set; }

    public string? ServerTlsKey { get; set; }

    /// <summary>Host NQN override for the node service; default derived from <see cref="NodeId"/>.</summary>
    public string? HostNqn { get; set; }

    /// <summary>
    /// NVMe/TCP connection settings the node uses for keys a volume's context lacks (--ctrl-loss-tmo and the
    /// other connection flags; --multipath-ctrl-loss-tmo and its siblings for volumes with several replicas); a
    /// StorageClass parameter, copied into the volume context, wins over them.
    /// </summary>
    public Node.FabricsConnectDefaults NodeConnectDefaults { get; set; } = Node.FabricsConnectDefaults.Default;

    /// <summary>How often the node's path keeper checks the paths of every staged volume (--path-keeper-period).</summary>
    public TimeSpan PathKeeperPeriod { get; set; } = Node.NodeOptions.DefaultPathKeeperPeriod;

    /// <summary>Topology segments reported by the node when not running in a cluster (--topology key=value).</summary>
    public Dictionary<string, string> Topology { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Volumes one node may have published at once (--max-volumes-per-node). The node reports it in NodeGetInfo
    /// (so the CO schedules no more) and the controller enforces it in ControllerPublishVolume with
    /// RESOURCE_EXHAUSTED, counting the volumes whose allowed hosts name the node; both must be given the same
    /// value. 0: no limit (the CO decides).
    /// </summary>
    public int MaxVolumesPerNode { get; set; } = DefaultMaxVolumesPerNode;

    /// <summary>Prometheus /metrics listener "ADDR:PORT" (HTTP/1.1); null disables metrics serving.</summary>
    public System.Net.IPEndPoint? MetricsListen { get; set; }

    public LogLevel LogLevel { get; set; } = LogLevel.Information;

    /// <summary>How long Probe waits for the storage server's GetServerInfo before reporting not ready.</summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Deadline of each management API call made by the controller.</summary>
    public TimeSpan ServerCallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Replaces the default console logging (stderr); used by embedders such as tests.</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; set; }

    /// <summary>Extra service registrations applied last, so embedders (tests) can replace a dependency.</summary>
    public Action<IServiceCollection>? ConfigureServices { get; set; }
}
