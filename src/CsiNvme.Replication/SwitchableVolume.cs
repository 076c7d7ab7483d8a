using CsiNvme.Storage;

namespace CsiNvme.Replication;

/// <summary>
/// The volume a storage node's host subsystem exports in a cluster: the replicated volume while the node is the
/// volume's primary, its local copy otherwise (its path is then ANA inaccessible, so no host I/O reaches it). The
/// namespace keeps one volume object for its life, and the role changes underneath without the hosts seeing a
/// namespace change.
/// </summary>
public sealed class SwitchableVolume : IAsyncBlockVolume
{
    private IBlockVolume _current;

    public SwitchableVolume(IBlockVolume initial)
    {
        _current = initial;
    }

    public IBlockVolume Current => Volatile.Read(ref _current);

    /// <summary>Serves <paramref name="next"/> from now on; changes already started finish on the previous volume.</summary>
    public void SwitchTo(IBlockVolume next) => Volatile.Write(ref _current, next);

    public long SizeBytes => Current.SizeBytes;

    public int BlockSize => Current.BlockSize;

    public StorageStatus Read(long offset, Span<byte> destination) => Current.Read(offset, destination);

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess) => Current.Write(offset, source, forceUnitAccess);

    public StorageStatus Flush() => Current.Flush();

    public StorageStatus WriteZeroes(long offset, long length) => Current.WriteZeroes(offset, length);

    public StorageStatus Deallocate(long offset, long length) => Current.Deallocate(offset, length);

    public void Resize(long newSizeBytes) => Current.Resize(newSizeBytes);

    public void Prefetch(long offset, int length) => Current.Prefetch(offset, length);

    public StorageStatus StartWrite(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess, IStorageCompletion completion, ulong cookie) =>
        Current is IAsyncBlockVolume async
            ? async.StartWrite(offset, source, forceUnitAccess, completion, cookie)
            : Current.Write(offset, source, forceUnitAccess);

    public StorageStatus StartFlush(IStorageCompletion completion, ulong cookie) =>
        Current is IAsyncBlockVolume async ? async.StartFlush(completion, cookie) : Current.Flush();

    public StorageStatus StartWriteZeroes(long offset, long length, bool forceUnitAccess, IStorageCompletion completion, ulong cookie)
    {
        if (Current is IAsyncBlockVolume async)
        {
            return async.StartWriteZeroes(offset, length, forceUnitAccess, completion, cookie);
        }

        var status = Current.WriteZeroes(offset, length);
        return status == StorageStatus.Success && forceUnitAccess ? Current.Flush() : status;
    }

    public StorageStatus StartDeallocate(long offset, long length, IStorageCompletion completion, ulong cookie) =>
        Current is IAsyncBlockVolume async ? async.StartDeallocate(offset, length, completion, cookie) : Current.Deallocate(offset, length);

    /// <summary>The volumes underneath belong to the node's storage and replication; they are closed there.</summary>
    public void Dispose()
    {
    }
}
