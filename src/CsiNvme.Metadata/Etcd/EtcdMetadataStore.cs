using Etcdserverpb;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mvccpb;
using static CsiNvme.Metadata.Etcd.EtcdOps;

namespace CsiNvme.Metadata.Etcd;

/// <summary>
/// Cluster metadata in etcd (v3 API over gRPC). Every key lives under a prefix (default "/csinvme/v1/"):
/// <list type="table">
/// <item><term>cluster-id</term><description>the cluster's id (a UUID in text), created by the first connection</description></item>
/// <item><term>ordinals/&lt;n&gt;</term><description>the node name that owns ordinal n (decimal); created once, never changed</description></item>
/// <item><term>known/&lt;node&gt;</term><description>JSON {name, ordinal, adminState}: a node known to the cluster, its admin state (persistent)</description></item>
/// <item><term>nodes/&lt;node&gt;</term><description>JSON live record of a running node, attached to its lease: gone when the lease ends</description></item>
/// <item><term>volumes/&lt;name&gt;</term><description>JSON volume record (spec, replicas, primary, epoch); its mod_revision is <see cref="VolumeRecord.Revision"/></description></item>
/// <item><term>volume-ids/&lt;uuid&gt;</term><description>the name of the volume with that id, so ids stay unique</description></item>
/// <item><term>snapshots/&lt;name&gt;</term><description>JSON snapshot record</description></item>
/// <item><term>snapshot-ids/&lt;uuid&gt;</term><description>the name of the snapshot with that id</description></item>
/// <item><term>reservations/&lt;volume-uuid&gt;</term><description>the NVMe reservation state of the volume's namespace (binary), deleted with the volume</description></item>
/// </list>
/// The volume and snapshot calls behave as <see cref="SqliteMetadataStore"/>'s: creation is a transaction on the name
/// (and id) being absent, updates keep the fields fixed at creation, lists are ordered by name. Each call is bounded
/// (<see cref="EtcdStoreOptions"/>) and fails with <see cref="MetadataStoreUnavailableException"/> naming the
/// endpoints when etcd does not answer.
/// </summary>
public sealed class EtcdMetadataStore : IClusterStore
{
    // Read-modify-write loops retry when another writer got in between; each lost round means another writer made
    // progress, so this bound is only reached under a pathological write storm on one record.
    private const int MaxWriteRounds = 100;

    private readonly EtcdConnection _connection;
    private readonly EtcdKeys _keys;
    private readonly EtcdNodeRegistry _nodes;

    private EtcdMetadataStore(EtcdConnection connection, EtcdKeys keys, string clusterId)
    {
        _connection = connection;
        _keys = keys;
        ClusterId = clusterId;
        _nodes = new EtcdNodeRegistry(connection, keys);
    }

    public string Description => "etcd:" + _connection.Endpoints;

    /// <summary>The prefix every key of this store lives under.</summary>
    public string Prefix => _keys.Prefix;

    public string ClusterId { get; }

    /// <summary>The cluster id: every node's pools are paired with the cluster (and, by <see cref="BindingScope"/>, the node).</summary>
    public Guid StoreId => Guid.Parse(ClusterId);

    /// <summary>
    /// The node whose pool bindings <see cref="ListPoolBindingsAsync"/> and <see cref="SetPoolBindingAsync"/> read and
    /// write: pool names are unique per node only. Set once by the node before it checks its pools.
    /// </summary>
    public string BindingScope { get; set; } = "";

    public async Task<IReadOnlyList<PoolBinding>> ListPoolBindingsAsync(CancellationToken cancellationToken = default)
    {
        var family = _keys.PoolBindingsOf(BindingScope);
        RangeResponse response = await _connection.RangeAsync("listing pool bindings", _keys.Range(family), cancellationToken).ConfigureAwait(false);
        var bindings = new List<PoolBinding>();
        foreach (var kv in response.Kvs)
        {
            var key = kv.Key.ToStringUtf8();
            var name = key[(key.LastIndexOf('/') + 1)..];
            if (Guid.TryParse(kv.Value.ToStringUtf8(), out var id))
            {
                bindings.Add(new PoolBinding(name, id));
            }
        }

        return ByName(bindings, b => b.Name);
    }

