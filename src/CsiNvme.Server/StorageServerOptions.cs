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

/// <summary>
/// Free space of a pool that snapshots may not promise away: a snapshot (or a clone from a volume) is refused when the
/// pool's free space beyond the reserve could not take an overwrite of everything the source volume would then share.
/// A share of the pool's capacity (<paramref name="Percent"/>) or a size; for the pool named <paramref name="Pool"/>, or
/// for every pool without one of its own when null.
/// </summary>
public sealed record PoolReserve(string? Pool, double? Percent, long? Bytes)
{
    public static PoolReserve Default { get; } = new(null, 5, null);

    public long BytesOf(long capacityBytes) => Math.Min(capacityBytes, Bytes ?? (long)(capacityBytes * Percent!.Value / 100));

    /// <summary>"5%" or "10 GiB", as given.</summary>
    public string Amount => Percent is { } percent
        ? percent.ToString(System.Globalization.CultureInfo.InvariantCulture) + "%"
        : CsiNvme.Api.ByteSize.Format(Bytes ?? 0);

    public override string ToString() => (Pool is null ? "" : Pool + "=") + Amount;

    /// <summary>The reserve of <paramref name="pool"/>: its own entry, else the general one, else <see cref="Default"/>; the last given wins.</summary>
    public static PoolReserve For(string pool, IReadOnlyList<PoolReserve> reserves) =>
        reserves.LastOrDefault(r => r.Pool == pool) ?? reserves.LastOrDefault(r => r.Pool is null) ?? Default;
}

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

    /// <summary>Reserves of the thin backend's pools; a pool without one keeps <see cref="PoolReserve.Default"/>.</summary>
    public List<PoolReserve> PoolReserves { get; set; } = [];

    /// <summary>
    /// Before loading, rebuild the volume and snapshot records the metadata store lacks from what the pools record about
    /// their images, and adopt pools last used with another store; then start as usual. For a lost or mismatched store.
    /// </summary>
    public bool RecoverMetadata { get; set; }

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
