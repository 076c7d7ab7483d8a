using CsiNvme.Cluster;
using CsiNvme.Volumes.Backends;
using System.Net;
using CsiNvme.Target;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Server;

/// <summary>Where volume data and metadata live.</summary>
public enum StorageBackend
{
    /// <summary>Sparse files under DataDirectory/volumes and an SQLite metadata file: survives restarts; no snapshots.</summary>
    File,

    /// <summary>RAM only, gone at exit: for tests and benchmarks.</summary>
    Memory,

    /// <summary>
    /// Thin volumes with snapshots and clones in pools (<see cref="StorageServerOptions.Pools"/>, or one file pool
    /// under DataDirectory/pools) and an SQLite metadata file: survives restarts and crashes.
    /// </summary>
    Thin,
}

/// <summary>PEM files of the management API's mutual TLS (--tls-cert, --tls-key, --tls-client-ca).</summary>
/// <param name="CertificateFile">The server's certificate; in a cluster also the node's client certificate towards the
/// other nodes, so its Common Name must carry the role node (CN=node or CN=node:NAME).</param>
/// <param name="ClientCaFile">The CA that signs the clients (and, in a cluster, the other nodes).</param>
public sealed record ManagementTlsFiles(string CertificateFile, string KeyFile, string ClientCaFile);

public sealed class StorageServerOptions
{
    public const int DefaultNvmePort = 4420;
    public const int DefaultManagementPort = 9500;
    public const int DefaultMetricsPort = 9501;

    public string DataDirectory { get; set; } = "./csinvme-data";

    /// <summary>NVMe/TCP listeners; port 0 picks a free port.</summary>
    public List<IPEndPoint> NvmeListen { get; set; } = [new(IPAddress.Loopback, DefaultNvmePort)];

    /// <summary>
    /// Addresses reported to hosts for a wildcard NVMe listener (0.0.0.0 or ::), with its port; when empty, every
    /// non-loopback IPv4 address of the machine's interfaces is reported instead. Explicit listeners report themselves.
    /// </summary>
    public List<IPAddress> AdvertiseAddresses { get; set; } = [];

    /// <summary>
    /// Addresses hosts reach the NVMe/TCP listeners at (with each listener's port) when not those the listeners bind or
    /// advertise, which the other storage nodes keep using for replication: NAT in front of the node, or a front-end
    /// network for hosts. Reported in discovery logs, volumes' listen addresses and the node list. Empty: the advertised ones.
    /// </summary>
    public List<IPAddress> HostAddresses { get; set; } = [];

    /// <summary>gRPC management API: HTTP/2, over mutual TLS when <see cref="ManagementTls"/> is set.</summary>
    public IPEndPoint ManagementListen { get; set; } = new(IPAddress.Loopback, DefaultManagementPort);

    /// <summary>
    /// Mutual TLS on the management API; required when <see cref="ManagementListen"/> is not a loopback address,
    /// unless <see cref="Insecure"/>.
    /// </summary>
    public ManagementTlsFiles? ManagementTls { get; set; }

    /// <summary>Serve the management API without TLS on a non-loopback address (--insecure): anyone who reaches the port may do anything.</summary>
    public bool Insecure { get; set; }

    /// <summary>Prometheus /metrics (HTTP/1.1).</summary>
    public IPEndPoint MetricsListen { get; set; } = new(IPAddress.Loopback, DefaultMetricsPort);

    public StorageBackend Backend { get; set; } = StorageBackend.Thin;

    /// <summary>Pools of the thin backend; when empty it uses DataDirectory/pools/default.pool.</summary>
    public List<PoolDefinition> Pools { get; set; } = [];

    /// <summary>Reserves of the thin backend's pools; a pool without one keeps <see cref="PoolReserve.Default"/>.</summary>
    public List<PoolReserve> PoolReserves { get; set; } = [];

