using System.Buffers.Binary;
using System.Numerics;

namespace CsiNvme.Storage.Thin;

/// <summary>CRC32C of journal records, with the CPU's CRC32 instructions through <see cref="BitOperations.Crc32C(uint, ulong)"/>.</summary>
internal static class Crc32CChecksum
{
    public static uint Compute(ReadOnlySpan<byte> data)
    {
        var crc = uint.MaxValue;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        foreach (var b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }
}
