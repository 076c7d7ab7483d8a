using CsiNvme.Volumes;
using CsiNvme.Volumes.Backends;
using CsiNvme.Target.Subsystems;
using Prometheus;

namespace CsiNvme.Server.Metrics;

/// <summary>
/// The server's Prometheus collectors. Each server owns its registry so several servers in one process
/// (tests) keep separate counters.
/// </summary>
public sealed class ServerMetrics : ITargetObserver, IVolumeMetricsFactory
{
    /// <summary>The "op" label value of each <see cref="IoKind"/>, indexed by the enum value.</summary>
    internal static readonly string[] OperationLabels = CreateOperationLabels();

    private readonly Counter _ioOperations;
    private readonly Counter _ioBytes;
    private readonly Counter _ioErrors;
    private readonly Histogram _ioLatency;
    private readonly Gauge _connections;
    private readonly Gauge _volumes;
    private readonly Gauge _volumeSize;
    private readonly Gauge _poolCapacity;
    private readonly Gauge _poolUsed;
    private readonly Gauge _poolReserve;
    private readonly Gauge _poolOutOfSpace;

    public ServerMetrics()
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        // Exemplars would look up the current trace context on every I/O; the I/O path must not allocate.
        factory.ExemplarBehavior = ExemplarBehavior.NoExemplars();

        string[] volumeOp = ["volume", "op"];
        _ioOperations = factory.CreateCounter("csinvme_volume_io_operations_total", "Completed I/O commands per volume and operation.", volumeOp);
        _ioBytes = factory.CreateCounter("csinvme_volume_io_bytes_total", "Bytes moved by successful I/O commands per volume and operation.", volumeOp);
        _ioErrors = factory.CreateCounter("csinvme_volume_io_errors_total", "I/O commands completed with an error status per volume and operation.", volumeOp);
        _ioLatency = factory.CreateHistogram(
            "csinvme_volume_io_latency_seconds",
            "Time from command arrival to completion per volume and operation.",
            volumeOp,
            new HistogramConfiguration
            {
                // 10 µs doubling to ~1.3 s: covers RAM-backed reads through slow fsyncs.
                Buckets = Histogram.ExponentialBuckets(0.00001, 2, 18),
            });
        _connections = factory.CreateGauge("csinvme_nvme_connections", "Open NVMe/TCP connections.");
        _volumes = factory.CreateGauge("csinvme_volumes", "Volumes served.");
        _volumeSize = factory.CreateGauge("csinvme_volume_size_bytes", "Size of each volume in bytes.", ["volume"]);
        _poolCapacity = factory.CreateGauge("csinvme_pool_capacity_bytes", "Bytes of each storage pool available to volumes and snapshots.", ["pool"]);
        _poolUsed = factory.CreateGauge("csinvme_pool_used_bytes", "Bytes of each storage pool allocated to volumes and snapshots.", ["pool"]);
        _poolReserve = factory.CreateGauge("csinvme_pool_reserve_bytes", "Free bytes of each storage pool that snapshots may not promise away (--pool-reserve).", ["pool"]);
        _poolOutOfSpace = factory.CreateGauge(
            "csinvme_pool_out_of_space", "1 from a write that failed for lack of space in the pool until space comes back, else 0.", ["pool"]);
    }

    public CollectorRegistry Registry { get; }

    public double ConnectionCount => _connections.Value;

    /// <summary>Resolves every labelled series of a volume once, so recording I/O costs no lookups.</summary>
    public IVolumeMetrics ForVolume(string volumeName, long sizeBytes)
    {
        var count = OperationLabels.Length;
        var operations = new Counter.Child[count];
        var bytes = new Counter.Child[count];
        var errors = new Counter.Child[count];
        var latency = new Histogram.Child[count];
        for (var i = 0; i < count; i++)
        {
            var op = OperationLabels[i];
            operations[i] = _ioOperations.WithLabels(volumeName, op);
            bytes[i] = _ioBytes.WithLabels(volumeName, op);
            errors[i] = _ioErrors.WithLabels(volumeName, op);
            latency[i] = _ioLatency.WithLabels(volumeName, op);
        }

        var size = _volumeSize.WithLabels(volumeName);
        size.Set(sizeBytes);
        return new VolumeIoMetrics(operations, bytes, errors, latency, size);
    }

    public void SetVolumeCount(int count) => _volumes.Set(count);

    /// <summary>Pool space changes with every allocating write, so it is read when scraped rather than pushed.</summary>
    /// <summary>The cluster's series of this node (<see cref="ClusterMetrics"/>).</summary>
    public void ObserveCluster(CsiNvme.Cluster.ClusterNode node) => ClusterMetrics.Observe(Registry, node);

    public void ObservePools(Func<IReadOnlyList<PoolStatus>> pools) =>
        Registry.AddBeforeCollectCallback(() =>
        {
            foreach (var pool in pools())
            {
                _poolCapacity.WithLabels(pool.Name).Set(pool.CapacityBytes);
                _poolUsed.WithLabels(pool.Name).Set(pool.UsedBytes);
                _poolReserve.WithLabels(pool.Name).Set(pool.ReserveBytes);
                _poolOutOfSpace.WithLabels(pool.Name).Set(pool.OutOfSpace ? 1 : 0);
            }
        });

    public void ConnectionOpened() => _connections.Inc();

    public void ConnectionClosed() => _connections.Dec();

    private static string[] CreateOperationLabels()
    {
        var kinds = Enum.GetValues<IoKind>();
        var labels = new string[kinds.Max(k => (int)k) + 1];
        foreach (var kind in kinds)
        {
            labels[(int)kind] = kind switch
            {
                IoKind.Read => "read",
                IoKind.Write => "write",
                IoKind.Flush => "flush",
                IoKind.WriteZeroes => "write_zeroes",
                IoKind.Deallocate => "deallocate",
                _ => kind.ToString().ToLowerInvariant(),
            };
        }

        return labels;
    }
}
