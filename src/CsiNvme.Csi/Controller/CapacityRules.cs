using Csi.V1;

namespace CsiNvme.Csi.Controller;

/// <summary>CSI capacity ranges applied to the storage server's sizes (multiples of 4 KiB).</summary>
public static class CapacityRules
{
    /// <summary>The storage server rounds every size up to this.</summary>
    public const long Granularity = 4096;

    /// <summary>Size of a volume created without a capacity range (and without a source).</summary>
    public const long DefaultVolumeBytes = 1L << 30;

    /// <summary>Largest volume the storage server creates (VolumeRules.MaxVolumeSizeBytes in the server): 64 TiB.</summary>
    public const long MaximumVolumeBytes = 64L << 40;

    public static long RoundUp(long bytes) => bytes > long.MaxValue - (Granularity - 1)
        ? long.MaxValue - (long.MaxValue % Granularity)
        : (bytes + Granularity - 1) / Granularity * Granularity;

    public static long RoundDown(long bytes) => bytes / Granularity * Granularity;

    /// <summary>Negative values are malformed (INVALID_ARGUMENT), unlike unsatisfiable ones (OUT_OF_RANGE).</summary>
    public static string? CheckWellFormed(CapacityRange? range) =>
        range is not null && (range.RequiredBytes < 0 || range.LimitBytes < 0)
            ? $"capacity range must not be negative (required_bytes {range.RequiredBytes}, limit_bytes {range.LimitBytes})"
            : null;

    /// <summary>
    /// The size to create: the required bytes rounded up to 4 KiB, at least <paramref name="minimumBytes"/>
    /// (a clone's source size); with no required bytes, the minimum or the default, held under the limit.
    /// Null with <paramref name="error"/> when no multiple of 4 KiB fits in [required, limit].
    /// </summary>
    public static long? Choose(CapacityRange? range, long minimumBytes, out string? error)
    {
        var required = range?.RequiredBytes ?? 0;
        var limit = range?.LimitBytes ?? 0;
        if (limit > 0 && required > limit)
        {
            error = $"required_bytes {required} is larger than limit_bytes {limit}";
            return null;
        }

        long size;
        if (required > 0)
        {
            size = RoundUp(Math.Max(required, minimumBytes));
        }
        else if (minimumBytes > 0)
        {
            size = RoundUp(minimumBytes);
        }
        else
        {
            size = limit > 0 ? Math.Min(DefaultVolumeBytes, RoundDown(limit)) : DefaultVolumeBytes;
        }

        if (size == 0 || (limit > 0 && size > limit))
        {
            error = minimumBytes > required
                ? $"the source needs {minimumBytes} bytes; limit_bytes is {limit}"
                : $"volume sizes are multiples of {Granularity} bytes: {RoundUp(Math.Max(required, 1))} does not fit under limit_bytes {limit}";
            return null;
        }

        if (size > MaximumVolumeBytes)
        {
            error = $"{size} bytes is more than the largest volume, {MaximumVolumeBytes} bytes (64 TiB)";
            return null;
        }

        error = null;
        return size;
    }

    /// <summary>Whether an existing volume of <paramref name="sizeBytes"/> satisfies the range.</summary>
    public static bool Satisfies(CapacityRange? range, long sizeBytes) =>
        (range is null || range.RequiredBytes == 0 || sizeBytes >= range.RequiredBytes) &&
        (range is null || range.LimitBytes == 0 || sizeBytes <= range.LimitBytes);
}
