using CsiNvme.Api.V1;

namespace CsiNvme.Volumes.Catalog;

/// <summary>
/// The volumes and snapshots behind the management API, whoever keeps them: a single server (<see cref="VolumeCatalog"/>)
/// or a cluster, where any node answers for all. Refusals are <see cref="VolumeException"/>s.
/// </summary>
public interface IVolumeCatalog
{
    Task<Volume> CreateAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default);

    Task<Volume> GetAsync(string name, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<Volume>> ListAsync(CancellationToken cancellationToken = default);

    Task DeleteAsync(string name, CancellationToken cancellationToken = default);

    Task<Volume> ResizeAsync(string name, ulong requestedSizeBytes, CancellationToken cancellationToken = default);

    /// <summary>Changes how many replicas the volume keeps: see the SetReplicaCount RPC.</summary>
    Task<Volume> SetReplicaCountAsync(string name, uint replicas, CancellationToken cancellationToken = default);

    Task<Volume> AllowHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default);

    Task<Volume> DenyHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default);

    Task<Volume> SetAllowAnyHostAsync(string name, bool allowAnyHost, CancellationToken cancellationToken = default);

    /// <summary>Requires DH-HMAC-CHAP of a host (or replaces its secrets): see the SetHostSecret RPC.</summary>
    Task<Volume> SetHostSecretAsync(SetHostSecretRequest request, CancellationToken cancellationToken = default);

    Task<Volume> ClearHostSecretAsync(string name, string hostNqn, CancellationToken cancellationToken = default);

    /// <summary>Gives a host a TLS PSK for the volume (or replaces it): see the SetHostTlsPsk RPC.</summary>
    Task<Volume> SetHostTlsPskAsync(SetHostTlsPskRequest request, CancellationToken cancellationToken = default);

    Task<Volume> ClearHostTlsPskAsync(string name, string hostNqn, CancellationToken cancellationToken = default);

    /// <summary>Requires TLS of the volume's hosts, or lets plaintext hosts in again: see the SetTlsRequired RPC.</summary>
    Task<Volume> SetTlsRequiredAsync(string name, bool tlsRequired, CancellationToken cancellationToken = default);

    Task<Snapshot> CreateSnapshotAsync(string volumeName, string snapshotName, IReadOnlyDictionary<string, string>? labels = null, CancellationToken cancellationToken = default);

    Task<Snapshot> GetSnapshotAsync(string name, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<Snapshot>> ListSnapshotsAsync(string? volumeName = null, CancellationToken cancellationToken = default);

    Task DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default);

    Task<VerifyVolumeResponse> VerifyAsync(string name, uint regionSize, CancellationToken cancellationToken = default);

    /// <summary>This node's pools (a cluster node reports its own; ListNodes reports every node's).</summary>
    Task<IReadOnlyList<Pool>> ListPoolsAsync(CancellationToken cancellationToken = default);
}