    /// <summary>
    /// Before loading, rebuild the volume and snapshot records the metadata store lacks from what the pools record about
    /// their images, and adopt pools last used with another store; then start as usual. For a lost or mismatched store.
    /// </summary>
    public bool RecoverMetadata { get; set; }

    /// <summary>
    /// The key that seals the hosts' DH-HMAC-CHAP secrets in the metadata store (SecretSealer); null: DIR/secret.key,
    /// made at the first start. Every node of a cluster needs the same one.
    /// </summary>
    public string? SecretKeyFile { get; set; }

    /// <summary>How long each NVMe/TCP connection polls for the next command before it sleeps (see NvmeTargetOptions.ReceivePollTime).</summary>
    public TimeSpan NvmePollTime { get; set; } = DefaultNvmePollTime;

    public static TimeSpan DefaultNvmePollTime { get; } = TimeSpan.FromMicroseconds(50);

    /// <summary>Connections one NVMe/TCP listener holds at once (NvmeTargetOptions.MaxConnections).</summary>
    public int NvmeMaxConnections { get; set; } = NvmeTargetOptions.DefaultMaxConnections;

    /// <summary>Connections one host NQN may hold (NvmeTargetOptions.MaxConnectionsPerHost); null: enough for a node full of volumes.</summary>
    public int? NvmeMaxConnectionsPerHost { get; set; }

    /// <summary>How long a new NVMe/TCP connection may take to its Connect (NvmeTargetOptions.ConnectTimeout).</summary>
    public TimeSpan NvmeConnectTimeout { get; set; } = NvmeTargetOptions.DefaultConnectTimeout;

    /// <summary>NVMe/TCP connections that get a thread of their own; the rest run on the thread pool (NvmeTargetOptions.MaxConnectionThreads).</summary>
    public int NvmeMaxThreads { get; set; } = NvmeTargetOptions.DefaultMaxConnectionThreads;

    /// <summary>The target's options from these settings; <see cref="ConfigureTarget"/> may change them further.</summary>
    internal NvmeTargetOptions ToTargetOptions()
    {
        var target = new NvmeTargetOptions
        {
            ReceivePollTime = NvmePollTime,
            MaxConnections = NvmeMaxConnections,
            MaxConnectionsPerHost = NvmeMaxConnectionsPerHost,
            ConnectTimeout = NvmeConnectTimeout,
            MaxConnectionThreads = NvmeMaxThreads,
        };
        ConfigureTarget?.Invoke(target);
        target.Listen.Clear();
        target.Listen.AddRange(NvmeListen);
        return target;
    }

    public LogLevel LogLevel { get; set; } = LogLevel.Information;

    /// <summary>etcd client URLs; when given, the server is a node of the cluster they hold (metadata in etcd, replication).</summary>
    public List<string> EtcdEndpoints { get; set; } = [];

    /// <summary>This node's name in its cluster (default: the machine's host name); fixed for the node's life.</summary>
    public string? NodeName { get; set; }

    /// <summary>Lease of the node's cluster membership (etcd's minimum is 2 s).</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Rebuild copy rate per replica, bytes per second.</summary>
    public long RebuildBytesPerSecond { get; set; } = 200L << 20;

    /// <summary>How long a change that skipped a failed replica waits for the out-of-sync record before it fails.</summary>
    public TimeSpan ReplicaRecordTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a draining primary waits for its hosts to connect to the replica taking the role (ClusterNodeOptions.HandoverHostWait).</summary>
    public TimeSpan HandoverHostWait { get; set; } = ClusterNodeOptions.DefaultHandoverHostWait;

    public bool IsClusterNode => EtcdEndpoints.Count > 0;

    /// <summary>Replaces the default console logging (all on stderr); used by embedders such as tests.</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; set; }

    /// <summary>Target tunables; <see cref="NvmeListen"/> is copied into its listen list.</summary>
    public Action<NvmeTargetOptions>? ConfigureTarget { get; set; }
}
