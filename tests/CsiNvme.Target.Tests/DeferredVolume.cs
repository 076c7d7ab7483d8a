using System.Collections.Concurrent;
using CsiNvme.Storage;

namespace CsiNvme.Target.Tests;

/// <summary>
/// An asynchronous volume for tests: applies each change to the memory volume at once and answers Pending, then reports
/// the outcome from another thread when the test releases it, as a replicated volume reports when its replicas answer.
/// </summary>
internal sealed class DeferredVolume(MemoryBlockVolume inner) : IAsyncBlockVolume
{
    private readonly ConcurrentQueue<(IStorageCompletion Completion, ulong Cookie, StorageStatus Status)> _held = new();

    /// <summary>When true, outcomes are reported from a pool thread right away instead of waiting for <see cref="ReleaseAll"/>.</summary>
    public bool AutoRelease { get; set; }

    /// <summary>What the next Start calls report (e.g. a replica write failed).</summary>
    public StorageStatus NextOutcome { get; set; } = StorageStatus.Success;

    public int Held => _held.Count;

    public int Started;

    public long SizeBytes => inner.SizeBytes;

    public int BlockSize => inner.BlockSize;

    /// <summary>Reports every held outcome, each from a pool thread, in reverse order of arrival.</summary>
    public int ReleaseAll()
    {
        var items = new List<(IStorageCompletion, ulong, StorageStatus)>();
        while (_held.TryDequeue(out var item))
        {
            items.Add(item);
        }

        items.Reverse();
        foreach (var (completion, cookie, status) in items)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => completion.OnCompleted(cookie, status), null);
        }

        return items.Count;
    }

    public bool WaitHeld(int count, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (_held.Count < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            Thread.Sleep(5);
        }

        return true;
    }

    public StorageStatus StartWrite(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess, IStorageCompletion completion, ulong cookie) =>
        Hold(inner.Write(offset, source, forceUnitAccess), completion, cookie);

    public StorageStatus StartFlush(IStorageCompletion completion, ulong cookie) => Hold(inner.Flush(), completion, cookie);

    public StorageStatus StartWriteZeroes(long offset, long length, bool forceUnitAccess, IStorageCompletion completion, ulong cookie) =>
        Hold(inner.WriteZeroes(offset, length), completion, cookie);

    public StorageStatus StartDeallocate(long offset, long length, IStorageCompletion completion, ulong cookie) =>
        Hold(inner.Deallocate(offset, length), completion, cookie);

    public StorageStatus Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess) => inner.Write(offset, source, forceUnitAccess);

    public StorageStatus Flush() => inner.Flush();

    public StorageStatus WriteZeroes(long offset, long length) => inner.WriteZeroes(offset, length);

    public StorageStatus Deallocate(long offset, long length) => inner.Deallocate(offset, length);

    public void Resize(long newSizeBytes) => inner.Resize(newSizeBytes);

    public void Dispose()
    {
    }

    private StorageStatus Hold(StorageStatus local, IStorageCompletion completion, ulong cookie)
    {
        Interlocked.Increment(ref Started);
        if (local != StorageStatus.Success)
        {
            return local;
        }

        var outcome = NextOutcome;
        if (AutoRelease)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => completion.OnCompleted(cookie, outcome), null);
            return StorageStatus.Pending;
        }

        _held.Enqueue((completion, cookie, outcome));
        return StorageStatus.Pending;
    }
}
