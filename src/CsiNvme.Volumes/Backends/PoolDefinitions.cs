namespace CsiNvme.Volumes.Backends;

/// <summary>
/// A thin pool: a file (created sparse when missing, then <paramref name="SizeBytes"/> is required) or a raw block
/// device (/dev/...). Its name is the file name without extension.
/// </summary>
public sealed record PoolDefinition(string Path, long? SizeBytes);

/// <summary>
/// Free space of a pool that snapshots may not promise away: a snapshot (or a clone from a volume) is refused when the
/// pool's free space beyond the reserve could not take an overwrite of everything the source volume would then share.
/// A share of the pool's capacity (<paramref name="Percent"/>) or a size; for the pool named <paramref name="Pool"/>, or
/// for every pool without one of its own when null.
/// </summary>
public sealed record PoolReserve(string? Pool, double? Percent, long? Bytes)
{
    public static PoolReserve Default { get; } = new(null, 5, null);

    public long BytesOf(long capacityBytes) => Math.Min(capacityBytes, Bytes ?? (long)(capacityBytes * Percent!.Value / 100));

    /// <summary>"5%" or "10 GiB", as given.</summary>
    public string Amount => Percent is { } percent
        ? percent.ToString(System.Globalization.CultureInfo.InvariantCulture) + "%"
        : CsiNvme.Api.ByteSize.Format(Bytes ?? 0);

    public override string ToString() => (Pool is null ? "" : Pool + "=") + Amount;

    /// <summary>The reserve of <paramref name="pool"/>: its own entry, else the general one, else <see cref="Default"/>; the last given wins.</summary>
    public static PoolReserve For(string pool, IReadOnlyList<PoolReserve> reserves) =>
        reserves.LastOrDefault(r => r.Pool == pool) ?? reserves.LastOrDefault(r => r.Pool is null) ?? Default;
}
