namespace CsiNvme.Storage.Thin;

/// <summary>The block-device view of one thin volume of a <see cref="ThinPool"/>.</summary>
public sealed class ThinVolume : IBlockVolume
{
    private readonly ThinPool _pool;
    private readonly ThinImage _image;

    internal ThinVolume(ThinPool pool, ThinImage image)
    {
        _pool = pool;
        _image = image;
    }

    public Guid Id => _image.Id;

    public ThinPool Pool => _pool;

    public long SizeBytes => Volatile.Read(ref _image.SizeBytes);

    public int BlockSize => _image.BlockSize;

    public StorageStatus Read(long offset, Span<byte> destination) => _pool.Read(_image, offset, destination);

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess) =>
        _pool.Write(_image, offset, source, forceUnitAccess);

    public StorageStatus Flush() => _pool.Flush();

    public StorageStatus WriteZeroes(long offset, long length) => _pool.Deallocate(_image, offset, length);

    public StorageStatus Deallocate(long offset, long length) => _pool.Deallocate(_image, offset, length);

    public void Resize(long newSizeBytes) => _pool.Resize(_image, newSizeBytes);

    /// <summary>The pool owns the data; closing a view changes nothing.</summary>
    public void Dispose()
    {
    }
}
