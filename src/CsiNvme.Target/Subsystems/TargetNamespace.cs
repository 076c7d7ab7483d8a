using CsiNvme.Storage;

namespace CsiNvme.Target.Subsystems;

/// <summary>
/// One namespace of a subsystem: a block volume plus the identifiers a host uses to recognise it on
/// every path (NGUID and UUID are derived from the volume id, so they survive restarts).
/// </summary>
public sealed class TargetNamespace
{
    private readonly byte[] _nguid;

    public TargetNamespace(uint namespaceId, IBlockVolume volume, Guid volumeId)
    {
        ArgumentOutOfRangeException.ThrowIfZero(namespaceId);
        NamespaceId = namespaceId;
        Volume = volume;
        Uuid = volumeId;
        _nguid = volumeId.ToByteArray(bigEndian: true);
    }

    public uint NamespaceId { get; }

    public IBlockVolume Volume { get; }

    /// <summary>The namespace UUID (NIDT 3), identical to the volume id.</summary>
    public Guid Uuid { get; }

    /// <summary>The namespace globally unique identifier (NIDT 2): the volume id's 16 bytes in RFC 4122 order.</summary>
    public ReadOnlySpan<byte> Nguid => _nguid;

    /// <summary>Lower-case hex form of <see cref="Nguid"/>, as nvme-cli prints it.</summary>
    public string NguidHex => Convert.ToHexStringLower(_nguid);

    /// <summary>Per-volume I/O metrics sink; null when metrics are off.</summary>
    public INamespaceMetrics? Metrics { get; set; }
}
