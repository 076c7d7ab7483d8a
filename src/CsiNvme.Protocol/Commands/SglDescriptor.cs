using System.Buffers.Binary;

namespace CsiNvme.Protocol.Commands;

/// <summary>
/// A 16-byte SGL descriptor (NVMe base 2.0, 4.1.8, Figure 117): address@0, length@8, identifier@15 with the
/// descriptor type in bits 7:4 and the sub type in bits 3:0.
/// </summary>
public readonly record struct SglDescriptor(ulong Address, uint Length, byte Identifier)
{
    public const int Size = 16;

    /// <summary>Data Block, sub type Offset: data carried in the capsule at <see cref="Address"/> (NVMe-oF 1.1, 2.3.2).</summary>
    public const byte InCapsuleDataBlock = 0x01;

    /// <summary>Transport SGL Data Block, sub type Transport Specific: data moves in H2CData/C2HData PDUs (TCP 1.0, 3.3.2).</summary>
    public const byte TransportDataBlock = 0x5A;

    public int DescriptorType => Identifier >> 4;

    public int SubType => Identifier & 0x0F;

    public static SglDescriptor Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
        source[15]);

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Address);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Length);
        destination[12] = 0;
        destination[13] = 0;
        destination[14] = 0;
        destination[15] = Identifier;
    }
}
