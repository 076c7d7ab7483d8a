using System.Buffers;
using System.IO.Hashing;
using CsiNvme.Storage;

namespace CsiNvme.Replication;

/// <summary>
/// CRC-64 (ECMA-182, <see cref="Crc64"/>) of each region of a volume range: what `volume verify` compares between
/// replicas and what a rebuild with an unknown dirty map uses to find the regions that differ.
/// </summary>
public static class RegionChecksums
{
    private const int ReadChunk = 1 << 20;

    /// <summary>The checksums of the regions of [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>).</summary>
    public static ulong[] Compute(IBlockVolume volume, long offset, long length, int regionSize)
    {
        if (regionSize <= 0 || offset < 0 || length < 0 || offset % regionSize != 0)
        {
            throw new ArgumentException("the range must start at a region boundary");
        }

        var end = Math.Min(offset + length, volume.SizeBytes);
        var count = (int)Math.Max(0, (end - offset + regionSize - 1) / regionSize);
        var checksums = new ulong[count];
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(regionSize, ReadChunk));
        try
        {
            var crc = new Crc64();
            for (var i = 0; i < count; i++)
            {
                crc.Reset();
                var regionStart = offset + (long)i * regionSize;
                var regionEnd = Math.Min(regionStart + regionSize, end);
                for (var at = regionStart; at < regionEnd; at += buffer.Length)
                {
                    var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, regionEnd - at));
                    var status = volume.Read(at, chunk);
                    if (status != StorageStatus.Success)
                    {
                        throw new IOException($"reading {chunk.Length} bytes at {at} failed: {status}");
                    }

                    crc.Append(chunk);
                }

                checksums[i] = crc.GetCurrentHashAsUInt64();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return checksums;
    }
}
