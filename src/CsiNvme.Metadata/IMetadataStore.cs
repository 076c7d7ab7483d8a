namespace CsiNvme.Metadata;

/// <summary>The persistent description of one volume. The id never changes and seeds the subsystem NQN, NGUID and UUID.</summary>
public sealed record VolumeRecord(
    Guid Id,
    string Name,
    long SizeBytes,
    int BlockSize,
    bool AllowAnyHost,
    IReadOnlyList<string> AllowedHosts,
    DateTimeOffset CreatedAt)
{
    /// <summary>
    /// The storage pool holding the volume's data, fixed at creation; empty for backends without pools (file, memory)
    /// and for volumes recorded before pools existed.
    /// </summary>
    public string Pool { get; init; } = "";

    /// <summary>Labels given at creation, fixed for the volume's life (updates keep the stored ones).</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = EmptyLabels.Instance;

    /// <summary>How many copies of the data the volume should have, on distinct nodes; 1 on a single server.</summary>
    public int ReplicaCount { get; init; } = 1;

    /// <summary>Where the copies are and how current each is; empty on a single server, whose one copy is local.</summary>
    public IReadOnlyList<ReplicaRecord> Replicas { get; init; } = [];

    /// <summary>The node name of the replica that serves I/O and replicates to the others; "" on a single server.</summary>
    public string Primary { get; init; } = "";

    /// <summary>
    /// Bumped at every change of primary. Replicas refuse replication writes carrying an older epoch, which fences a
    /// deposed primary; <see cref="ReplicaRecord.InSyncEpoch"/> is measured in it.
    /// </summary>
    public long Epoch { get; init; }

    /// <summary>
    /// The store's version of this record, for compare-and-swap (<see cref="IClusterStore.TryUpdateVolumeAsync"/>):
    /// etcd's mod_revision of the record's key; 0 from stores without versions. Set by the store on reads, ignored on
    /// writes, and not part of equality (two reads of the same content compare equal whatever their revisions).
    /// </summary>
    public long Revision { get; init; }

    /// <summary>
    /// Hosts that must authenticate with DH-HMAC-CHAP, each with its secrets sealed (<see cref="SecretSealer"/>): the
    /// protocol needs the secrets themselves, so they cannot be stored hashed.
    /// </summary>
    public IReadOnlyList<HostSecretRecord> HostSecrets { get; init; } = [];

    /// <summary>Hosts connect only through the NVMe/TCP TLS secure channel.</summary>
    public bool TlsRequired { get; init; }

    /// <summary>Hosts' TLS pre-shared keys, each sealed (<see cref="SecretSealer"/>): TLS needs the keys themselves.</summary>
    public IReadOnlyList<TlsPskRecord> TlsPsks { get; init; } = [];

    // Records compare members with their default equality, which for lists and dictionaries is reference equality;
    // two reads of the same volume must compare equal, so collections compare by content.
    public bool Equals(VolumeRecord? other) =>
        other is not null
        && Id == other.Id
        && Name == other.Name
        && SizeBytes == other.SizeBytes
        && BlockSize == other.BlockSize
        && AllowAnyHost == other.AllowAnyHost
        && AllowedHosts.SequenceEqual(other.AllowedHosts)
        && CreatedAt == other.CreatedAt
        && Pool == other.Pool
        && RecordEquality.SameLabels(Labels, other.Labels)
        && ReplicaCount == other.ReplicaCount
        && Replicas.SequenceEqual(other.Replicas)
        && Primary == other.Primary
        && Epoch == other.Epoch
        && HostSecrets.SequenceEqual(other.HostSecrets)
        && TlsRequired == other.TlsRequired
        && TlsPsks.SequenceEqual(other.TlsPsks);

    public override int GetHashCode() => HashCode.Combine(Id, Name, SizeBytes, CreatedAt, Primary, Epoch);
}

/// <summary>
/// One host's DH-HMAC-CHAP settings on a volume. <paramref name="SealedSecret"/> and
/// <paramref name="SealedControllerSecret"/> ("" when none) are <see cref="SecretSealer"/> output, never the secrets;
/// <paramref name="Hash"/> and <paramref name="DhGroup"/> are the names the management API takes ("sha256", "ffdhe2048").
/// An empty <paramref name="SealedSecret"/> marks a host that must authenticate whose secret is lost (a record rebuilt
/// by --recover-metadata): it is locked out until the secret is set again.
/// </summary>
public sealed record HostSecretRecord(string HostNqn, string SealedSecret, string SealedControllerSecret, string Hash, string DhGroup);

/// <summary>
/// One host's NVMe/TCP TLS PSK on a volume: <paramref name="SealedPsk"/> is <see cref="SecretSealer"/> output of the
/// interchange form, never the key; "" marks a key lost in a rebuilt record (the host's TLS handshakes fail until it
/// is set again).
/// </summary>
public sealed record TlsPskRecord(string HostNqn, string SealedPsk);

