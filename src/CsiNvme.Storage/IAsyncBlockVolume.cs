namespace CsiNvme.Storage;

/// <summary>
/// Receives the outcome of an operation an <see cref="IAsyncBlockVolume"/> completes after its Start call returned.
/// Called exactly once per <see cref="StorageStatus.Pending"/> answer, from any thread; it must not block.
/// </summary>
public interface IStorageCompletion
{
    /// <param name="cookie">The value passed to the Start call, so one receiver tells its operations apart without an object per operation.</param>
    /// <param name="status">The outcome; never <see cref="StorageStatus.Pending"/>.</param>
    void OnCompleted(ulong cookie, StorageStatus status);
}

/// <summary>
/// A block volume whose changes may complete after the call returns: a replicated volume applies a write to its own copy
/// at once and completes it when its replicas have it too. Reads stay synchronous (<see cref="IBlockVolume.Read"/>).
/// Each Start method answers with the final status, or with <see cref="StorageStatus.Pending"/> and a later call of
/// <paramref name="completion"/>'s <see cref="IStorageCompletion.OnCompleted"/>; it never throws for an I/O outcome.
/// The synchronous <see cref="IBlockVolume"/> methods stay valid and wait for the outcome.
/// </summary>
public interface IAsyncBlockVolume : IBlockVolume
{
    StorageStatus StartWrite(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess, IStorageCompletion completion, ulong cookie);

    StorageStatus StartFlush(IStorageCompletion completion, ulong cookie);

    StorageStatus StartWriteZeroes(long offset, long length, bool forceUnitAccess, IStorageCompletion completion, ulong cookie);

    StorageStatus StartDeallocate(long offset, long length, IStorageCompletion completion, ulong cookie);
}
