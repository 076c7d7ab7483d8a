using System.Diagnostics;
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

    /// <summary>How much of a hinted range <see cref="Prefetch"/> asks for; the hardware streams the rest.</summary>
    private const int PrefetchBytes = 4096;
    private const int CacheLine = 64;

    private readonly Lock _resizeLock = new();
    private ChunkSlot[][] _segments;
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
            foreach (ChunkSlot[] segment in Volatile.Read(ref _segments))
            {
                foreach (ChunkSlot slot in segment)
                {
                    total += slot.Chunk?.Length ?? 0;
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
        ChunkSlot[][] segments = Volatile.Read(ref _segments);
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
                Bytes(chunk, within, count).CopyTo(destination);
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
        ChunkSlot[][] segments = Volatile.Read(ref _segments);
        if (!VolumeGeometry.InRange(offset, source.Length, size))
        {
            return StorageStatus.OutOfRange;
        }

        while (!source.IsEmpty)
        {
            int within = (int)(offset & ChunkMask);
            int count = Math.Min(source.Length, ChunkSize - within);
            ref byte[]? slot = ref Slot(segments, offset);
            byte[]? chunk = Volatile.Read(ref slot);
            if (chunk is null)
            {
                // Taken again from the slot rather than returned: the copy below then runs only where the JIT knows
                // the chunk is not null, so it needs no null check, which would read the chunk's header (a cache
                // line of its own that a random block's write misses as often as its data).
                Allocate(ref slot);
                continue;
            }

            source[..count].CopyTo(Bytes(chunk, within, count));
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
        ChunkSlot[][] segments = Volatile.Read(ref _segments);
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

    private static ref byte[]? Slot(ChunkSlot[][] segments, long offset)
    {
        long chunkIndex = offset >> ChunkShift;
        return ref segments[chunkIndex >> SegmentShift][chunkIndex & SegmentMask].Chunk;
    }

    /// <summary>
    /// <paramref name="count"/> bytes of a chunk at <paramref name="within"/>, which callers keep inside the chunk.
    /// Unchecked: a bounds check reads the array's length from its header, a cache line of its own that misses as
    /// often as the random block does, before the copy may start.
    /// </summary>
    private static Span<byte> Bytes(byte[] chunk, int within, int count)
    {
        Debug.Assert(chunk.Length == ChunkSize && within >= 0 && count >= 0 && within + count <= ChunkSize);
        return MemoryMarshal.CreateSpan(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(chunk), within), count);
    }

    /// <summary>Publishes a zeroed chunk in an empty slot, unless another writer got there first.</summary>
    private static void Allocate(ref byte[]? slot) => Interlocked.CompareExchange(ref slot, new byte[ChunkSize], null);

    private static ChunkSlot[][] GrowDirectory(ChunkSlot[][] existing, long sizeBytes)
    {
        long chunks = (sizeBytes + ChunkSize - 1) >> ChunkShift;
        long needed = (chunks + SegmentLength - 1) >> SegmentShift;
        if (needed <= existing.Length)
        {
            return existing;
        }

        var grown = new ChunkSlot[needed][];
        Array.Copy(existing, grown, existing.Length);
        for (long i = existing.Length; i < needed; i++)
        {
            grown[i] = new ChunkSlot[SegmentLength];
        }

        return grown;
    }

    /// <summary>
    /// A chunk reference in a struct, so a slot is addressed without the type check that taking a reference into an
    /// array of arrays costs (arrays of references are covariant).
    /// </summary>
    private struct ChunkSlot
    {
        public byte[]? Chunk;
    }
}
