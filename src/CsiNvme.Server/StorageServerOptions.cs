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

/// <summary>
/// A thin pool: a file (created sparse when missing, then <paramref name="SizeBytes"/> is required) or a raw block
/// device (/dev/...). Its name is the file name without extension.
/// </summary>
public sealed record PoolDefinition(string Path, long? SizeBytes);

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

    /// <summary>gRPC management API (HTTP/2 without TLS).</summary>
    public IPEndPoint ManagementListen { get; set; } = new(IPAddress.Loopback, DefaultManagementPort);

    /// <summary>Prometheus /metrics (HTTP/1.1).</summary>
    public IPEndPoint MetricsListen { get; set; } = new(IPAddress.Loopback, DefaultMetricsPort);

    public StorageBackend Backend { get; set; } = StorageBackend.Thin;

    /// <summary>Pools of the thin backend; when empty it uses DataDirectory/pools/default.pool.</summary>
    public List<PoolDefinition> Pools { get; set; } = [];

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

    /// <summary>Replaces the default console logging (all on stderr); used by embedders such as tests.</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; set; }

    /// <summary>Target tunables; <see cref="NvmeListen"/> is copied into its listen list.</summary>
    public Action<NvmeTargetOptions>? ConfigureTarget { get; set; }
}
