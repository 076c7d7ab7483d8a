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
        return volume with
        {
            AllowedHosts = volume.AllowedHosts.Distinct(StringComparer.Ordinal).ToArray().AsReadOnly(),
            Labels = Copy(volume.Labels),
        };
    }

    public static SnapshotRecord Normalize(SnapshotRecord snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentException.ThrowIfNullOrEmpty(snapshot.Name);
        ArgumentNullException.ThrowIfNull(snapshot.SourceVolumeName);
        ArgumentNullException.ThrowIfNull(snapshot.Pool);
        return snapshot with { Labels = Copy(snapshot.Labels) };
    }

    /// <summary>A private read-only copy of the labels, so a caller's dictionary is never aliased.</summary>
    public static IReadOnlyDictionary<string, string> Copy(IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        foreach (var (key, value) in labels)
        {
            ArgumentException.ThrowIfNullOrEmpty(key, nameof(labels));
            ArgumentNullException.ThrowIfNull(value, nameof(labels));
        }

        return new Dictionary<string, string>(labels, StringComparer.Ordinal).AsReadOnly();
    }
}
