using System.Buffers.Binary;

namespace CsiNvme.Protocol.Logs;

/// <summary>
/// SMART / Health Information log, log id 02h (NVMe base 2.0, 5.16.1.3, Figure 207), 512 bytes. Data units are
/// thousands of 512-byte units, stored as 128-bit little-endian counters.
/// </summary>
public sealed record SmartLog(
    byte CriticalWarning,
    ushort CompositeTemperatureKelvin,
    byte AvailableSpare,
    byte AvailableSpareThreshold,
    byte PercentageUsed,
    ulong DataUnitsRead,
    ulong DataUnitsWritten,
    ulong HostReadCommands,
    ulong HostWriteCommands,
    ulong PowerOnHours)
{
    public const int Size = 512;

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        d.Clear();
        d[0] = CriticalWarning;
        BinaryPrimitives.WriteUInt16LittleEndian(d[1..], CompositeTemperatureKelvin);
        d[3] = AvailableSpare;
        d[4] = AvailableSpareThreshold;
        d[5] = PercentageUsed;
        BinaryPrimitives.WriteUInt64LittleEndian(d[32..], DataUnitsRead);
        BinaryPrimitives.WriteUInt64LittleEndian(d[48..], DataUnitsWritten);
        BinaryPrimitives.WriteUInt64LittleEndian(d[64..], HostReadCommands);
        BinaryPrimitives.WriteUInt64LittleEndian(d[80..], HostWriteCommands);
        BinaryPrimitives.WriteUInt64LittleEndian(d[128..], PowerOnHours);
    }

    public static SmartLog Read(ReadOnlySpan<byte> s) => new(
        s[0],
        BinaryPrimitives.ReadUInt16LittleEndian(s[1..]),
        s[3],
        s[4],
        s[5],
        BinaryPrimitives.ReadUInt64LittleEndian(s[32..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[48..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[64..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[80..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[128..]));
}

/// <summary>
/// Changed Namespace List log, log id 04h (NVMe base 2.0, 5.16.1.5): up to 1024 NSIDs; more than that is reported as
/// a single FFFFFFFFh entry.
/// </summary>
public static class ChangedNamespaceList
{
    public const int Size = 4096;
    public const int MaxEntries = Size / 4;

    public static void Write(Span<byte> destination, IReadOnlyCollection<uint> namespaceIds)
    {
        destination[..Size].Clear();
        if (namespaceIds.Count > MaxEntries)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(destination, 0xFFFFFFFF);
            return;
        }

        var offset = 0;
        foreach (var nsid in namespaceIds.Order())
        {
            BinaryPrimitives.WriteUInt32LittleEndian(destination[offset..], nsid);
            offset += 4;
        }
    }
}

/// <summary>Error Information log entries, log id 01h (NVMe base 2.0, 5.16.1.2, Figure 206): 64 bytes each.</summary>
public static class ErrorLog
{
    public const int EntrySize = 64;
}

/// <summary>Asynchronous event types and information (NVMe base 2.0, 5.2, Figures 146–150).</summary>
public static class AsyncEvent
{
    public const byte TypeError = 0;
    public const byte TypeSmartHealth = 1;
    public const byte TypeNotice = 2;
    /// <summary>I/O Command Specific Status (110b); information 00h is Reservation Log Page Available (NVMe base 2.0, Figure 151).</summary>
    public const byte TypeIoCommandSpecific = 6;
    public const byte IoSpecificReservationLogPageAvailable = 0x00;

    public const byte NoticeNamespaceAttributeChanged = 0x00;
    public const byte NoticeFirmwareActivation = 0x01;
    public const byte NoticeAnaChange = 0x03;
    public const byte NoticeDiscoveryLogChange = 0xF0;

    /// <summary>Completion DW0 of an Asynchronous Event Request: type | info &lt;&lt; 8 | log page id &lt;&lt; 16.</summary>
    public static uint CompletionDw0(byte type, byte information, byte logPageId) =>
        type | ((uint)information << 8) | ((uint)logPageId << 16);
}
