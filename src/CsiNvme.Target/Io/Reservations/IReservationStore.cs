namespace CsiNvme.Target.Io.Reservations;

/// <summary>
/// Where a namespace's reservation state (<see cref="ReservationStateCodec"/>) survives a restart of the target. The
/// storage server keeps it in its metadata store (SQLite, or etcd in a cluster, so a new primary finds it).
/// </summary>
public interface IReservationStore
{
    /// <summary>The saved state of the namespace, or null when none was saved.</summary>
    Task<byte[]?> LoadAsync(Guid namespaceUuid, CancellationToken cancellationToken = default);

    /// <summary>Replaces the saved state; durable when the task completes successfully.</summary>
    Task SaveAsync(Guid namespaceUuid, ReadOnlyMemory<byte> state, CancellationToken cancellationToken = default);
}
