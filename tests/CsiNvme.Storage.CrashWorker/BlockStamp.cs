using System.Buffers.Binary;
using System.IO.Hashing;

namespace CsiNvme.Storage.CrashWorker;

/// <summary>
/// A self-describing 4 KiB block: which volume wrote it, at which offset, with which generation, under a CRC. A block
/// read back after a crash either is all zeros, or names exactly one write; a torn, misplaced or stale block shows.
/// </summary>
public static class BlockStamp
{
    public const int Size = 4096;
    private const ulong Magic = 0x4B4C42485341524B; // "KRASHBLK"
    private const int CrcOffset = Size - 4;

    public static void Write(Span<byte> block, Guid writer, long offset, long generation)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(block, Magic);
        writer.TryWriteBytes(block[8..]);
        BinaryPrimitives.WriteInt64LittleEndian(block[24..], offset);
        BinaryPrimitives.WriteInt64LittleEndian(block[32..], generation);
        // Filler that differs per block, so a block copied from elsewhere cannot pass by sharing a constant body.
        var state = (ulong)generation * 0x9E3779B97F4A7C15UL ^ (ulong)offset;
        for (var at = 40; at + 8 <= CrcOffset; at += 8)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(block[at..], state);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(block[CrcOffset..], Crc32.HashToUInt32(block[..CrcOffset]));
    }

    public static bool IsZero(ReadOnlySpan<byte> block) => !block.ContainsAnyExcept((byte)0);

    /// <summary>Decodes a non-zero block; false when its CRC or magic is wrong (torn or garbage).</summary>
    public static bool TryRead(ReadOnlySpan<byte> block, out Guid writer, out long offset, out long generation)
    {
        writer = default;
        offset = -1;
        generation = -1;
        if (BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(block[CrcOffset..]) != Crc32.HashToUInt32(block[..CrcOffset]))
        {
            return false;
        }

        writer = new Guid(block.Slice(8, 16));
        offset = BinaryPrimitives.ReadInt64LittleEndian(block[24..]);
        generation = BinaryPrimitives.ReadInt64LittleEndian(block[32..]);
        return true;
    }
}
