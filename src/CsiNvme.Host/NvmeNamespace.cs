using CsiNvme.Protocol.Identify;

namespace CsiNvme.Host;

/// <summary>An active namespace of a controller, as Identify Namespace (CNS 00h) and its descriptors (CNS 03h) describe it.</summary>
public sealed class NvmeNamespace
{
    internal NvmeNamespace(uint namespaceId)
    {
        NamespaceId = namespaceId;
    }

    public uint NamespaceId { get; }

    public IdentifyNamespace Identify { get; private set; } = new();

    public IReadOnlyList<NamespaceIdDescriptor> Descriptors { get; private set; } = [];

    /// <summary>Logical block size in bytes (LBA format 0; this host does not use metadata formats).</summary>
    public int BlockSize { get; private set; }

    public ulong SizeBlocks { get; private set; }

    public long SizeBytes => (long)SizeBlocks * BlockSize;

    /// <summary>The NGUID (NIDT 2) when the controller reports one, else the Identify NGUID field.</summary>
    public Guid? Uuid => Descriptors.FirstOrDefault(d => d.Type == NamespaceIdType.Uuid) is { Value.Length: 16 } d ? new Guid(d.Value, bigEndian: true) : null;

    internal void Update(IdentifyNamespace identify, IReadOnlyList<NamespaceIdDescriptor> descriptors)
    {
        Identify = identify;
        Descriptors = descriptors;
        BlockSize = 1 << identify.LbaDataSizeExponent;
        SizeBlocks = identify.SizeBlocks;
    }

    public override string ToString() => $"nsid {NamespaceId}: {SizeBlocks} x {BlockSize} B";
}

/// <summary>
/// One Asynchronous Event (NVMe base 2.0, 5.2, Figure 146): type, information and the log page to read. For namespace
/// changes the host has already read the Changed Namespace List, so <see cref="ChangedNamespaces"/> is filled.
/// </summary>
public sealed record AsyncEvent(byte Type, byte Info, byte LogPage, IReadOnlyList<uint> ChangedNamespaces)
{
    public const byte TypeNotice = 2;
    public const byte NoticeNamespaceAttributeChanged = 0;

    public bool IsNamespaceChange => Type == TypeNotice && Info == NoticeNamespaceAttributeChanged;

    internal static AsyncEvent FromDw0(uint dw0, IReadOnlyList<uint> changed) =>
        new((byte)(dw0 & 0x7), (byte)(dw0 >> 8), (byte)(dw0 >> 16), changed);
}

/// <summary>Where a controller's association is.</summary>
public enum ControllerState
{
    Live,
    /// <summary>The connection dropped; commands fail with a host path error while the host reconnects.</summary>
    Reconnecting,
    /// <summary>Reconnecting gave up (or was off); every command fails with a host path error.</summary>
    Failed,
    Closed,
}