    public async Task SetPoolBindingAsync(PoolBinding binding, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(binding);
        ArgumentException.ThrowIfNullOrEmpty(binding.Name);
        if (binding.Name.Contains('/'))
        {
            throw new ArgumentException($"pool name '{binding.Name}' contains '/'", nameof(binding));
        }

        var key = _keys.PoolBinding(BindingScope, binding.Name);
        await _connection.CallAsync("recording pool binding " + binding.Name, (_, deadline, token) =>
            _connection.Client.PutAsync(new PutRequest { Key = key, Value = ByteString.CopyFromUtf8(binding.PoolId.ToString("D")) }, deadline: deadline, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Connects to etcd and reads the cluster id, creating it when the prefix is empty. Fails with
    /// <see cref="MetadataStoreUnavailableException"/> when no endpoint answers within the options' deadline.
    /// </summary>
    /// <param name="endpoints">Client URLs of the etcd members, e.g. "http://127.0.0.1:2379" (http when no scheme is given).</param>
    public static async Task<EtcdMetadataStore> ConnectAsync(
        IReadOnlyList<string> endpoints,
        string prefix = EtcdStoreOptions.DefaultPrefix,
        EtcdStoreOptions? options = null,
        ILogger? logger = null,
        CancellationToken cancellationToken = default)
    {
        var keys = new EtcdKeys(prefix);
        var connection = new EtcdConnection(endpoints, options ?? new EtcdStoreOptions(), logger ?? NullLogger.Instance);
        try
        {
            ByteString proposed = ByteString.CopyFromUtf8(Guid.NewGuid().ToString("D"));
            TxnResponse response = await connection.CallAsync("reading the cluster id", (_, deadline, token) =>
                connection.Client.TransactionAsync(
                    new TxnRequest { Compare = { Absent(keys.ClusterId) }, Success = { Put(keys.ClusterId, proposed) }, Failure = { Get(keys.ClusterId) } },
                    deadline: deadline,
                    cancellationToken: token), cancellationToken).ConfigureAwait(false);

            // A retried attempt finds the id its first attempt wrote, so both branches agree.
            ByteString id = response.Succeeded ? proposed : Single(response.Responses[0])!.Value;
            return new EtcdMetadataStore(connection, keys, id.ToStringUtf8());
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public async Task<VolumeRecord?> GetVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        KeyValue? kv = await _connection.GetAsync("reading volume " + name, _keys.Volume(name), cancellationToken).ConfigureAwait(false);
        return kv is null ? null : EtcdDocuments.DecodeVolume(kv);
    }

    public async Task<IReadOnlyList<VolumeRecord>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        RangeResponse response = await _connection.RangeAsync("listing volumes", _keys.Range(EtcdKeys.Volumes), cancellationToken).ConfigureAwait(false);
        return ByName(response.Kvs.Select(EtcdDocuments.DecodeVolume), v => v.Name);
    }

    public Task<bool> TryCreateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord stored = VolumeRecordNormalization.Normalize(volume);
        return CreateAsync("volume", stored.Name, stored.Id, _keys.Volume(stored.Name), _keys.VolumeId(stored.Id), EtcdDocuments.Encode(stored), cancellationToken);
    }

    public async Task<bool> UpdateVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken = default)
    {
        VolumeRecord update = VolumeRecordNormalization.Normalize(volume);
        for (int round = 0; round < MaxWriteRounds; round++)
        {
            VolumeRecord? current = await GetVolumeAsync(update.Name, cancellationToken).ConfigureAwait(false);
            if (current is null)
            {
                return false;
            }

            if (await ReplaceVolumeAsync(current, update, cancellationToken).ConfigureAwait(false))
            {
                return true;
            }
        }

        throw new InvalidOperationException($"volume {update.Name} changed {MaxWriteRounds} times while it was being updated");
    }

    public async Task<bool> TryUpdateVolumeAsync(VolumeRecord updated, long expectedRevision, CancellationToken cancellationToken = default)
    {
        VolumeRecord update = VolumeRecordNormalization.Normalize(updated);
        VolumeRecord? current = await GetVolumeAsync(update.Name, cancellationToken).ConfigureAwait(false);
        return current is not null
            && current.Revision == expectedRevision
            && await ReplaceVolumeAsync(current, update, cancellationToken).ConfigureAwait(false);
    }

    public Task<bool> DeleteVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return DeleteAsync("volume", name, _keys.Volume(name), VolumeKeysOf, expectedRevision: null, cancellationToken);
    }

    public Task<bool> TryDeleteVolumeAsync(string name, long expectedRevision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return DeleteAsync("volume", name, _keys.Volume(name), VolumeKeysOf, expectedRevision, cancellationToken);
    }

