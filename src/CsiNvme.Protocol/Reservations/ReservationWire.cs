using System.Buffers.Binary;

namespace CsiNvme.Protocol.Reservations;

/// <summary>Reservation types (NVM command set 1.0, Figure 66 RTYPE; NVMe base 2.0, 8.19, Figure 425).</summary>
public enum ReservationType : byte
{
    None = 0,
    WriteExclusive = 1,
    ExclusiveAccess = 2,
    WriteExclusiveRegistrantsOnly = 3,
    ExclusiveAccessRegistrantsOnly = 4,
    WriteExclusiveAllRegistrants = 5,
    ExclusiveAccessAllRegistrants = 6,
}

/// <summary>Reservation Register Action, CDW10 bits 2:0 (NVM command set 1.0, 3.2.5, Figure 60).</summary>
public enum ReservationRegisterAction : byte
{
    Register = 0,
    Unregister = 1,
    Replace = 2,
}

/// <summary>Reservation Acquire Action, CDW10 bits 2:0 (NVM command set 1.0, 3.2.4, Figure 57).</summary>
public enum ReservationAcquireAction : byte
{
    Acquire = 0,
    Preempt = 1,
    PreemptAndAbort = 2,
}

/// <summary>Reservation Release Action, CDW10 bits 2:0 (NVM command set 1.0, 3.2.6, Figure 63).</summary>
public enum ReservationReleaseAction : byte
{
    Release = 0,
    Clear = 1,
}

/// <summary>Reservation Notification Log Page Type (NVMe base 2.0, Figure 250).</summary>
public enum ReservationNotificationType : byte
{
    Empty = 0,
    RegistrationPreempted = 1,
    ReservationReleased = 2,
    ReservationPreempted = 3,
}

/// <summary>
/// The CDW10 fields the three reservation commands share (NVM command set 1.0, 3.2.4–3.2.6): the action (bits 2:0),
/// Ignore Existing Key (bit 3), the reservation type (bits 15:8, Acquire and Release) and Change Persist Through Power
/// Loss State (bits 31:30, Register).
/// </summary>
public readonly record struct ReservationCommandFields(byte Action, bool IgnoreExistingKey, byte Type, byte ChangePtpl)
{
    public static ReservationCommandFields From(uint cdw10) =>
        new((byte)(cdw10 & 0x7), (cdw10 & 0x8) != 0, (byte)(cdw10 >> 8), (byte)(cdw10 >> 30));

    public uint ToCdw10() => (uint)(Action & 0x7) | (IgnoreExistingKey ? 0x8u : 0) | ((uint)Type << 8) | ((uint)(ChangePtpl & 0x3) << 30);
}

/// <summary>
/// The data of Reservation Register (CRKEY@0, NRKEY@8; 16 bytes), Acquire (CRKEY@0, PRKEY@8; 16 bytes) and Release
/// (CRKEY@0; 8 bytes): two little-endian 64-bit keys, the second absent for Release.
/// </summary>
public readonly record struct ReservationKeys(ulong Current, ulong Other)
{
    public const int RegisterOrAcquireSize = 16;
    public const int ReleaseSize = 8;

    public static ReservationKeys Read(ReadOnlySpan<byte> data) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(data),
        data.Length >= 16 ? BinaryPrimitives.ReadUInt64LittleEndian(data[8..]) : 0);

    public void Write(Span<byte> data)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(data, Current);
        if (data.Length >= 16)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data[8..], Other);
        }
    }
}

/// <summary>One registrant as the extended Reservation Report lists it.</summary>
public readonly record struct RegisteredHost(ushort ControllerId, bool HoldsReservation, ulong Key, Guid HostId);

/// <summary>
/// Reservation Status Extended Data Structure, the Reservation Report with EDS set (NVM command set 1.0, 3.2.5,
/// Figures 62–64): GEN@0 (32-bit), RTYPE@4, REGCTL@5 (16-bit), PTPLS@9, then from byte 64 one 64-byte Registered
/// Controller Extended Data Structure per registrant: CNTLID@0, RCSTS@2 (bit 0: holds the reservation), RKEY@8 and the
/// 128-bit HOSTID@16. REGCTL counts every registrant even when the transfer is too short to hold them all.
/// </summary>
public static class ReservationStatusExtended
{
    public const int HeaderSize = 64;
    public const int EntrySize = 64;

    /// <summary>CNTLID of an entry in a subsystem with the dynamic controller model (NVMe base 2.0, Figure 64).</summary>
    public const ushort DynamicControllerId = 0xFFFF;

    /// <summary>Writes as much of the structure as fits in <paramref name="destination"/> (which is cleared first).</summary>
    public static void Write(Span<byte> destination, uint generation, ReservationType type, bool persistThroughPowerLoss, IReadOnlyList<RegisteredHost> hosts)
    {
        destination.Clear();
        if (destination.Length < HeaderSize)
        {
            return;
        }

        BinaryPrimitives.WriteUInt32LittleEndian(destination, generation);
        destination[4] = (byte)type;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[5..], (ushort)hosts.Count);
        destination[9] = persistThroughPowerLoss ? (byte)1 : (byte)0;
        for (var i = 0; i < hosts.Count; i++)
        {
            var at = HeaderSize + i * EntrySize;
            if (at + EntrySize > destination.Length)
            {
                break;
            }

            var entry = destination.Slice(at, EntrySize);
            var host = hosts[i];
            BinaryPrimitives.WriteUInt16LittleEndian(entry, host.ControllerId);
            entry[2] = host.HoldsReservation ? (byte)1 : (byte)0;
            BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], host.Key);
            host.HostId.TryWriteBytes(entry[16..], bigEndian: true, out _);
        }
    }

    /// <summary>Parses a report: the header and the entries the data holds.</summary>
    public static (uint Generation, ReservationType Type, int RegisteredCount, bool PersistThroughPowerLoss, List<RegisteredHost> Hosts) Parse(ReadOnlySpan<byte> data)
    {
        var generation = BinaryPrimitives.ReadUInt32LittleEndian(data);
        var type = (ReservationType)data[4];
        int count = BinaryPrimitives.ReadUInt16LittleEndian(data[5..]);
        var ptpl = (data[9] & 1) != 0;
        var hosts = new List<RegisteredHost>();
        for (var i = 0; i < count && HeaderSize + (i + 1) * EntrySize <= data.Length; i++)
        {
            var entry = data.Slice(HeaderSize + i * EntrySize, EntrySize);
            hosts.Add(new RegisteredHost(
                BinaryPrimitives.ReadUInt16LittleEndian(entry),
                (entry[2] & 1) != 0,
                BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]),
                new Guid(entry.Slice(16, 16), bigEndian: true)));
        }

        return (generation, type, count, ptpl, hosts);
    }
}

/// <summary>
/// Reservation Notification log page, log id 80h (NVMe base 2.0, 5.16.1.25, Figure 249), 64 bytes: Log Page Count@0
/// (64-bit, never 0 for a real entry; a gap means entries were lost), type@8, Number of Available Log Pages@9 (the
/// entries still queued after this one, at most 255), NSID@12. All zeros when nothing is queued.
/// </summary>
public readonly record struct ReservationNotificationEntry(ulong Count, ReservationNotificationType Type, byte Available, uint NamespaceId)
{
    public const int Size = 64;

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        d.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(d, Count);
        d[8] = (byte)Type;
        d[9] = Available;
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], NamespaceId);
    }

    public static ReservationNotificationEntry Read(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s),
        (ReservationNotificationType)s[8],
        s[9],
        BinaryPrimitives.ReadUInt32LittleEndian(s[12..]));
}
