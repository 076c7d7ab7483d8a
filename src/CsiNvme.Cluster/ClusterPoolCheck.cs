using CsiNvme.Metadata;
using CsiNvme.Storage.Thin;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Backends;
using CsiNvme.Volumes.Pools;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>
/// A cluster node's pools against the cluster's records, at start. The pairing is checked as on a single server, with
/// the cluster id as the store identity and the pool bindings kept per node: a pool last used with another cluster (or
/// a cluster whose etcd was lost and recreated) stops the start and nothing is changed. Once the pairing holds, an image
/// no record assigns to this node any more is reclaimed: its volume was deleted, or its replica moved to another node,
/// while this node was down; the cluster is the same one, so the record that would claim it cannot have been lost.
/// Images a record names but the pools lack are not a refusal here: the node starts that replica empty and out of sync,
/// and it is rebuilt from the others.
/// </summary>
internal static class ClusterPoolCheck
{
    public static async Task RunAsync(IClusterStore store, IVolumeBackend backend, string node, ILogger logger, CancellationToken cancellationToken)
    {
        if (backend is not ISnapshotBackend pools)
        {
            throw new InvalidOperationException($"a cluster node needs the thin backend (--backend thin), not {backend.Name}");
        }

        var state = await store.GetStateAsync(cancellationToken).ConfigureAwait(false);
        var bindings = (await store.ListPoolBindingsAsync(cancellationToken).ConfigureAwait(false)).ToDictionary(b => b.Name, StringComparer.Ordinal);
        var problems = new List<string>();
        var toPair = new List<PoolStatus>();
        foreach (var pool in backend.GetPools())
        {
            var owner = PoolOwner.Read(pools.GetPoolAnnotation(pool.Name));
            if (owner is not null && owner.StoreId != store.StoreId)
            {
                problems.Add($"pool {pool.Name} ({pool.DataPath}, pool id {pool.Id}) was last used with {owner.Store} (id {owner.StoreId}), not with cluster {store.ClusterId} ({store.Description})");
            }

            if (bindings.TryGetValue(pool.Name, out var bound) && bound.PoolId != pool.Id)
            {
                problems.Add($"node {node} of cluster {store.ClusterId} used a pool {pool.Name} of pool id {bound.PoolId}, but {pool.DataPath} holds pool id {pool.Id}");
            }

            if (owner?.StoreId != store.StoreId || bound?.PoolId != pool.Id)
            {
                toPair.Add(pool);
            }
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException(
                $"this node's pools and cluster {store.ClusterId} ({store.Description}) disagree; nothing was changed and every pool image was left in place:" +
                string.Concat(problems.Select(p => Environment.NewLine + "  - " + p)) + Environment.NewLine +
                "Check --etcd-endpoints and --node-name: these pools belong to another cluster or another node. A node that is new to the cluster starts with empty pools.");
        }

        var volumeIds = state.Volumes.Where(v => v.Replicas.Any(r => r.Node == node)).Select(v => v.Id).ToHashSet();
        var snapshotIds = state.Snapshots.Where(s => s.Nodes.Contains(node)).Select(s => s.Id).ToHashSet();
        foreach (var pool in backend.GetPools())
        {
            foreach (var image in pools.ListImages(pool.Name))
            {
                var claimed = image.IsSnapshot ? snapshotIds.Contains(image.Id) : volumeIds.Contains(image.Id);
                if (claimed)
                {
                    continue;
                }

                // Pending: a prepared replica or snapshot whose record never came. Committed: deleted or moved while down.
                ClusterPoolLog.ImageReclaimed(logger, pool.Name, image.Kind, image.Name, image.Id, image.State.ToString().ToLowerInvariant());
                if (image.IsSnapshot)
                {
                    pools.DeleteSnapshot(pool.Name, image.Id);
                }
                else
                {
                    backend.Delete(pool.Name, image.Id);
                }
            }
        }

        var ownerText = new PoolOwner(store.StoreId, store.Description).Serialize();
        foreach (var pool in toPair)
        {
            await store.SetPoolBindingAsync(new PoolBinding(pool.Name, pool.Id), cancellationToken).ConfigureAwait(false);
            pools.SetPoolAnnotation(pool.Name, ownerText);
        }
    }
}

internal static partial class ClusterPoolLog
{
    [LoggerMessage(EventId = 140, Level = LogLevel.Warning, Message = "Pool {Pool}: {Kind} {Name} (id {Id}, {State}) is no longer assigned to this node by the cluster; reclaimed")]
    public static partial void ImageReclaimed(ILogger logger, string pool, string kind, string name, Guid id, string state);
}
