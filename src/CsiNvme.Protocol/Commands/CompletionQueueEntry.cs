using System.Buffers.Binary;

namespace CsiNvme.Protocol.Commands;

/// <summary>
/// A 16-byte completion queue entry (NVMe base 2.0, 4.6, Figure 89): DW0@0, DW1@4, SQHD@8, SQID@10, CID@12,
/// status@14. The CID is echoed exactly: Linux keeps a generation counter in its top bits.
/// </summary>
public readonly record struct CompletionQueueEntry(uint Dw0, uint Dw1, ushort SubmissionQueueHead, ushort SubmissionQueueId, ushort CommandId, NvmeStatus Status)
{
    public const int Size = 16;

    public static CompletionQueueEntry Read(ReadOnlySpan<byte> cqe) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(cqe),
        BinaryPrimitives.ReadUInt32LittleEndian(cqe[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(cqe[8..]),
        BinaryPrimitives.ReadUInt16LittleEndian(cqe[10..]),
        BinaryPrimitives.ReadUInt16LittleEndian(cqe[12..]),
        NvmeStatus.FromStatusField(BinaryPrimitives.ReadUInt16LittleEndian(cqe[14..])));

    public void Write(Span<byte> cqe)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(cqe, Dw0);
        BinaryPrimitives.WriteUInt32LittleEndian(cqe[4..], Dw1);
        BinaryPrimitives.WriteUInt16LittleEndian(cqe[8..], SubmissionQueueHead);
        BinaryPrimitives.WriteUInt16LittleEndian(cqe[10..], SubmissionQueueId);
        BinaryPrimitives.WriteUInt16LittleEndian(cqe[12..], CommandId);
        BinaryPrimitives.WriteUInt16LittleEndian(cqe[14..], Status.ToStatusField());
    }
}
