using System.Buffers.Binary;

namespace CsiNvme.Protocol.Identify;

/// <summary>
/// Identify Namespace data structure, CNS 00h (NVM command set 1.0, 4.1.5.1, Figure 97). One LBA format without
/// metadata; identifiers at NGUID@104 and EUI64@120 must be the same on every path to the namespace.
/// </summary>
public sealed record IdentifyNamespace
{
    public const int Size = 4096;

    /// <summary>NSZE@0, NCAP@8, NUSE@16 in logical blocks.</summary>
    public ulong SizeBlocks { get; init; }
    public ulong CapacityBlocks { get; init; }
    public ulong UtilizationBlocks { get; init; }
    /// <summary>NSFEAT@24: bit 0 thin provisioning, bit 3 identifiers never reused.</summary>
    public byte Features { get; init; }
    /// <summary>FLBAS@26: index of the LBA format in use.</summary>
    public byte FormattedLbaSize { get; init; }
    /// <summary>NMIC@30: bit 0 the namespace may be attached to several controllers.</summary>
    public byte MultiPathCapabilities { get; init; }
    /// <summary>RESCAP@31.</summary>
    public byte ReservationCapabilities { get; init; }
    /// <summary>DLFEAT@33: bits 2:0 = 001b deallocated blocks read as zeros; bit 3 Write Zeroes may deallocate.</summary>
    public byte DeallocateFeatures { get; init; }
    /// <summary>NAWUN@34, NAWUPF@36, NACWU@38: 0-based logical blocks (0 = use the controller's values).</summary>
    public ushort AtomicWriteUnitNormal { get; init; }
    /// <summary>NPWG@64, NPWA@66, NPDG@68, NPDA@70, NOWS@72 (valid when NSFEAT bit 4), 0-based blocks.</summary>
    public ushort PreferredWriteGranularity { get; init; }
    public ushort PreferredDeallocateGranularity { get; init; }
    /// <summary>ANAGRPID@92.</summary>
    public uint AnaGroupId { get; init; }
    /// <summary>NSATTR@99: bit 0 write protected.</summary>
    public byte Attributes { get; init; }
    /// <summary>NGUID@104 (16 bytes).</summary>
    public byte[] Nguid { get; init; } = new byte[16];
    /// <summary>EUI64@120 (8 bytes).</summary>
    public byte[] Eui64 { get; init; } = new byte[8];
    /// <summary>LBAF0@128: LBADS (log2 of the block size) in bits 23:16.</summary>
    public byte LbaDataSizeExponent { get; init; } = 9;

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        d.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(d, SizeBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], CapacityBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(d[16..], UtilizationBlocks);
        d[24] = Features;
        d[25] = 0; // NLBAF: one format (0-based).
        d[26] = FormattedLbaSize;
        d[30] = MultiPathCapabilities;
        d[31] = ReservationCapabilities;
        d[33] = DeallocateFeatures;
        BinaryPrimitives.WriteUInt16LittleEndian(d[34..], AtomicWriteUnitNormal);
        BinaryPrimitives.WriteUInt16LittleEndian(d[64..], PreferredWriteGranularity);
        BinaryPrimitives.WriteUInt16LittleEndian(d[66..], PreferredWriteGranularity);
        BinaryPrimitives.WriteUInt16LittleEndian(d[68..], PreferredDeallocateGranularity);
        BinaryPrimitives.WriteUInt16LittleEndian(d[70..], PreferredDeallocateGranularity);
        BinaryPrimitives.WriteUInt16LittleEndian(d[72..], PreferredWriteGranularity);
        BinaryPrimitives.WriteUInt32LittleEndian(d[92..], AnaGroupId);
        d[99] = Attributes;
        Nguid.AsSpan(0, 16).CopyTo(d[104..]);
        Eui64.AsSpan(0, 8).CopyTo(d[120..]);
        BinaryPrimitives.WriteUInt32LittleEndian(d[128..], (uint)LbaDataSizeExponent << 16);
    }

    public static IdentifyNamespace Read(ReadOnlySpan<byte> s) => new()
    {
        SizeBlocks = BinaryPrimitives.ReadUInt64LittleEndian(s),
        CapacityBlocks = BinaryPrimitives.ReadUInt64LittleEndian(s[8..]),
        UtilizationBlocks = BinaryPrimitives.ReadUInt64LittleEndian(s[16..]),
        Features = s[24],
        FormattedLbaSize = s[26],
        MultiPathCapabilities = s[30],
        ReservationCapabilities = s[31],
        DeallocateFeatures = s[33],
        AtomicWriteUnitNormal = BinaryPrimitives.ReadUInt16LittleEndian(s[34..]),
        PreferredWriteGranularity = BinaryPrimitives.ReadUInt16LittleEndian(s[64..]),
        PreferredDeallocateGranularity = BinaryPrimitives.ReadUInt16LittleEndian(s[68..]),
        AnaGroupId = BinaryPrimitives.ReadUInt32LittleEndian(s[92..]),
        Attributes = s[99],
        Nguid = s.Slice(104, 16).ToArray(),
        Eui64 = s.Slice(120, 8).ToArray(),
        LbaDataSizeExponent = (byte)(BinaryPrimitives.ReadUInt32LittleEndian(s[128..]) >> 16),
    };

    // Record equality over the byte arrays by content, so round-trip tests compare values.
    public bool Equals(IdentifyNamespace? other) =>
        other is not null && SizeBlocks == other.SizeBlocks && CapacityBlocks == other.CapacityBlocks &&
        UtilizationBlocks == other.UtilizationBlocks && Features == other.Features && FormattedLbaSize == other.FormattedLbaSize &&
        MultiPathCapabilities == other.MultiPathCapabilities && ReservationCapabilities == other.ReservationCapabilities &&
        DeallocateFeatures == other.DeallocateFeatures && AtomicWriteUnitNormal == other.AtomicWriteUnitNormal &&
        PreferredWriteGranularity == other.PreferredWriteGranularity && PreferredDeallocateGranularity == other.PreferredDeallocateGranularity &&
        AnaGroupId == other.AnaGroupId && Attributes == other.Attributes && Nguid.AsSpan().SequenceEqual(other.Nguid) &&
        Eui64.AsSpan().SequenceEqual(other.Eui64) && LbaDataSizeExponent == other.LbaDataSizeExponent;

    public override int GetHashCode() => HashCode.Combine(SizeBlocks, AnaGroupId, LbaDataSizeExponent);
}

