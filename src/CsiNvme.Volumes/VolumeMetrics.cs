using CsiNvme.Target.Subsystems;

namespace CsiNvme.Volumes;

/// <summary>The metric series of one served volume (I/O counters come through <see cref="INamespaceMetrics"/>).</summary>
public interface IVolumeMetrics : INamespaceMetrics
{
    void SetSize(long sizeBytes);

    /// <summary>Drops the volume's series (it was deleted or moved off this node).</summary>
    void Remove();
}

/// <summary>Where a node's volumes report; the server's Prometheus registry.</summary>
public interface IVolumeMetricsFactory
{
    IVolumeMetrics ForVolume(string volumeName, long sizeBytes);

    void SetVolumeCount(int count);
}
