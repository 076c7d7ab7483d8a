using System.Buffers.Binary;

namespace CsiNvme.Protocol.Tcp;

/// <summary>ICReq (TCP 1.0, 3.6.2.2, Figure 26): sent once by the host to open a connection; never digested.</summary>
public readonly record struct ICReq(ushort ProtocolFormatVersion, byte HostPduDataAlignment, bool HeaderDigest, bool DataDigest, uint MaxR2T)
{
    public const int Length = 128;

    public static ICReq Read(ReadOnlySpan<byte> pdu) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(pdu[8..]),
        pdu[10],
        (pdu[11] & 0x01) != 0,
        (pdu[11] & 0x02) != 0,
        BinaryPrimitives.ReadUInt32LittleEndian(pdu[12..]));

    public void Write(Span<byte> pdu)
    {
        pdu[..Length].Clear();
        new PduHeader(PduType.ICReq, PduFlags.None, Length, 0, Length).Write(pdu);
        BinaryPrimitives.WriteUInt16LittleEndian(pdu[8..], ProtocolFormatVersion);
        pdu[10] = HostPduDataAlignment;
        pdu[11] = (byte)((HeaderDigest ? 1 : 0) | (DataDigest ? 2 : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[12..], MaxR2T);
    }
}

/// <summary>ICResp (TCP 1.0, 3.6.2.3, Figure 27). MAXH2CDATA must be a multiple of 4 and at least 4096.</summary>
public readonly record struct ICResp(ushort ProtocolFormatVersion, byte ControllerPduDataAlignment, bool HeaderDigest, bool DataDigest, uint MaxH2CData)
{
    public const int Length = 128;

    public static ICResp Read(ReadOnlySpan<byte> pdu) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(pdu[8..]),
        pdu[10],
        (pdu[11] & 0x01) != 0,
        (pdu[11] & 0x02) != 0,
        BinaryPrimitives.ReadUInt32LittleEndian(pdu[12..]));

    public void Write(Span<byte> pdu)
    {
        pdu[..Length].Clear();
        new PduHeader(PduType.ICResp, PduFlags.None, Length, 0, Length).Write(pdu);
        BinaryPrimitives.WriteUInt16LittleEndian(pdu[8..], ProtocolFormatVersion);
        pdu[10] = ControllerPduDataAlignment;
        pdu[11] = (byte)((HeaderDigest ? 1 : 0) | (DataDigest ? 2 : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[12..], MaxH2CData);
    }
}

/// <summary>
/// The PDU-specific header shared by H2CData, C2HData and R2T (TCP 1.0, Figures 28, 29, 31): CCCID@8, TTAG@10
/// (reserved in C2HData), DATAO/R2TO@12, DATAL/R2TL@16, reserved to byte 24.
/// </summary>
public readonly record struct DataTransferHeader(ushort CommandId, ushort TransferTag, uint Offset, uint Length)
{
    public const int Length24 = 24;

    public static DataTransferHeader Read(ReadOnlySpan<byte> pdu) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(pdu[8..]),
        BinaryPrimitives.ReadUInt16LittleEndian(pdu[10..]),
        BinaryPrimitives.ReadUInt32LittleEndian(pdu[12..]),
        BinaryPrimitives.ReadUInt32LittleEndian(pdu[16..]));

    /// <summary>Writes the common header and this header; <paramref name="pdo"/> and <paramref name="plen"/> describe the data that follows.</summary>
    public void Write(Span<byte> pdu, PduType type, PduFlags flags, byte pdo, uint plen)
    {
        new PduHeader(type, flags, Length24, pdo, plen).Write(pdu);
        BinaryPrimitives.WriteUInt16LittleEndian(pdu[8..], CommandId);
        BinaryPrimitives.WriteUInt16LittleEndian(pdu[10..], TransferTag);
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[12..], Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[16..], Length);
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[20..], 0);
    }
}

/// <summary>
/// H2CTermReq / C2HTermReq (TCP 1.0, 3.6.2.4, Figure 30): FES@8, FEI@10, reserved to 24, then up to 128 bytes
/// of the PDU header in error. PLEN is 24..152.
/// </summary>
public readonly record struct TermReq(TermReqFatalError FatalErrorStatus, uint FatalErrorInformation)
{
    public const int HeaderLength = 24;
    public const int MaxErrorData = 128;

    public static TermReq Read(ReadOnlySpan<byte> pdu) => new(
        (TermReqFatalError)BinaryPrimitives.ReadUInt16LittleEndian(pdu[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(pdu[10..]));

    /// <summary>Writes a TermReq carrying <paramref name="offendingHeader"/> (truncated to 128 bytes); returns its length.</summary>
    public int Write(Span<byte> pdu, PduType type, ReadOnlySpan<byte> offendingHeader)
    {
        var data = offendingHeader.Length > MaxErrorData ? offendingHeader[..MaxErrorData] : offendingHeader;
        var plen = HeaderLength + data.Length;
        pdu[..HeaderLength].Clear();
        // PDO is reserved in TermReq PDUs (TCP 1.0, 3.6.2.4): the error data always follows the 24-byte header.
        // SPDK sends 0 and FreeBSD's receiver rejects anything else.
        new PduHeader(type, PduFlags.None, HeaderLength, 0, (uint)plen).Write(pdu);
        BinaryPrimitives.WriteUInt16LittleEndian(pdu[8..], (ushort)FatalErrorStatus);
        BinaryPrimitives.WriteUInt32LittleEndian(pdu[10..], FatalErrorInformation);
        data.CopyTo(pdu[HeaderLength..]);
        return plen;
    }
}
