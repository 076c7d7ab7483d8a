using System.Buffers.Binary;

namespace CsiNvme.Protocol.Tcp;

/// <summary>
/// Header and data digests: CRC32C (Castagnoli), initial value all ones, final XOR all ones, stored little-endian
/// (TCP 1.0, 3.6.2.2). System.IO.Hashing uses the SSE4.2 / ARM CRC instructions where present.
/// </summary>
public static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => System.IO.Hashing.Crc32.HashToUInt32(System.IO.Hashing.Crc32ParameterSet.Crc32C, data);

    /// <summary>Computes the digest of <paramref name="data"/> and stores it at <paramref name="destination"/>.</summary>
    public static void ComputeInto(ReadOnlySpan<byte> data, Span<byte> destination) =>
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Compute(data));

    /// <summary>True when the 4 bytes at <paramref name="digest"/> are the digest of <paramref name="data"/>.</summary>
    public static bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> digest) =>
        BinaryPrimitives.ReadUInt32LittleEndian(digest) == Compute(data);
}
