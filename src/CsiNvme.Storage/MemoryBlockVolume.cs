using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace CsiNvme.Storage;

/// <summary>
/// A sparse volume in process memory, for tests and benchmarks. Data lives in fixed 1 MiB chunks that are
/// allocated on first write, so a huge volume costs only its chunk table (8 bytes per MiB) until written.
/// Nothing survives the process; <see cref="Flush"/> has nothing to do.
/// </summary>
public sealed class MemoryBlockVolume : IBlockVolume
{
    public const int ChunkSize = 1 << ChunkShift;
    private const int ChunkShift = 20;
    private const int ChunkMask = ChunkSize - 1;

    // Chunk slots are grouped in fixed segments that are never replaced: Resize only appends segments to a
    // new directory, so a chunk published by CompareExchange into a segment can never be lost to a copy.
    private const int SegmentShift = 10;
    private const int SegmentLength = 1 << SegmentShift;
    private const int SegmentMask = SegmentLength - 1;

    /// <summary>How much of a read <see cref="Prefetch"/> asks for; the hardware streams the rest.</summary>
    private const int PrefetchBytes = 4096;
    private const int CacheLine = 64;

    private readonly Lock _resizeLock = new();
    private byte[]?[][] _segments;
    private long _sizeBytes;
    private volatile bool _disposed;

    public MemoryBlockVolume(long sizeBytes, int blockSize)
    {
        VolumeGeometry.Validate(sizeBytes, blockSize);
        BlockSize = blockSize;
        _segments = GrowDirectory([], sizeBytes);
        _sizeBytes = sizeBytes;
    }

    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    public int BlockSize { get; }

    /// <summary>Bytes of chunk memory currently allocated; shows that holes cost nothing.</summary>
    public long AllocatedBytes
    {
        get
        {
            long total = 0;
            foreach (byte[]?[] segment in Volatile.Read(ref _segments))
            {
                foreach (byte[]? chunk in segment)
                {
                    total += chunk?.Length ?? 0;
                }
            }

            return total;
        }
    }

    public StorageStatus Read(long offset, Span<byte> destination)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        // Segments are published before the size, so this snapshot covers every in-range chunk.
        long size = SizeBytes;
        byte[]?[][] segments = Volatile.Read(ref _segments);
        if (!VolumeGeometry.InRange(offset, destination.Length, size))
        {
            return StorageStatus.OutOfRange;
        }

        while (!destination.IsEmpty)
        {
            int within = (int)(offset & ChunkMask);
            int count = Math.Min(destination.Length, ChunkSize - within);
            byte[]? chunk = Volatile.Read(ref Slot(segments, offset));
            if (chunk is null)
            {
                destination[..count].Clear();
            }
            else
            {
                chunk.AsSpan(within, count).CopyTo(destination);
            }

            destination = destination[count..];
            offset += count;
        }

        return StorageStatus.Success;
    }

    /// <summary>
    /// Asks the CPU to load the first <see cref="PrefetchBytes"/> of the range into the L2 cache. The target calls it
    /// for the reads and writes of a received batch before running them, so the cache and TLB misses of random
    /// blocks (most of what copying a block in or out costs) overlap instead of each stalling its own copy. Holes
    /// are skipped: a write allocates their chunk when it runs.
    /// </summary>
    public unsafe void Prefetch(long offset, int length)
    {
        if (!Sse.IsSupported || _disposed || length <= 0 || !VolumeGeometry.InRange(offset, length, SizeBytes))
        {
            return;
        }

        byte[]? chunk = Volatile.Read(ref Slot(Volatile.Read(ref _segments), offset));
        if (chunk is null)
        {
            return;
        }

        int within = (int)(offset & ChunkMask);
        int count = Math.Min(Math.Min(length, ChunkSize - within), PrefetchBytes);
        // A prefetch never faults, so an address the GC has just made stale by moving the chunk costs nothing.
        byte* start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(chunk)) + within;
        Sse.Prefetch1(start - within - sizeof(nint));
        for (int at = 0; at < count; at += CacheLine)
        {
            Sse.Prefetch1(start + at);
        }
    }

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        long size = SizeBytes;
        byte[]?[][] segments = Volatile.Read(ref _segments);
        if (!VolumeGeometry.InRange(offset, source.Length, size))
        {
            return StorageStatus.OutOfRange;
        }

        while (!source.IsEmpty)
        {
            int within = (int)(offset & ChunkMask);
            int count = Math.Min(source.Length, ChunkSize - within);
            byte[] chunk = GetOrAllocate(ref Slot(segments, offset));
            source[..count].CopyTo(chunk.AsSpan(within, count));
            source = source[count..];
            offset += count;
        }

        return StorageStatus.Success;
    }

    public StorageStatus Flush() => _disposed ? StorageStatus.Unavailable : StorageStatus.Success;

    public StorageStatus WriteZeroes(long offset, long length) => Deallocate(offset, length);

    public StorageStatus Deallocate(long offset, long length)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        long size = SizeBytes;
        byte[]?[][] segments = Volatile.Read(ref _segments);
        if (!VolumeGeometry.InRange(offset, length, size))
        {
            return StorageStatus.OutOfRange;
        }

        while (length > 0)
        {
            int within = (int)(offset & ChunkMask);
            int count = (int)Math.Min(length, ChunkSize - within);
            ref byte[]? slot = ref Slot(segments, offset);
            if (count == ChunkSize)
            {
                Volatile.Write(ref slot, null);
            }
            else
            {
                Volatile.Read(ref slot)?.AsSpan(within, count).Clear();
            }

            offset += count;
            length -= count;
        }

        return StorageStatus.Success;
    }

    public void Resize(long newSizeBytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        VolumeGeometry.Validate(newSizeBytes, BlockSize);
        lock (_resizeLock)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(newSizeBytes, _sizeBytes);
            // Bytes past the old size were never writable, so the tail of the last chunk is still zero.
            Volatile.Write(ref _segments, GrowDirectory(_segments, newSizeBytes));
            Volatile.Write(ref _sizeBytes, newSizeBytes);
        }
    }

    public void Dispose()
    {
        _disposed = true;
    }

    private static ref byte[]? Slot(byte[]?[][] segments, long offset)
    {
        long chunkIndex = offset >> ChunkShift;
        return ref segments[chunkIndex >> SegmentShift][chunkIndex & SegmentMask];
    }

    private static byte[] GetOrAllocate(ref byte[]? slot)
    {
        byte[]? chunk = Volatile.Read(ref slot);
        if (chunk is not null)
        {
            return chunk;
        }

        byte[] fresh = new byte[ChunkSize];
        return Interlocked.CompareExchange(ref slot, fresh, null) ?? fresh;
    }

    private static byte[]?[][] GrowDirectory(byte[]?[][] existing, long sizeBytes)
    {
        long chunks = (sizeBytes + ChunkSize - 1) >> ChunkShift;
        long needed = (chunks + SegmentLength - 1) >> SegmentShift;
        if (needed <= existing.Length)
        {
            return existing;
        }

        var grown = new byte[]?[needed][];
        Array.Copy(existing, grown, existing.Length);
        for (long i = existing.Length; i < needed; i++)
        {
            grown[i] = new byte[]?[SegmentLength];
        }

        return grown;
    }
}