    public async Task<SnapshotRecord?> GetSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        KeyValue? kv = await _connection.GetAsync("reading snapshot " + name, _keys.Snapshot(name), cancellationToken).ConfigureAwait(false);
        return kv is null ? null : EtcdDocuments.DecodeSnapshot(kv);
    }

    public async Task<IReadOnlyList<SnapshotRecord>> ListSnapshotsAsync(CancellationToken cancellationToken = default)
    {
        RangeResponse response = await _connection.RangeAsync("listing snapshots", _keys.Range(EtcdKeys.Snapshots), cancellationToken).ConfigureAwait(false);
        return ByName(response.Kvs.Select(EtcdDocuments.DecodeSnapshot), s => s.Name);
    }

    public Task<bool> TryCreateSnapshotAsync(SnapshotRecord snapshot, CancellationToken cancellationToken = default)
    {
        SnapshotRecord stored = VolumeRecordNormalization.Normalize(snapshot);
        return CreateAsync("snapshot", stored.Name, stored.Id, _keys.Snapshot(stored.Name), _keys.SnapshotId(stored.Id), EtcdDocuments.Encode(stored), cancellationToken);
    }

    public Task<bool> DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return DeleteAsync("snapshot", name, _keys.Snapshot(name), kv => [_keys.SnapshotId(EtcdDocuments.DecodeSnapshot(kv).Id)], expectedRevision: null, cancellationToken);
    }

    public async Task<byte[]?> GetReservationStateAsync(Guid volumeId, CancellationToken cancellationToken = default)
    {
        KeyValue? kv = await _connection.GetAsync($"reading the reservations of volume {volumeId}", _keys.Reservation(volumeId), cancellationToken).ConfigureAwait(false);
        return kv?.Value.ToByteArray();
    }

    public async Task SaveReservationStateAsync(Guid volumeId, byte[] state, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(state);

        // Only for a volume that exists (its id key is present), so a late save never outlives a deleted volume.
        EtcdTxnResult response = await _connection.TxnAsync($"saving the reservations of volume {volumeId}", new TxnRequest
        {
            Compare = { Present(_keys.VolumeId(volumeId)) },
            Success = { Put(_keys.Reservation(volumeId), ByteString.CopyFrom(state)) },
        }, cancellationToken).ConfigureAwait(false);
        if (!response.Succeeded)
        {
            throw new InvalidOperationException($"no volume has id {volumeId}");
        }
    }

    /// <summary>The keys deleted with a volume's record: its id key and its reservation state.</summary>
    private ByteString[] VolumeKeysOf(KeyValue record)
    {
        Guid id = EtcdDocuments.DecodeVolume(record).Id;
        return [_keys.VolumeId(id), _keys.Reservation(id)];
    }

    public Task<int> ReserveOrdinalAsync(string nodeName, CancellationToken cancellationToken = default) =>
        _nodes.ReserveOrdinalAsync(nodeName, cancellationToken);

    public Task<INodeMembership> JoinAsync(NodeRecord self, TimeSpan leaseTtl, CancellationToken cancellationToken = default) =>
        _nodes.JoinAsync(self, leaseTtl, cancellationToken);

    public Task<IReadOnlyList<NodeStatus>> ListNodesAsync(CancellationToken cancellationToken = default) =>
        _nodes.ListAsync(cancellationToken);

    public Task SetNodeAdminStateAsync(string nodeName, NodeAdminState state, CancellationToken cancellationToken = default) =>
        _nodes.SetAdminStateAsync(nodeName, state, cancellationToken);

    public async Task<ClusterState> GetStateAsync(CancellationToken cancellationToken = default)
    {
        // One transaction of four ranges: every list is read at the same revision.
        EtcdTxnResult response = await _connection.TxnAsync("reading the cluster state", new TxnRequest
        {
            Success =
            {
                GetRange(_keys.Range(EtcdKeys.Known)),
                GetRange(_keys.Range(EtcdKeys.Nodes)),
                GetRange(_keys.Range(EtcdKeys.Volumes)),
                GetRange(_keys.Range(EtcdKeys.Snapshots)),
            },
        }, cancellationToken).ConfigureAwait(false);
        return new ClusterState(
            response.Revision,
            EtcdNodeRegistry.Merge(response.Responses[0].ResponseRange, response.Responses[1].ResponseRange),
            ByName(response.Responses[2].ResponseRange.Kvs.Select(EtcdDocuments.DecodeVolume), v => v.Name),
            ByName(response.Responses[3].ResponseRange.Kvs.Select(EtcdDocuments.DecodeSnapshot), s => s.Name));
    }

    public async Task<long> GetRevisionAsync(CancellationToken cancellationToken = default)
    {
        RangeResponse response = await _connection.CallAsync("reading the revision", (_, deadline, token) =>
            _connection.Client.GetAsync(new RangeRequest { Key = _keys.ClusterId, CountOnly = true }, deadline: deadline, cancellationToken: token),
            cancellationToken).ConfigureAwait(false);
        return response.Header.Revision;
    }

    public IAsyncEnumerable<ClusterChange> WatchAsync(long afterRevision, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterRevision);
        return EtcdChangeFeed.RunAsync(_connection, _keys, afterRevision, cancellationToken);
    }

    /// <summary>Leaves the cluster with every membership still open (revoking their leases), then closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        await _nodes.DisposeAsync().ConfigureAwait(false);
        _connection.Dispose();
    }

    private async Task<bool> ReplaceVolumeAsync(VolumeRecord current, VolumeRecord update, CancellationToken cancellationToken)
    {
        // Identity, creation time, pool and labels are fixed at creation; only the mutable fields are replaced.
        VolumeRecord merged = update with { Id = current.Id, CreatedAt = current.CreatedAt, Pool = current.Pool, Labels = current.Labels };
        ByteString key = _keys.Volume(update.Name);
        ByteString value = EtcdDocuments.Encode(merged);
        EtcdTxnResult response = await _connection.TxnAsync("updating volume " + update.Name, new TxnRequest
        {
            Compare = { ModRevisionIs(key, current.Revision) },
            Success = { Put(key, value) },
            Failure = { Get(key) },
        }, cancellationToken).ConfigureAwait(false);

        // A retried attempt whose first one was applied finds exactly the bytes it wrote.
        return response.Succeeded || (response.Attempt > 0 && Single(response.Responses[0]) is { } now && now.Value == value);
    }

    private async Task<bool> CreateAsync(string kind, string name, Guid id, ByteString nameKey, ByteString idKey, ByteString value, CancellationToken cancellationToken)
    {
        EtcdTxnResult response = await _connection.TxnAsync($"creating {kind} {name}", new TxnRequest
        {
            Compare = { Absent(nameKey), Absent(idKey) },
            Success = { Put(nameKey, value), Put(idKey, ByteString.CopyFromUtf8(name)) },
            Failure = { Get(nameKey) },
        }, cancellationToken).ConfigureAwait(false);
        if (response.Succeeded)
        {
            return true;
        }

        KeyValue? existing = Single(response.Responses[0]);
        if (existing is not null)
        {
            return response.Attempt > 0 && existing.Value == value;
        }

        throw new InvalidOperationException($"A {kind} with id {id} already exists.");
    }

    /// <summary>Deletes a record and its id key, unconditionally (expectedRevision null) or only at that revision.</summary>
    private async Task<bool> DeleteAsync(string kind, string name, ByteString nameKey, Func<KeyValue, ByteString[]> idKeysOf, long? expectedRevision, CancellationToken cancellationToken)
    {
        for (int round = 0; round < MaxWriteRounds; round++)
        {
            KeyValue? current = await _connection.GetAsync($"reading {kind} {name}", nameKey, cancellationToken).ConfigureAwait(false);
            if (current is null || (expectedRevision is { } expected && current.ModRevision != expected))
            {
                return false;
            }

            var request = new TxnRequest
            {
                Compare = { ModRevisionIs(nameKey, current.ModRevision) },
                Success = { Delete(nameKey) },
                Failure = { Get(nameKey) },
            };
            request.Success.AddRange(idKeysOf(current).Select(Delete));
            EtcdTxnResult response = await _connection.TxnAsync($"deleting {kind} {name}", request, cancellationToken).ConfigureAwait(false);
            if (response.Succeeded)
            {
                return true;
            }

            KeyValue? now = Single(response.Responses[0]);
            if (now is null && response.Attempt > 0)
            {
                // Gone after a retry: most likely the first attempt deleted it; either way it no longer exists.
                return true;
            }

            if (expectedRevision is not null || now is null)
            {
                return false;
            }
        }

        throw new InvalidOperationException($"{kind} {name} changed {MaxWriteRounds} times while it was being deleted");
    }

    private static IReadOnlyList<T> ByName<T>(IEnumerable<T> records, Func<T, string> name) =>
        records.OrderBy(name, StringComparer.Ordinal).ToArray().AsReadOnly();
}
