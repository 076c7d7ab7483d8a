using CsiNvme.Metadata;
using CsiNvme.Replication;

namespace CsiNvme.Cluster;

/// <summary>
/// Records a primary's view of its replicas in the volume's record, by compare-and-swap, and only while the record
/// still names this node primary at the epoch it serves: a deposed primary's record fails, so the change that
/// depended on it fails with a path status instead of completing.
/// </summary>
public sealed class ReplicaStateRecorder(IClusterStore store, string volumeName, string self, long epoch) : IReplicaStateSink
{
    public Task MarkOutOfSyncAsync(string node, string reason, CancellationToken cancellationToken) =>
        SetStateAsync(node, ReplicaState.OutOfSync, cancellationToken);

    public Task MarkRebuildingAsync(string node, CancellationToken cancellationToken) =>
        SetStateAsync(node, ReplicaState.Rebuilding, cancellationToken);

    public Task MarkInSyncAsync(string node, CancellationToken cancellationToken) =>
        SetStateAsync(node, ReplicaState.InSync, cancellationToken);

    private async Task SetStateAsync(string node, ReplicaState state, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var record = await store.GetVolumeAsync(volumeName, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"volume {volumeName} no longer exists");
            if (record.Primary != self || record.Epoch != epoch)
            {
                throw new NotPrimaryException(
                    $"volume {volumeName}: {self} is no longer primary at epoch {epoch} (the record names {(record.Primary.Length == 0 ? "no node" : record.Primary)} at epoch {record.Epoch})");
            }

            var replica = record.Replicas.FirstOrDefault(r => r.Node == node);
            if (replica is null || replica.State == state)
            {
                return;
            }

            var updated = record with
            {
                Replicas = record.Replicas.Select(r => r.Node == node
                    ? r with { State = state, InSyncEpoch = state == ReplicaState.InSync ? epoch : r.InSyncEpoch }
                    : r).ToArray(),
            };
            if (await store.TryUpdateVolumeAsync(updated, record.Revision, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            // Another field of the record changed meanwhile (hosts, another replica): read it again.
            if (attempt > 100)
            {
                throw new InvalidOperationException($"volume {volumeName}: the record kept changing while marking {node} {state}");
            }
        }
    }
}
