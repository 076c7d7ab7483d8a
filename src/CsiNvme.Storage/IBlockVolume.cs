namespace CsiNvme.Storage;

/// <summary>Outcome of a storage operation, mapped by the target onto an NVMe status value.</summary>
public enum StorageStatus
{
    Success = 0,
    /// <summary>The range ends past the end of the volume.</summary>
    OutOfRange,
    /// <summary>The pool or file system has no space for the write.</summary>
    CapacityExceeded,
    /// <summary>The device reported an error (EIO and friends).</summary>
    MediaError,
    /// <summary>The volume is closed or being deleted.</summary>
    Unavailable,
    /// <summary>
    /// This server may not serve the volume now (it lost its claim to be the volume's primary, or is handing it over):
    /// the host should retry the command on another path.
    /// </summary>
    PathUnavailable,
    /// <summary>
    /// Returned only by <see cref="IAsyncBlockVolume"/>'s Start methods: the operation goes on and its outcome arrives
    /// through <see cref="IStorageCompletion.OnCompleted"/>.
    /// </summary>
    Pending,
}

/// <summary>
/// A byte-addressed block volume. Calls are synchronous and allocation-free so the target can run a
/// connection's commands to completion on its own thread; implementations must be safe for concurrent
/// calls from several connections (positional I/O, no shared cursor).
/// </summary>
public interface IBlockVolume : IDisposable
{
    /// <summary>Current size in bytes; a multiple of <see cref="BlockSize"/>.</summary>
    long SizeBytes { get; }

    /// <summary>Logical block size in bytes (512 or 4096).</summary>
    int BlockSize { get; }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>. Holes read as zeros.</summary>
    StorageStatus Read(long offset, Span<byte> destination);

    /// <summary>Writes at <paramref name="offset"/>. With <paramref name="forceUnitAccess"/> the data is on stable storage before return.</summary>
    StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess);

    /// <summary>Makes every completed write durable (fdatasync for files).</summary>
    StorageStatus Flush();

    /// <summary>Makes the range read as zeros. May deallocate.</summary>
    StorageStatus WriteZeroes(long offset, long length);

    /// <summary>Deallocates the range (hole punch); it reads as zeros afterwards.</summary>
    StorageStatus Deallocate(long offset, long length);

    /// <summary>Grows the volume. Shrinking is refused with <see cref="ArgumentOutOfRangeException"/>.</summary>
    void Resize(long newSizeBytes);

    /// <summary>
    /// A hint that a <see cref="Read"/> or <see cref="Write"/> of the range comes soon, so the volume can start
    /// loading it (the memory volume brings the block into the CPU cache); it changes nothing else and ignores
    /// ranges it cannot serve.
    /// </summary>
    void Prefetch(long offset, int length)
    {
    }
}
