using Microsoft.Win32.SafeHandles;

namespace CsiNvme.Storage;

/// <summary>
/// A volume stored in a sparse file. All I/O is positional on one shared handle, so concurrent callers
/// need no locking; unwritten and deallocated ranges are holes that cost no space.
/// </summary>
public sealed class FileBlockVolume : IBlockVolume
{
    // Used when the file system cannot punch holes; large enough to keep the fallback to few syscalls.
    private static readonly byte[] s_zeros = new byte[1 << 20];

    private readonly SafeFileHandle _handle;
    private readonly Lock _resizeLock = new();
    private long _sizeBytes;
    private volatile bool _disposed;

    private FileBlockVolume(string path, SafeFileHandle handle, long sizeBytes, int blockSize)
    {
        Path = path;
        _handle = handle;
        _sizeBytes = sizeBytes;
        BlockSize = blockSize;
    }

    public string Path { get; }

    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    public int BlockSize { get; }

    /// <summary>Creates a new sparse file of <paramref name="sizeBytes"/>; fails when the file exists.</summary>
    public static FileBlockVolume Create(string path, long sizeBytes, int blockSize)
    {
        VolumeGeometry.Validate(sizeBytes, blockSize);
        // FileShare.None takes an advisory lock so a second server cannot open the same volume.
        SafeFileHandle handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        try
        {
            RandomAccess.SetLength(handle, sizeBytes);
            // The length must be durable before anyone is told the volume exists.
            ThrowOnError(LinuxFile.DataSync(handle), path);
            return new FileBlockVolume(path, handle, sizeBytes, blockSize);
        }
        catch
        {
            handle.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Opens an existing volume file; its length must be a multiple of <paramref name="blockSize"/>.</summary>
    public static FileBlockVolume Open(string path, int blockSize)
    {
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length % blockSize != 0)
            {
                throw new InvalidDataException($"{path}: length {length} is not a multiple of the block size {blockSize}.");
            }

            VolumeGeometry.Validate(length, blockSize);
            return new FileBlockVolume(path, handle, length, blockSize);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public StorageStatus Read(long offset, Span<byte> destination)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        if (!VolumeGeometry.InRange(offset, destination.Length, SizeBytes))
        {
            return StorageStatus.OutOfRange;
        }

        try
        {
            while (!destination.IsEmpty)
            {
                int read = RandomAccess.Read(_handle, destination, offset);
                if (read == 0)
                {
                    // Cannot happen while the file is ours, but a truncated file must not leave stale buffer bytes.
                    destination.Clear();
                    break;
                }

                destination = destination[read..];
                offset += read;
            }

            return StorageStatus.Success;
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            return StatusFrom(e);
        }
    }

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        if (!VolumeGeometry.InRange(offset, source.Length, SizeBytes))
        {
            return StorageStatus.OutOfRange;
        }

        try
        {
            RandomAccess.Write(_handle, source, offset);
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            return StatusFrom(e);
        }

        return forceUnitAccess ? Flush() : StorageStatus.Success;
    }

    public StorageStatus Flush()
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        try
        {
            return StatusFromErrno(LinuxFile.DataSync(_handle));
        }
        catch (ObjectDisposedException)
        {
            return StorageStatus.Unavailable;
        }
    }

    public StorageStatus WriteZeroes(long offset, long length) => Deallocate(offset, length);

    public StorageStatus Deallocate(long offset, long length)
    {
        if (_disposed)
        {
            return StorageStatus.Unavailable;
        }

        if (!VolumeGeometry.InRange(offset, length, SizeBytes))
        {
            return StorageStatus.OutOfRange;
        }

        if (length == 0)
        {
            return StorageStatus.Success;
        }

        try
        {
            int errno = LinuxFile.PunchHole(_handle, offset, length);
            return errno == LinuxFile.Eopnotsupp ? WriteZeroBytes(offset, length) : StatusFromErrno(errno);
        }
        catch (ObjectDisposedException)
        {
            return StorageStatus.Unavailable;
        }
    }

    public void Resize(long newSizeBytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        VolumeGeometry.Validate(newSizeBytes, BlockSize);
        lock (_resizeLock)
        {
            long current = _sizeBytes;
            ArgumentOutOfRangeException.ThrowIfLessThan(newSizeBytes, current);
            if (newSizeBytes == current)
            {
                return;
            }

            // Grow the file before publishing the size so no caller can address bytes the file lacks.
            RandomAccess.SetLength(_handle, newSizeBytes);
            ThrowOnError(LinuxFile.DataSync(_handle), Path);
            Volatile.Write(ref _sizeBytes, newSizeBytes);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }

    internal static StorageStatus StatusFromErrno(int errno) => errno switch
    {
        0 => StorageStatus.Success,
        LinuxFile.Enospc or LinuxFile.Edquot => StorageStatus.CapacityExceeded,
        _ => StorageStatus.MediaError,
    };

    internal StorageStatus WriteZeroBytes(long offset, long length)
    {
        try
        {
            while (length > 0)
            {
                int chunk = (int)Math.Min(length, s_zeros.Length);
                RandomAccess.Write(_handle, s_zeros.AsSpan(0, chunk), offset);
                offset += chunk;
                length -= chunk;
            }

            return StorageStatus.Success;
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            return StatusFrom(e);
        }
    }

    // A handle disposed under a racing call surfaces as ObjectDisposedException; errno failures as IOException.
    private static bool IsIoFailure(Exception e) => e is IOException or ObjectDisposedException;

    private static StorageStatus StatusFrom(Exception e) => e switch
    {
        ObjectDisposedException => StorageStatus.Unavailable,
        // On Unix the runtime puts the raw errno into HResult of the IOException it throws.
        IOException io => StatusFromErrno(io.HResult),
        _ => StorageStatus.MediaError,
    };

    private static void ThrowOnError(int errno, string path)
    {
        if (errno != 0)
        {
            throw new IOException($"{path}: fdatasync failed with errno {errno}.", errno);
        }
    }
}
