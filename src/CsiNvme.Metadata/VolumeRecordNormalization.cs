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
        ArgumentNullException.ThrowIfNull(volume.Primary);
        return volume with
        {
            AllowedHosts = volume.AllowedHosts.Distinct(StringComparer.Ordinal).ToArray().AsReadOnly(),
            Labels = Copy(volume.Labels),
            Replicas = CopyList(volume.Replicas, nameof(volume.Replicas)),
            HostSecrets = CopyList(volume.HostSecrets, nameof(volume.HostSecrets)),
            TlsPsks = CopyList(volume.TlsPsks, nameof(volume.TlsPsks)),
        };
    }

    public static SnapshotRecord Normalize(SnapshotRecord snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentException.ThrowIfNullOrEmpty(snapshot.Name);
        ArgumentNullException.ThrowIfNull(snapshot.SourceVolumeName);
        ArgumentNullException.ThrowIfNull(snapshot.Pool);
        return snapshot with { Labels = Copy(snapshot.Labels), Nodes = CopyList(snapshot.Nodes, nameof(snapshot.Nodes)) };
    }

    /// <summary>A private read-only copy of a list without null items, so a caller's list is never aliased.</summary>
    public static IReadOnlyList<T> CopyList<T>(IReadOnlyList<T> items, string name)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(items, name);
        T[] copy = [.. items];
        if (Array.IndexOf(copy, null) >= 0)
        {
            throw new ArgumentException("the list holds a null item", name);
        }

        return copy.AsReadOnly();
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
