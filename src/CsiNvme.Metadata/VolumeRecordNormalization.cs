namespace CsiNvme.Metadata;

internal static class VolumeRecordNormalization
{
    /// <summary>
    /// The stored form of a record: allowed hosts de-duplicated (first occurrence wins, order kept) and
    /// held in a read-only list, so callers can neither alias nor mutate what a store holds.
    /// </summary>
    public static VolumeRecord Normalize(VolumeRecord volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentException.ThrowIfNullOrEmpty(volume.Name);
        ArgumentNullException.ThrowIfNull(volume.AllowedHosts);
        ArgumentNullException.ThrowIfNull(volume.Pool);
        return volume with { AllowedHosts = volume.AllowedHosts.Distinct(StringComparer.Ordinal).ToArray().AsReadOnly() };
    }

    public static SnapshotRecord Normalize(SnapshotRecord snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentException.ThrowIfNullOrEmpty(snapshot.Name);
        ArgumentNullException.ThrowIfNull(snapshot.SourceVolumeName);
        ArgumentNullException.ThrowIfNull(snapshot.Pool);
        return snapshot;
    }
}