/// <summary>Namespace Identification Descriptor types (NVMe base 2.0, 5.17.2.3, Figure 279).</summary>
public enum NamespaceIdType : byte
{
    Eui64 = 1,
    Nguid = 2,
    Uuid = 3,
    CommandSetIdentifier = 4,
}

/// <summary>One Namespace Identification Descriptor: NIDT@0, NIDL@1, reserved, NID@4.</summary>
public readonly record struct NamespaceIdDescriptor(NamespaceIdType Type, byte[] Value)
{
    public const int ListSize = 4096;

    /// <summary>Writes the descriptor list of CNS 03h (zero-terminated); returns the bytes used.</summary>
    public static int WriteList(Span<byte> destination, ReadOnlySpan<NamespaceIdDescriptor> descriptors)
    {
        destination[..ListSize].Clear();
        var offset = 0;
        foreach (var descriptor in descriptors)
        {
            destination[offset] = (byte)descriptor.Type;
            destination[offset + 1] = (byte)descriptor.Value.Length;
            descriptor.Value.CopyTo(destination[(offset + 4)..]);
            offset += 4 + descriptor.Value.Length;
        }

        return offset;
    }

    public static List<NamespaceIdDescriptor> ReadList(ReadOnlySpan<byte> source)
    {
        var list = new List<NamespaceIdDescriptor>();
        var offset = 0;
        while (offset + 4 <= source.Length && source[offset] != 0)
        {
            var length = source[offset + 1];
            list.Add(new NamespaceIdDescriptor((NamespaceIdType)source[offset], source.Slice(offset + 4, length).ToArray()));
            offset += 4 + length;
        }

        return list;
    }
}

/// <summary>Active Namespace ID list, CNS 02h (NVMe base 2.0, 5.17.2.2): up to 1024 ascending NSIDs greater than CDW1.NSID.</summary>
public static class ActiveNamespaceList
{
    public const int Size = 4096;

    public static void Write(Span<byte> destination, IEnumerable<uint> namespaceIds, uint greaterThan)
    {
        destination[..Size].Clear();
        var index = 0;
        foreach (var nsid in namespaceIds.Where(n => n > greaterThan).Order())
        {
            if (index == Size / 4)
            {
                break;
            }

            BinaryPrimitives.WriteUInt32LittleEndian(destination[(index * 4)..], nsid);
            index++;
        }
    }

    public static List<uint> Read(ReadOnlySpan<byte> source)
    {
        var list = new List<uint>();
        for (var i = 0; i + 4 <= source.Length; i += 4)
        {
            var nsid = BinaryPrimitives.ReadUInt32LittleEndian(source[i..]);
            if (nsid == 0)
            {
                break;
            }

            list.Add(nsid);
        }

        return list;
    }
}
