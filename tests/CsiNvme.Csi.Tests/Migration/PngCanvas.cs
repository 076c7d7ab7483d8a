using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>
/// An RGB raster with the few drawing operations a line chart needs, written as a PNG (RFC 2083: IHDR, one IDAT of
/// zlib-compressed scanlines with filter 0, IEND).
/// </summary>
internal sealed class PngCanvas
{
    private readonly byte[] _pixels;

    public PngCanvas(int width, int height, uint background = 0xFFFFFF)
    {
        Width = width;
        Height = height;
        _pixels = new byte[width * height * 3];
        FillRect(0, 0, width, height, background);
    }

    public int Width { get; }

    public int Height { get; }

    public void SetPixel(int x, int y, uint rgb)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
        {
            return;
        }

        var i = (y * Width + x) * 3;
        _pixels[i] = (byte)(rgb >> 16);
        _pixels[i + 1] = (byte)(rgb >> 8);
        _pixels[i + 2] = (byte)rgb;
    }

    /// <summary>Mixes <paramref name="rgb"/> into the pixel with weight <paramref name="alpha"/> (0..1), for shaded bands.</summary>
    public void BlendPixel(int x, int y, uint rgb, double alpha)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
        {
            return;
        }

        var i = (y * Width + x) * 3;
        for (var c = 0; c < 3; c++)
        {
            var src = (byte)(rgb >> (16 - 8 * c));
            _pixels[i + c] = (byte)Math.Round(_pixels[i + c] * (1 - alpha) + src * alpha);
        }
    }

    public void FillRect(int x, int y, int width, int height, uint rgb, double alpha = 1)
    {
        for (var row = Math.Max(0, y); row < Math.Min(Height, y + height); row++)
        {
            for (var column = Math.Max(0, x); column < Math.Min(Width, x + width); column++)
            {
                if (alpha >= 1)
                {
                    SetPixel(column, row, rgb);
                }
                else
                {
                    BlendPixel(column, row, rgb, alpha);
                }
            }
        }
    }

    /// <summary>A line <paramref name="thickness"/> pixels wide (Bresenham, widened by a square brush).</summary>
    public void Line(double x0, double y0, double x1, double y1, uint rgb, int thickness = 1, int dash = 0)
    {
        int ax = (int)Math.Round(x0), ay = (int)Math.Round(y0), bx = (int)Math.Round(x1), by = (int)Math.Round(y1);
        int dx = Math.Abs(bx - ax), dy = -Math.Abs(by - ay), sx = ax < bx ? 1 : -1, sy = ay < by ? 1 : -1;
        var error = dx + dy;
        var step = 0;
        while (true)
        {
            if (dash == 0 || step / dash % 2 == 0)
            {
                Brush(ax, ay, rgb, thickness);
            }

            step++;
            if (ax == bx && ay == by)
            {
                break;
            }

            var e2 = 2 * error;
            if (e2 >= dy)
            {
                error += dy;
                ax += sx;
            }

            if (e2 <= dx)
            {
                error += dx;
                ay += sy;
            }
        }
    }

    /// <summary>Draws text with its top-left corner at (x, y); <paramref name="scale"/> enlarges each font pixel.</summary>
    public void Text(int x, int y, string text, uint rgb, int scale = 1, bool vertical = false)
    {
        var cursor = 0;
        foreach (var c in text)
        {
            for (var row = 0; row < PixelFont.Height; row++)
            {
                for (var column = 0; column < PixelFont.Width; column++)
                {
                    if (!PixelFont.IsSet(c, column, row))
                    {
                        continue;
                    }

                    for (var i = 0; i < scale; i++)
                    {
                        for (var j = 0; j < scale; j++)
                        {
                            if (vertical)
                            {
                                // Rotated a quarter turn counter-clockwise: reads bottom to top.
                                SetPixel(x + row * scale + j, y - (cursor + column * scale + i), rgb);
                            }
                            else
                            {
                                SetPixel(x + cursor + column * scale + i, y + row * scale + j, rgb);
                            }
                        }
                    }
                }
            }

            cursor += (PixelFont.Width + 1) * scale;
        }
    }

    public static int TextWidth(string text, int scale = 1) => text.Length * (PixelFont.Width + 1) * scale;

    public void Save(string path) => File.WriteAllBytes(path, Encode());

    public byte[] Encode()
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, Width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), Height);
        header[8] = 8; // bit depth
        header[9] = 2; // colour type: RGB
        WriteChunk(png, "IHDR", header);
        using (var compressed = new MemoryStream())
        {
            using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                var stride = Width * 3;
                for (var y = 0; y < Height; y++)
                {
                    zlib.WriteByte(0); // filter: none
                    zlib.Write(_pixels, y * stride, stride);
                }
            }

            WriteChunk(png, "IDAT", compressed.ToArray());
        }

        WriteChunk(png, "IEND", []);
        return png.ToArray();
    }

    private void Brush(int x, int y, uint rgb, int thickness)
    {
        var from = -(thickness - 1) / 2;
        for (var i = from; i < from + thickness; i++)
        {
            for (var j = from; j < from + thickness; j++)
            {
                SetPixel(x + i, y + j, rgb);
            }
        }
    }

    private static void WriteChunk(Stream png, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        png.Write(word);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        png.Write(typeBytes);
        png.Write(data);
        var crc = Crc32.Update(Crc32.Update(0xFFFFFFFFu, typeBytes), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        png.Write(word);
    }

    /// <summary>The CRC of PNG chunks (ISO 3309, polynomial EDB88320h, reflected).</summary>
    private static class Crc32
    {
        private static readonly uint[] _table = Enumerable.Range(0, 256).Select(n =>
        {
            var c = (uint)n;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            return c;
        }).ToArray();

        public static uint Update(uint crc, ReadOnlySpan<byte> data)
        {
            foreach (var b in data)
            {
                crc = _table[(crc ^ b) & 0xFF] ^ (crc >> 8);
            }

            return crc;
        }
    }
}
