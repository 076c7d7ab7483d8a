using System.Buffers.Binary;

namespace CsiNvme.Protocol.Logs;

/// <summary>TRTYPE, ADRFAM and SUBTYPE values of discovery log entries (NVMe-oF 1.1, 5.3, Figure 38).</summary>
public enum TransportType : byte
{
    Rdma = 1,
    FibreChannel = 2,
    Tcp = 3,
}

public enum AddressFamily : byte
{
    IPv4 = 1,
    IPv6 = 2,
}

public enum DiscoverySubsystemType : byte
{
    ReferralDiscovery = 1,
    NvmSubsystem = 2,
    CurrentDiscovery = 3,
}

/// <summary>
/// One 1024-byte Discovery Log Page entry (NVMe-oF 1.1, 5.3, Figure 38): TRTYPE@0, ADRFAM@1, SUBTYPE@2, TREQ@3,
/// PORTID@4, CNTLID@6, ASQSZ@8, EFLAGS@10, TRSVCID@32 (32 bytes), SUBNQN@256, TRADDR@512, TSAS@768 (TCP: SECTYPE@768).
/// </summary>
public sealed record DiscoveryLogEntry(
    TransportType TransportType,
    AddressFamily AddressFamily,
    DiscoverySubsystemType SubsystemType,
    byte TransportRequirements,
    ushort PortId,
    ushort ControllerId,
    ushort AdminMaxSqSize,
    ushort Flags,
    string ServiceId,
    string SubsystemNqn,
    string TransportAddress,
    byte SecurityType = 0)
{
    public const int Size = 1024;

    /// <summary>TREQ bits 1:0 = 10b: a secure channel is not required (TCP without TLS).</summary>
    public const byte SecureChannelNotRequired = 0x02;

    /// <summary>TREQ bits 1:0 = 01b: a secure channel is required (NVMe/TCP with TLS, NVMe/TCP transport 1.0, 3.6.1).</summary>
    public const byte SecureChannelRequired = 0x01;

    /// <summary>TSAS SECTYPE of TCP (NVMe/TCP transport 1.0, Figure 31): 0 none, 2 TLS 1.3.</summary>
    public const byte SecurityTypeTls13 = 0x02;

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        d.Clear();
        d[0] = (byte)TransportType;
        d[1] = (byte)AddressFamily;
        d[2] = (byte)SubsystemType;
        d[3] = TransportRequirements;
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], PortId);
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], ControllerId);
        BinaryPrimitives.WriteUInt16LittleEndian(d[8..], AdminMaxSqSize);
        BinaryPrimitives.WriteUInt16LittleEndian(d[10..], Flags);
        AsciiField.WriteSpacePadded(d.Slice(32, 32), ServiceId);
        AsciiField.WriteNullPadded(d.Slice(256, 256), SubsystemNqn);
        AsciiField.WriteSpacePadded(d.Slice(512, 256), TransportAddress);
        d[768] = SecurityType;
    }

    public static DiscoveryLogEntry Read(ReadOnlySpan<byte> s) => new(
        (TransportType)s[0],
        (AddressFamily)s[1],
        (DiscoverySubsystemType)s[2],
        s[3],
        BinaryPrimitives.ReadUInt16LittleEndian(s[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(s[6..]),
        BinaryPrimitives.ReadUInt16LittleEndian(s[8..]),
        BinaryPrimitives.ReadUInt16LittleEndian(s[10..]),
        AsciiField.ReadSpacePadded(s.Slice(32, 32)),
        AsciiField.ReadNullTerminated(s.Slice(256, 256)),
        AsciiField.ReadSpacePadded(s.Slice(512, 256)),
        s[768]);
}

/// <summary>
/// The Discovery log page, log id 70h (NVMe-oF 1.1, 5.3, Figure 37): GENCTR@0, NUMREC@8, RECFMT@16, entries from
/// byte 1024. Hosts read it in pieces by offset (LPO) and re-read while GENCTR changes, so it is built whole and
/// served by range.
/// </summary>
public static class DiscoveryLog
{
    public const int HeaderSize = 1024;

    public static byte[] Build(ulong generation, IReadOnlyList<DiscoveryLogEntry> entries)
    {
        var page = new byte[HeaderSize + entries.Count * DiscoveryLogEntry.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(page, generation);
        BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(8), (ulong)entries.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(16), 0);
        for (var i = 0; i < entries.Count; i++)
        {
            entries[i].Write(page.AsSpan(HeaderSize + i * DiscoveryLogEntry.Size));
        }

        return page;
    }

    public static (ulong Generation, ulong RecordCount, IReadOnlyList<DiscoveryLogEntry> Entries) Parse(ReadOnlySpan<byte> page)
    {
        var generation = BinaryPrimitives.ReadUInt64LittleEndian(page);
        var count = BinaryPrimitives.ReadUInt64LittleEndian(page[8..]);
        var entries = new List<DiscoveryLogEntry>();
        for (var offset = HeaderSize; offset + DiscoveryLogEntry.Size <= page.Length && (ulong)entries.Count < count; offset += DiscoveryLogEntry.Size)
        {
            entries.Add(DiscoveryLogEntry.Read(page[offset..]));
        }

        return (generation, count, entries);
    }
}
