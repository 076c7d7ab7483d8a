using System.Security.Cryptography;
using CsiNvme.Metadata;
using CsiNvme.Target;
using CsiNvme.Target.Subsystems;
using CsiNvme.Volumes.Backends;
using CsiNvme.Volumes.Catalog;
using CsiNvme.Volumes.Local;
using Microsoft.Extensions.Logging.Abstractions;

namespace CsiNvme.Volumes.Tests;

/// <summary>
/// A single server's volume layer without its web host: a SQLite metadata store in a data directory, a thin pool file,
/// an NVMe target (not listening: the catalog only exports subsystems into it) and the catalog over them, loaded the way
/// the server starts it. Stopping and opening again on the same directories is a server restart.
/// </summary>
internal sealed class CatalogNode : IAsyncDisposable
{
    public const long PoolBytes = 256L << 20;

    private readonly IMetadataStore _store;
    private readonly NvmeTarget _target;

    private CatalogNode(IMetadataStore store, NvmeTarget target, LocalVolumes local, VolumeCatalog catalog, RecordingVolumeMetrics metrics)
    {
        _store = store;
        _target = target;
        Local = local;
        Catalog = catalog;
        Metrics = metrics;
    }

    public LocalVolumes Local { get; }

    public VolumeCatalog Catalog { get; }

    public RecordingVolumeMetrics Metrics { get; }

    public NvmeTarget Target => _target;

    /// <summary>Opens the node on <paramref name="dataDirectory"/> with one pool at <paramref name="poolPath"/>; <paramref name="key"/> seals host secrets.</summary>
    public static async Task<CatalogNode> OpenAsync(string dataDirectory, string poolPath, byte[] key, bool recoverMetadata = false)
    {
        Directory.CreateDirectory(dataDirectory);
        var store = await SqliteMetadataStore.OpenAsync(Path.Combine(dataDirectory, "metadata.db"));
        var backend = ThinVolumeBackend.Open([new PoolDefinition(poolPath, PoolBytes)], dataDirectory, [], NullLogger.Instance);
        var target = new NvmeTarget(new NvmeTargetOptions(), NullLoggerFactory.Instance);
        var metrics = new RecordingVolumeMetrics();
        var local = new LocalVolumes(backend, target, metrics, NullLogger.Instance) { Secrets = new SecretSealer(key) };
        var catalog = new VolumeCatalog(store, local, NullLogger<VolumeCatalog>.Instance);
        try
        {
            await catalog.LoadAsync(recoverMetadata);
        }
        catch
        {
            await target.DisposeAsync();
            await local.DisposeAsync();
            await store.DisposeAsync();
            throw;
        }

        return new CatalogNode(store, target, local, catalog, metrics);
    }

    public static byte[] NewKey() => RandomNumberGenerator.GetBytes(SecretSealer.KeyLength);

    public async ValueTask DisposeAsync()
    {
        // The server's order: connections first, then the volumes' storage, then the records.
        await _target.DisposeAsync();
        await Local.DisposeAsync();
        await _store.DisposeAsync();
    }
}

/// <summary>The metric series the volume layer reports, kept in memory so a test can read them.</summary>
internal sealed class RecordingVolumeMetrics : IVolumeMetricsFactory
{
    private readonly Dictionary<string, long> _sizes = new(StringComparer.Ordinal);

    public int VolumeCount { get; private set; }

    public IReadOnlyDictionary<string, long> Sizes
    {
        get
        {
            lock (_sizes)
            {
                return new Dictionary<string, long>(_sizes, StringComparer.Ordinal);
            }
        }
    }

    public IVolumeMetrics ForVolume(string volumeName, long sizeBytes)
    {
        var series = new Series(this, volumeName);
        series.SetSize(sizeBytes);
        return series;
    }

    public void SetVolumeCount(int count) => VolumeCount = count;

    private sealed class Series(RecordingVolumeMetrics owner, string volume) : IVolumeMetrics
    {
        public void SetSize(long sizeBytes)
        {
            lock (owner._sizes)
            {
                owner._sizes[volume] = sizeBytes;
            }
        }

        public void Remove()
        {
            lock (owner._sizes)
            {
                owner._sizes.Remove(volume);
            }
        }

        public void Record(IoKind kind, int commands, int failed, long bytes, long elapsedTimestampTicks)
        {
        }
    }
}
