using System.Buffers.Binary;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Target.Io.Reservations;

/// <summary>
/// The persisted form of a namespace's <see cref="ReservationState"/>: a small versioned binary blob, little-endian.
/// <code>
/// 0   magic "CNRS"
/// 4   format version (u16, 1)
/// 6   flags (u8: bit 0 PTPL)
/// 7   reservation type (u8, 0 = none)
/// 8   generation (u32)
/// 12  holder host id (16 bytes, RFC 4122 order; zero unless the type has a single holder)
/// 28  registrant count (u16)
/// 30  registrants: host id (16 bytes) + key (u64), 24 bytes each, in registration order
/// end CRC32C of everything before it (u32)
/// </code>
/// Decoding refuses anything malformed or inconsistent (a holder that is not a registrant, a duplicate host) with
/// <see cref="InvalidDataException"/>: a reservation that fences a host must never be silently dropped.
/// </summary>
public static class ReservationStateCodec
{
    public const ushort FormatVersion = 1;

    /// <summary>More registrants than any controller can report (REGCTL is 16 bits).</summary>
    public const int MaxRegistrants = ushort.MaxValue;

    private const int HeaderSize = 30;
    private const int RegistrantSize = 24;
    private const int ChecksumSize = 4;
    private static ReadOnlySpan<byte> Magic => "CNRS"u8;

    public static byte[] Encode(ReservationState state)
    {
        var registrants = state.Registrants;
        var blob = new byte[HeaderSize + registrants.Count * RegistrantSize + ChecksumSize];
        var span = blob.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], FormatVersion);
        span[6] = state.PersistThroughPowerLoss ? (byte)1 : (byte)0;
        span[7] = (byte)state.Type;
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], state.Generation);
        state.Holder.TryWriteBytes(span[12..], bigEndian: true, out _);
        BinaryPrimitives.WriteUInt16LittleEndian(span[28..], (ushort)registrants.Count);
        for (var i = 0; i < registrants.Count; i++)
        {
            var entry = span.Slice(HeaderSize + i * RegistrantSize, RegistrantSize);
            registrants[i].HostId.TryWriteBytes(entry, bigEndian: true, out _);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[16..], registrants[i].Key);
        }

        Crc32C.ComputeInto(span[..^ChecksumSize], span[^ChecksumSize..]);
        return blob;
    }

    public static ReservationState Decode(ReadOnlySpan<byte> blob)
    {
        if (blob.Length < HeaderSize + ChecksumSize || !blob[..4].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"not a reservation state ({blob.Length} bytes without the CNRS header)");
        }

        if (!Crc32C.Verify(blob[..^ChecksumSize], blob[^ChecksumSize..]))
        {
            throw new InvalidDataException("the reservation state is corrupt (checksum mismatch)");
        }

        var version = BinaryPrimitives.ReadUInt16LittleEndian(blob[4..]);
        if (version != FormatVersion)
        {
            throw new InvalidDataException($"reservation state format {version} is not supported (this program reads {FormatVersion})");
        }

        var flags = blob[6];
        var type = (ReservationType)blob[7];
        if ((flags & ~1) != 0 || type > ReservationType.ExclusiveAccessAllRegistrants)
        {
            throw new InvalidDataException($"reservation state has unknown flags {flags:X2} or type {(byte)type}");
        }

        var generation = BinaryPrimitives.ReadUInt32LittleEndian(blob[8..]);
        var holder = new Guid(blob.Slice(12, 16), bigEndian: true);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(blob[28..]);
        if (blob.Length != HeaderSize + count * RegistrantSize + ChecksumSize)
        {
            throw new InvalidDataException($"reservation state of {blob.Length} bytes cannot hold {count} registrants");
        }

        var registrants = new List<Registrant>(count);
        var seen = new HashSet<Guid>();
        for (var i = 0; i < count; i++)
        {
            var entry = blob.Slice(HeaderSize + i * RegistrantSize, RegistrantSize);
            var host = new Guid(entry[..16], bigEndian: true);
            if (!seen.Add(host))
            {
                throw new InvalidDataException($"reservation state lists host {host} twice");
            }

            registrants.Add(new Registrant(host, BinaryPrimitives.ReadUInt64LittleEndian(entry[16..])));
        }

        var singleHolder = type != ReservationType.None && !ReservationState.IsAllRegistrants(type);
        if (singleHolder ? !seen.Contains(holder) : holder != Guid.Empty)
        {
            throw new InvalidDataException($"reservation state has holder {holder}, which does not fit type {type} and its registrants");
        }

        if (type != ReservationType.None && count == 0)
        {
            throw new InvalidDataException($"reservation state holds a {type} reservation without registrants");
        }

        return ReservationState.From(type, holder, generation, (flags & 1) != 0, registrants);
    }
}
