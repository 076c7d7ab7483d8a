using System.Text;

namespace CsiNvme.Protocol;

/// <summary>Fixed-width text fields of NVMe data structures.</summary>
public static class AsciiField
{
    /// <summary>Writes ASCII text left-justified and padded with spaces (Identify SN, MN, FR; NVMe base 2.0, 1.5).</summary>
    public static void WriteSpacePadded(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        var length = Math.Min(text.Length, field.Length);
        for (var i = 0; i < length; i++)
        {
            var c = text[i];
            field[i] = c is >= (char)0x20 and < (char)0x7F ? (byte)c : (byte)'?';
        }
    }

    /// <summary>Writes UTF-8 text null-terminated and zero-padded (NQN fields).</summary>
    public static void WriteNullPadded(Span<byte> field, string text)
    {
        field.Clear();
        var bytes = Encoding.UTF8.GetByteCount(text);
        if (bytes >= field.Length)
        {
            throw new ArgumentException($"'{text}' does not fit a {field.Length}-byte field", nameof(text));
        }

        Encoding.UTF8.GetBytes(text, field);
    }

    public static string ReadNullTerminated(ReadOnlySpan<byte> field)
    {
        var end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    public static string ReadSpacePadded(ReadOnlySpan<byte> field) => Encoding.ASCII.GetString(field).TrimEnd(' ', '\0');
}
