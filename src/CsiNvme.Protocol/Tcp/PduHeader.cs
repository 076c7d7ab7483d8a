using System.Buffers.Binary;

namespace CsiNvme.Protocol.Tcp;

/// <summary>
/// The 8-byte common header of every NVMe/TCP PDU (TCP 1.0, 3.6.1): PDU-type, FLAGS, HLEN, PDO, PLEN (LE).
/// </summary>
public readonly record struct PduHeader(PduType Type, PduFlags Flags, byte HeaderLength, byte DataOffset, uint PduLength)
{
    public const int Size = 8;

    /// <summary>Length of a header or data digest (CRC32C).</summary>
    public const int DigestSize = 4;

    public static PduHeader Read(ReadOnlySpan<byte> source) => new(
        (PduType)source[0],
        (PduFlags)source[1],
        source[2],
        source[3],
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]));

    public void Write(Span<byte> destination)
    {
        destination[0] = (byte)Type;
        destination[1] = (byte)Flags;
        destination[2] = HeaderLength;
        destination[3] = DataOffset;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], PduLength);
    }

    /// <summary>The HLEN each PDU type must carry (TCP 1.0, Figures 24–31).</summary>
    public static int ExpectedHeaderLength(PduType type) => type switch
    {
        PduType.ICReq or PduType.ICResp => 128,
        PduType.H2CTermReq or PduType.C2HTermReq => 24,
        PduType.CapsuleCmd => 72,
        PduType.CapsuleResp or PduType.H2CData or PduType.C2HData or PduType.R2T => 24,
        _ => -1,
    };
}
