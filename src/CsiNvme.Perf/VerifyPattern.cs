using System.Buffers.Binary;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Perf;

/// <summary>
/// Self-checking block contents for --verify. Every logical block carries a header: magic@0, CRC32C of bytes 8..end@4,
/// its own byte offset on the namespace@8 and a seed@16, then bytes derived from the seed. A block read back is good
/// when the checksum holds and the offset is its own (so misdirected or torn I/O is caught); an all-zero block was
/// never written.
/// </summary>
public static class VerifyPattern
{
    public const uint Magic = 0x564E5343; // "CSNV"

    public static void Fill(Span<byte> buffer, long byteOffset, int blockSize, ulong seed)
    {
        for (var start = 0; start < buffer.Length; start += blockSize)
        {
            var block = buffer.Slice(start, blockSize);
            var blockSeed = seed ^ (ulong)(byteOffset + start) * 0x9E3779B97F4A7C15UL;
            BinaryPrimitives.WriteUInt32LittleEndian(block, Magic);
            BinaryPrimitives.WriteInt64LittleEndian(block[8..], byteOffset + start);
            BinaryPrimitives.WriteUInt64LittleEndian(block[16..], blockSeed);
            var state = blockSeed | 1;
            for (var i = 24; i + 8 <= block.Length; i += 8)
            {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                BinaryPrimitives.WriteUInt64LittleEndian(block[i..], state);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(block[4..], Crc32C.Compute(block[8..]));
        }
    }

    public enum Outcome
    {
        Good,
        Unwritten,
        Corrupt,
    }

    /// <summary>Checks every block; returns the worst outcome and, for a corrupt block, where and why.</summary>
    public static Outcome Check(ReadOnlySpan<byte> buffer, long byteOffset, int blockSize, out string? problem, out int goodBlocks, out int unwrittenBlocks)
    {
        problem = null;
        goodBlocks = unwrittenBlocks = 0;
        var worst = Outcome.Good;
        for (var start = 0; start < buffer.Length; start += blockSize)
        {
            var block = buffer.Slice(start, blockSize);
            var magic = BinaryPrimitives.ReadUInt32LittleEndian(block);
            if (magic == 0 && !block.ContainsAnyExcept((byte)0))
            {
                unwrittenBlocks++;
                if (worst == Outcome.Good)
                {
                    worst = Outcome.Unwritten;
                }

                continue;
            }

            var at = byteOffset + start;
            string? error = null;
            if (magic != Magic)
            {
                error = $"block at byte {at}: no pattern (magic {magic:X8})";
            }
            else if (BinaryPrimitives.ReadInt64LittleEndian(block[8..]) is var written && written != at)
            {
                error = $"block at byte {at}: holds the block written for byte {written}";
            }
            else if (BinaryPrimitives.ReadUInt32LittleEndian(block[4..]) != Crc32C.Compute(block[8..]))
            {
                error = $"block at byte {at}: checksum mismatch";
            }

            if (error is not null)
            {
                problem ??= error;
                worst = Outcome.Corrupt;
            }
            else
            {
                goodBlocks++;
            }
        }

        return worst;
    }
}
