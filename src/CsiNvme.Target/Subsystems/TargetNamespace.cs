using CsiNvme.Storage;
using CsiNvme.Target.Io.Reservations;

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
        AsyncVolume = volume as IAsyncBlockVolume;
        Uuid = volumeId;
        _nguid = volumeId.ToByteArray(bigEndian: true);
    }

    public uint NamespaceId { get; }

    public IBlockVolume Volume { get; }

    /// <summary>The volume when its changes may complete later (a replicated volume); null for plain volumes.</summary>
    public IAsyncBlockVolume? AsyncVolume { get; }

    /// <summary>The namespace UUID (NIDT 3), identical to the volume id.</summary>
    public Guid Uuid { get; }

    /// <summary>The namespace globally unique identifier (NIDT 2): the volume id's 16 bytes in RFC 4122 order.</summary>
    public ReadOnlySpan<byte> Nguid => _nguid;

    /// <summary>Lower-case hex form of <see cref="Nguid"/>, as nvme-cli prints it.</summary>
    public string NguidHex => Convert.ToHexStringLower(_nguid);

    /// <summary>Command and byte counters reported in the SMART / Health log.</summary>
    public NamespaceCounters Counters { get; } = new();

    /// <summary>Per-volume I/O metrics sink; null when metrics are off.</summary>
    public INamespaceMetrics? Metrics { get; set; }

    /// <summary>Registrants and reservation of the namespace; persisted when created with a store (<see cref="NamespaceReservations.LoadAsync"/>).</summary>
    public NamespaceReservations Reservations { get; init; } = new();
}

/// <summary>Lifetime I/O counters of a namespace (SMART / Health log, NVMe base 2.0, Figure 207).</summary>
public sealed class NamespaceCounters
{
    private long _readCommands;
    private long _writeCommands;
    private long _bytesRead;
    private long _bytesWritten;

    public long ReadCommands => Volatile.Read(ref _readCommands);

    public long WriteCommands => Volatile.Read(ref _writeCommands);

    public long BytesRead => Volatile.Read(ref _bytesRead);

    public long BytesWritten => Volatile.Read(ref _bytesWritten);

    public void CountReads(int commands, long bytes)
    {
        Interlocked.Add(ref _readCommands, commands);
        Interlocked.Add(ref _bytesRead, bytes);
    }

    public void CountWrites(int commands, long bytes)
    {
        Interlocked.Add(ref _writeCommands, commands);
        Interlocked.Add(ref _bytesWritten, bytes);
    }
}
