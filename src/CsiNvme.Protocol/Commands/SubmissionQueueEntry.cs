using System.Buffers.Binary;

namespace CsiNvme.Protocol.Commands;

/// <summary>
/// A 64-byte submission queue entry (NVMe base 2.0, 4.2, Figure 88): CDW0 (opcode, flags, CID), NSID@4, CDW2@8,
/// CDW3@12, MPTR@16, DPTR@24 (an SGL descriptor over fabrics), CDW10..15@40..63. Fabrics commands reuse byte 4 as
/// FCTYPE (NVMe-oF 1.1, Figure 12).
/// </summary>
public readonly struct SubmissionQueueEntry
{
    public const int Size = 64;

    public SubmissionQueueEntry(byte opcode, byte flags, ushort commandId, uint namespaceId, SglDescriptor dataPointer,
        uint cdw10, uint cdw11, uint cdw12, uint cdw13, uint cdw14, uint cdw15, uint cdw2 = 0, uint cdw3 = 0, ulong metadataPointer = 0)
    {
        Opcode = opcode;
        Flags = flags;
        CommandId = commandId;
        NamespaceId = namespaceId;
        DataPointer = dataPointer;
        Cdw2 = cdw2;
        Cdw3 = cdw3;
        MetadataPointer = metadataPointer;
        Cdw10 = cdw10;
        Cdw11 = cdw11;
        Cdw12 = cdw12;
        Cdw13 = cdw13;
        Cdw14 = cdw14;
        Cdw15 = cdw15;
    }

    public byte Opcode { get; }

    /// <summary>CDW0 bits 15:8: FUSE (1:0) and PSDT (7:6). Fabrics hosts send PSDT 01b (0x40, Linux NVME_CMD_SGL_METABUF): SGL for data.</summary>
    public byte Flags { get; }

    public ushort CommandId { get; }

    /// <summary>NSID for NVMe commands; for Fabrics commands byte 4 is FCTYPE.</summary>
    public uint NamespaceId { get; }

    public byte FabricsCommandType => (byte)NamespaceId;

    public uint Cdw2 { get; }

    public uint Cdw3 { get; }

    public ulong MetadataPointer { get; }

    public SglDescriptor DataPointer { get; }

    public uint Cdw10 { get; }

    public uint Cdw11 { get; }

    public uint Cdw12 { get; }

    public uint Cdw13 { get; }

    public uint Cdw14 { get; }

    public uint Cdw15 { get; }

    public static SubmissionQueueEntry Read(ReadOnlySpan<byte> sqe)
    {
        sqe = sqe[..Size];
        return new SubmissionQueueEntry(
            sqe[0],
            sqe[1],
            BinaryPrimitives.ReadUInt16LittleEndian(sqe[2..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[4..]),
            SglDescriptor.Read(sqe[24..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[40..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[44..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[48..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[52..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[56..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[60..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(sqe[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(sqe[16..]));
    }

    public void Write(Span<byte> sqe)
    {
        sqe = sqe[..Size];
        sqe[0] = Opcode;
        sqe[1] = Flags;
        BinaryPrimitives.WriteUInt16LittleEndian(sqe[2..], CommandId);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[4..], NamespaceId);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[8..], Cdw2);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[12..], Cdw3);
        BinaryPrimitives.WriteUInt64LittleEndian(sqe[16..], MetadataPointer);
        DataPointer.Write(sqe[24..]);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[40..], Cdw10);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[44..], Cdw11);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[48..], Cdw12);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[52..], Cdw13);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[56..], Cdw14);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[60..], Cdw15);
    }

    // NVM command fields (NVM command set 1.0, 3.2.4 / 3.2.6): SLBA in CDW10-11, NLB (0-based) in CDW12 15:0, FUA CDW12 bit 30.
    public ulong StartingLba => Cdw10 | ((ulong)Cdw11 << 32);

    public uint BlockCount => (Cdw12 & 0xFFFF) + 1;

    public bool ForceUnitAccess => (Cdw12 & (1u << 30)) != 0;
}
