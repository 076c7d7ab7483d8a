using System.Numerics;

namespace CsiNvme.Replication;

/// <summary>
/// Which fixed-size regions of a volume are marked (written since a replica fell out of sync, or since the last flush):
/// one bit per region, safe to mark from several threads at once. A 1 TiB volume in 1 MiB regions is a 128 KiB map.
/// </summary>
public sealed class RegionMap
{
    /// <summary>The region size used everywhere a map is exchanged (rebuild, promotion resync, verify).</summary>
    public const int DefaultRegionSize = 1 << 20;

    private ulong[] _bits;

    public RegionMap(long volumeSize, int regionSize = DefaultRegionSize)
    {
        if (regionSize <= 0 || !BitOperations.IsPow2(regionSize))
        {
            throw new ArgumentOutOfRangeException(nameof(regionSize), "a power of two");
        }

        RegionSize = regionSize;
        RegionCount = (volumeSize + regionSize - 1) / regionSize;
        _bits = new ulong[(RegionCount + 63) / 64];
    }

    public int RegionSize { get; }

    public long RegionCount { get; private set; }

    /// <summary>Marks every region the byte range touches.</summary>
    public void Mark(long offset, long length)
    {
        if (length <= 0)
        {
            return;
        }

        var first = offset / RegionSize;
        var last = Math.Min((offset + length - 1) / RegionSize, RegionCount - 1);
        for (var region = first; region <= last; region++)
        {
            MarkRegion(region);
        }
    }

    public void MarkRegion(long region)
    {
        var bits = Volatile.Read(ref _bits);
        if ((ulong)region < (ulong)RegionCount)
        {
            Interlocked.Or(ref bits[region >> 6], 1UL << (int)(region & 63));
        }
    }

    public void MarkAll()
    {
        for (long region = 0; region < RegionCount; region++)
        {
            MarkRegion(region);
        }
    }

    public bool IsMarked(long region) =>
        (ulong)region < (ulong)RegionCount && (Volatile.Read(ref _bits)[region >> 6] & (1UL << (int)(region & 63))) != 0;

    public void Clear(long region)
    {
        if ((ulong)region < (ulong)RegionCount)
        {
            Interlocked.And(ref Volatile.Read(ref _bits)[region >> 6], ~(1UL << (int)(region & 63)));
        }
    }

    public long MarkedCount
    {
        get
        {
            long count = 0;
            foreach (var word in Volatile.Read(ref _bits))
            {
                count += BitOperations.PopCount(word);
            }

            return count;
        }
    }

    /// <summary>The marked regions in ascending order.</summary>
    public IEnumerable<long> Marked()
    {
        var bits = Volatile.Read(ref _bits);
        for (var word = 0; word < bits.Length; word++)
        {
            var value = Volatile.Read(ref bits[word]);
            while (value != 0)
            {
                var bit = BitOperations.TrailingZeroCount(value);
                var region = ((long)word << 6) + bit;
                if (region < RegionCount)
                {
                    yield return region;
                }

                value &= value - 1;
            }
        }
    }

    /// <summary>Marks every region marked in <paramref name="other"/> (same region size).</summary>
    public void UnionWith(RegionMap other)
    {
        if (other.RegionSize != RegionSize)
        {
            throw new ArgumentException("region sizes differ", nameof(other));
        }

        foreach (var region in other.Marked())
        {
            MarkRegion(region);
        }
    }

    /// <summary>Takes the marks and clears them, atomically per word: marks set meanwhile stay for the next take.</summary>
    public RegionMap TakeAll()
    {
        var taken = new RegionMap(RegionCount * (long)RegionSize, RegionSize);
        var bits = Volatile.Read(ref _bits);
        for (var word = 0; word < bits.Length; word++)
        {
            taken._bits[word] = Interlocked.Exchange(ref bits[word], 0);
        }

        return taken;
    }

    /// <summary>Grows the map with the volume (online resize); existing marks stay.</summary>
    public void Grow(long volumeSize)
    {
        var regions = (volumeSize + RegionSize - 1) / RegionSize;
        if (regions <= RegionCount)
        {
            return;
        }

        var grown = new ulong[(regions + 63) / 64];
        var bits = Volatile.Read(ref _bits);
        for (var i = 0; i < bits.Length; i++)
        {
            grown[i] = Volatile.Read(ref bits[i]);
        }

        Volatile.Write(ref _bits, grown);
        RegionCount = regions;
    }

    /// <summary>The marks as a byte array (one bit per region, little-endian words), to send to another node.</summary>
    public byte[] ToBytes()
    {
        var bits = Volatile.Read(ref _bits);
        var bytes = new byte[bits.Length * 8];
        for (var i = 0; i < bits.Length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), Volatile.Read(ref bits[i]));
        }

        return bytes;
    }

    public static RegionMap FromBytes(long volumeSize, int regionSize, ReadOnlySpan<byte> bytes)
    {
        var map = new RegionMap(volumeSize, regionSize);
        var words = Math.Min(map._bits.Length, bytes.Length / 8);
        for (var i = 0; i < words; i++)
        {
            map._bits[i] = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes[(i * 8)..]);
        }

        return map;
    }
}
