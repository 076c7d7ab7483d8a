using CsiNvme.Storage;

namespace CsiNvme.Replication;

/// <summary>
/// A replica's copy as its replica subsystem serves it to the primary: it remembers the regions changed since the last
/// flush that completed here (every change, FUA ones included). When the primary fails, the promoted replica copies the union of every surviving replica's
/// unflushed regions from itself to the others: a change in flight at the failure may have reached some replicas and
/// not others, and it is in that union, since a host flush reaches each replica after the changes sent before it.
/// </summary>
public sealed class ReplicaSideVolume : IBlockVolume
{
    private readonly IBlockVolume _inner;
    private RegionMap _unflushed;

    public ReplicaSideVolume(IBlockVolume inner, int regionSize = RegionMap.DefaultRegionSize)
    {
        _inner = inner;
        _unflushed = new RegionMap(inner.SizeBytes, regionSize);
    }

    public IBlockVolume Inner => _inner;

    /// <summary>Regions changed here since the last completed flush (a copy).</summary>
    public RegionMap UnflushedRegions()
    {
        var copy = new RegionMap(SizeBytes, _unflushed.RegionSize);
        copy.UnionWith(_unflushed);
        return copy;
    }

    public long SizeBytes => _inner.SizeBytes;

    public int BlockSize => _inner.BlockSize;

    public StorageStatus Read(long offset, Span<byte> destination) => _inner.Read(offset, destination);

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        // Marked before the change, so a flush that starts meanwhile cannot clear it while the change is not covered;
        // a FUA write too: durable here does not mean present on the other replicas.
        _unflushed.Mark(offset, source.Length);

        return _inner.Write(offset, source, forceUnitAccess);
    }

    public StorageStatus Flush()
    {
        var covered = _unflushed.TakeAll();
        var status = _inner.Flush();
        if (status != StorageStatus.Success)
        {
            _unflushed.UnionWith(covered);
        }

        return status;
    }

    public StorageStatus WriteZeroes(long offset, long length)
    {
        _unflushed.Mark(offset, length);
        return _inner.WriteZeroes(offset, length);
    }

    public StorageStatus Deallocate(long offset, long length)
    {
        _unflushed.Mark(offset, length);
        return _inner.Deallocate(offset, length);
    }

    public void Resize(long newSizeBytes)
    {
        _inner.Resize(newSizeBytes);
        _unflushed.Grow(newSizeBytes);
    }

    public void Prefetch(long offset, int length) => _inner.Prefetch(offset, length);

    /// <summary>The inner copy stays open: the node's storage owns it.</summary>
    public void Dispose()
    {
    }
}
