namespace CsiNvme.Storage;

/// <summary>Argument and range checks shared by the backends.</summary>
internal static class VolumeGeometry
{
    /// <summary>True when [offset, offset + length) lies inside a volume of <paramref name="size"/> bytes, without overflow.</summary>
    public static bool InRange(long offset, long length, long size) =>
        offset >= 0 && length >= 0 && offset <= size && length <= size - offset;

    public static void Validate(long sizeBytes, int blockSize)
    {
        if (blockSize < 512 || (blockSize & (blockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "The block size must be a power of two of at least 512.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sizeBytes);
        if (sizeBytes % blockSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, $"The size must be a multiple of the block size {blockSize}.");
        }
    }
}
