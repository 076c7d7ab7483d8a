using CsiNvme.Metadata;
using CsiNvme.Target.Io.Reservations;

namespace CsiNvme.Volumes.Local;

/// <summary>
/// Keeps each volume's NVMe reservation state in the metadata store (SQLite on a single server, etcd in a cluster), so
/// registrations and reservations survive a restart of the server and are found by a node that takes the volume over.
/// The namespace UUID is the volume id.
/// </summary>
public sealed class MetadataReservationStore(IMetadataStore store) : IReservationStore
{
    public Task<byte[]?> LoadAsync(Guid namespaceUuid, CancellationToken cancellationToken = default) =>
        store.GetReservationStateAsync(namespaceUuid, cancellationToken);

    public Task SaveAsync(Guid namespaceUuid, ReadOnlyMemory<byte> state, CancellationToken cancellationToken = default) =>
        store.SaveReservationStateAsync(namespaceUuid, state.ToArray(), cancellationToken);
}
