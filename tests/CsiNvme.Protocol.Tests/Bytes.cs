namespace CsiNvme.Protocol.Tests;

/// <summary>Little-endian field access for building and checking wire images by hand.</summary>
internal static class Bytes
{
    public static ushort U16(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(s[offset..]);

    public static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]);

    public static ulong U64(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(s[offset..]);

    public static void Put16(Span<byte> s, int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(s[offset..], value);

    public static void Put32(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], value);

    public static void Put64(Span<byte> s, int offset, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(s[offset..], value);

    public static void PutAscii(Span<byte> s, int offset, string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            s[offset + i] = (byte)text[i];
        }
    }

    /// <summary>Indexes of bytes that are not zero, to prove a writer touched nothing but the fields it owns.</summary>
    public static List<int> NonZeroOffsets(ReadOnlySpan<byte> s)
    {
        var list = new List<int>();
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] != 0)
            {
                list.Add(i);
            }
        }

        return list;
    }
}