internal static class EmptyLabels
{
    public static readonly IReadOnlyDictionary<string, string> Instance = new Dictionary<string, string>(StringComparer.Ordinal).AsReadOnly();
}

internal static class RecordEquality
{
    public static bool SameLabels(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(l => b.TryGetValue(l.Key, out var v) && v == l.Value);
}

/// <summary>
/// A point-in-time image of a volume. It outlives its source volume: the pool keeps the data a snapshot needs,
/// so the source's id and name are kept here for display only.
/// </summary>
public sealed record SnapshotRecord(
    Guid Id,
    string Name,
    Guid SourceVolumeId,
    string SourceVolumeName,
    long SizeBytes,
    int BlockSize,
    DateTimeOffset CreatedAt,
    string Pool)
{
    /// <summary>Labels given at creation.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = EmptyLabels.Instance;

    /// <summary>The nodes holding this snapshot's image; empty on a single server, whose pool holds it.</summary>
    public IReadOnlyList<string> Nodes { get; init; } = [];

    // Records compare members with their default equality, which for a dictionary is reference equality; two
    // reads of the same snapshot must compare equal, so collections compare by content.
    public bool Equals(SnapshotRecord? other) =>
        other is not null
        && Id == other.Id
        && Name == other.Name
        && SourceVolumeId == other.SourceVolumeId
        && SourceVolumeName == other.SourceVolumeName
        && SizeBytes == other.SizeBytes
        && BlockSize == other.BlockSize
        && CreatedAt == other.CreatedAt
        && Pool == other.Pool
        && RecordEquality.SameLabels(Labels, other.Labels)
        && Nodes.SequenceEqual(other.Nodes);

    public override int GetHashCode() => HashCode.Combine(Id, Name, SizeBytes, CreatedAt);
}

/// <summary>
/// A storage pool this store holds records for, with the identity the pool had: a different pool under the same name
/// (a mount that went elsewhere) is then told apart from the one the records describe.
/// </summary>
public sealed record PoolBinding(string Name, Guid PoolId);

/// <summary>
/// Where cluster metadata lives: an embedded SQLite file on a single node, etcd when several nodes form
/// a cluster. Writes are durable when the returned task completes.
/// </summary>
public interface IMetadataStore : IAsyncDisposable
{
    /// <summary>A short human name of the store, e.g. "sqlite:/var/lib/csinvme/metadata.db".</summary>
    string Description { get; }

    /// <summary>
    /// Identity of the store, fixed when it was created. Pools remember the store they are used with, so a server
    /// started with another (or a recreated) store is recognised as such instead of taking the pools' images for leftovers.
    /// </summary>
    Guid StoreId { get; }

    /// <summary>The pools this store was used with, ordered by name; empty for a new store.</summary>
    Task<IReadOnlyList<PoolBinding>> ListPoolBindingsAsync(CancellationToken cancellationToken = default);

    /// <summary>Records the identity of the pool of that name, replacing the one recorded before.</summary>
    Task SetPoolBindingAsync(PoolBinding binding, CancellationToken cancellationToken = default);

    Task<VolumeRecord?> GetVolumeAsync(string name, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<VolumeRecord>> ListVolumesAsync(CancellationToken cancellationToken = default);

    /// <summary>Inserts a volume; returns false when a volume of that name already exists.</summary>
    Task<bool> TryCreateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default);

    /// <summary>Replaces an existing volume record (matched by name); returns false when it does not exist.</summary>
    Task<bool> UpdateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default);

    /// <summary>Removes a volume; returns false when it did not exist.</summary>
    Task<bool> DeleteVolumeAsync(string name, CancellationToken cancellationToken = default);

    Task<SnapshotRecord?> GetSnapshotAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Every snapshot, ordered by name.</summary>
    Task<IReadOnlyList<SnapshotRecord>> ListSnapshotsAsync(CancellationToken cancellationToken = default);

    /// <summary>Inserts a snapshot; returns false when a snapshot of that name already exists.</summary>
    Task<bool> TryCreateSnapshotAsync(SnapshotRecord snapshot, CancellationToken cancellationToken = default);

    /// <summary>Removes a snapshot; returns false when it did not exist.</summary>
    Task<bool> DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>
    /// The NVMe reservation state of a volume's namespace (an opaque blob the target encodes), or null when none was
    /// saved. Deleting the volume deletes it.
    /// </summary>
    Task<byte[]?> GetReservationStateAsync(Guid volumeId, CancellationToken cancellationToken = default);

    /// <summary>Replaces the reservation state of an existing volume; durable when the task completes.</summary>
    /// <exception cref="InvalidOperationException">No volume has that id.</exception>
    Task SaveReservationStateAsync(Guid volumeId, byte[] state, CancellationToken cancellationToken = default);
}
