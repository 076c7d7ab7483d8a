using System.Diagnostics;
using System.Globalization;
using Etcdserverpb;
using Google.Protobuf;
using Mvccpb;
using static CsiNvme.Metadata.Etcd.EtcdOps;

namespace CsiNvme.Metadata.Etcd;

/// <summary>
/// Nodes in etcd: ordinals and admin states (persistent, under ordinals/ and known/) and live records under leases
/// (nodes/). Keeps the memberships it handed out, so closing the store leaves the cluster cleanly.
/// </summary>
internal sealed class EtcdNodeRegistry : IAsyncDisposable
{
    private const int MaxWriteRounds = 100;
    private static readonly TimeSpan s_holderPoll = TimeSpan.FromMilliseconds(200);

    // etcd removes an expired lease's keys on its next expiry check (every 500 ms), a little after the TTL.
    private static readonly TimeSpan s_expirySlack = TimeSpan.FromSeconds(2);

    private readonly EtcdConnection _connection;
    private readonly EtcdKeys _keys;
    private readonly Lock _lock = new();
    private readonly HashSet<EtcdNodeMembership> _memberships = [];
    private bool _disposed;

    public EtcdNodeRegistry(EtcdConnection connection, EtcdKeys keys)
    {
        _connection = connection;
        _keys = keys;
    }

    public async Task<int> ReserveOrdinalAsync(string nodeName, CancellationToken cancellationToken)
    {
        ClusterLimits.ValidateNodeName(nodeName);
        ByteString knownKey = _keys.KnownNode(nodeName);

        // Each round that loses the race lost it to another node taking an ordinal, so rounds are bounded by the
        // number of ordinals.
        for (int round = 0; round <= ClusterLimits.MaxNodes; round++)
        {
            EtcdTxnResult read = await _connection.TxnAsync(
                "reading node ordinals",
                new TxnRequest { Success = { Get(knownKey), GetKeys(_keys.Range(EtcdKeys.Ordinals)) } },
                cancellationToken).ConfigureAwait(false);
            if (Single(read.Responses[0]) is { } known)
            {
                return EtcdDocuments.DecodeKnown(known).Ordinal;
            }

            var taken = new HashSet<int>();
            foreach (KeyValue kv in read.Responses[1].ResponseRange.Kvs)
            {
                if (_keys.Parse(kv.Key) is (EtcdKeys.Ordinals, var text) && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int used))
                {
                    taken.Add(used);
                }
            }

            int ordinal = Enumerable.Range(0, ClusterLimits.MaxNodes).FirstOrDefault(n => !taken.Contains(n), -1);
            if (ordinal < 0)
            {
                throw new InvalidOperationException($"all {ClusterLimits.MaxNodes} node ordinals are taken: node {nodeName} cannot get one");
            }

            ByteString ordinalKey = _keys.Ordinal(ordinal);
            EtcdTxnResult claim = await _connection.TxnAsync(
                $"reserving ordinal {ordinal} for node {nodeName}",
                new TxnRequest
                {
                    Compare = { Absent(knownKey), Absent(ordinalKey) },
                    Success = { Put(ordinalKey, ByteString.CopyFromUtf8(nodeName)), Put(knownKey, EtcdDocuments.EncodeKnown(nodeName, ordinal, NodeAdminState.Active)) },
                    Failure = { Get(knownKey) },
                },
                cancellationToken).ConfigureAwait(false);
            if (claim.Succeeded)
            {
                return ordinal;
            }

            // Known meanwhile: by a concurrent call for the same node, or by this call's own earlier attempt.
            if (Single(claim.Responses[0]) is { } now)
            {
                return EtcdDocuments.DecodeKnown(now).Ordinal;
            }
        }

        throw new InvalidOperationException($"node {nodeName} found no free ordinal after {ClusterLimits.MaxNodes} tries");
    }

    public async Task<INodeMembership> JoinAsync(NodeRecord self, TimeSpan leaseTtl, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(self);
        ClusterLimits.ValidateNodeName(self.Name);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(leaseTtl, TimeSpan.Zero);
        ThrowIfDisposed();

        KeyValue? known = await _connection.GetAsync($"reading node {self.Name}", _keys.KnownNode(self.Name), cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"node {self.Name} has no ordinal: reserve one (ReserveOrdinalAsync) before joining");
        int ordinal = EtcdDocuments.DecodeKnown(known).Ordinal;
        if (ordinal != self.Ordinal)
        {
            throw new InvalidOperationException($"node {self.Name} has ordinal {ordinal}, not {self.Ordinal}");
        }

        ByteString liveKey = _keys.LiveNode(self.Name);
        ByteString record = EtcdDocuments.Encode(self);
        long ttlSeconds = Math.Max(1, (long)Math.Ceiling(leaseTtl.TotalSeconds));
        long waitUntil = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            KeyValue? holder = await _connection.GetAsync($"reading node {self.Name}", liveKey, cancellationToken).ConfigureAwait(false);
            if (holder is not null)
            {
                waitUntil = await WaitForHolderAsync(self.Name, holder, waitUntil, cancellationToken).ConfigureAwait(false);
                continue;
            }

            // The deadline counts from before the grant was sent: etcd starts the TTL no earlier than that.
            long sent = Stopwatch.GetTimestamp();
            LeaseGrantResponse grant = await _connection.CallAsync($"granting a lease to node {self.Name}", (_, deadline, token) =>
                _connection.Client.LeaseGrantAsync(new LeaseGrantRequest { TTL = ttlSeconds }, deadline: deadline, cancellationToken: token),
                cancellationToken).ConfigureAwait(false);
            if (!string.IsNullOrEmpty(grant.Error) || grant.TTL <= 0)
            {
                throw new InvalidOperationException($"etcd refused a lease of {ttlSeconds} s for node {self.Name}: {grant.Error}");
            }

            EtcdTxnResult put = await _connection.TxnAsync(
                $"publishing node {self.Name}",
                new TxnRequest { Compare = { Absent(liveKey) }, Success = { Put(liveKey, record, grant.ID) }, Failure = { Get(liveKey) } },
                cancellationToken).ConfigureAwait(false);
            bool ours = put.Succeeded || (put.Attempt > 0 && Single(put.Responses[0])?.Lease == grant.ID);
            if (!ours)
            {
                // Another process published this node in between; the loop waits for it like for an earlier incarnation.
                await _connection.RevokeQuietlyAsync(self.Name, grant.ID).ConfigureAwait(false);
                continue;
            }

            var membership = new EtcdNodeMembership(_connection, liveKey, self, grant.ID, grant.TTL, sent, Forget);
            lock (_lock)
            {
                if (_disposed)
                {
                    // Closed while joining: leave again at once.
                    _ = membership.DisposeAsync().AsTask();
                    throw new ObjectDisposedException(nameof(EtcdMetadataStore));
                }

                _memberships.Add(membership);
            }

            membership.Start();
            return membership;
        }
    }

    public async Task<IReadOnlyList<NodeStatus>> ListAsync(CancellationToken cancellationToken)
    {
        EtcdTxnResult response = await _connection.TxnAsync(
            "listing nodes",
            new TxnRequest { Success = { GetRange(_keys.Range(EtcdKeys.Known)), GetRange(_keys.Range(EtcdKeys.Nodes)) } },
            cancellationToken).ConfigureAwait(false);
        return Merge(response.Responses[0].ResponseRange, response.Responses[1].ResponseRange);
    }

    public async Task SetAdminStateAsync(string nodeName, NodeAdminState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(nodeName);
        ByteString knownKey = _keys.KnownNode(nodeName);
        for (int round = 0; round < MaxWriteRounds; round++)
        {
            KeyValue current = await _connection.GetAsync($"reading node {nodeName}", knownKey, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"node {nodeName} is not known to the cluster");
            var (name, ordinal, now) = EtcdDocuments.DecodeKnown(current);
            if (now == state)
            {
                return;
            }

            EtcdTxnResult put = await _connection.TxnAsync(
                $"setting node {nodeName} {state}",
                new TxnRequest { Compare = { ModRevisionIs(knownKey, current.ModRevision) }, Success = { Put(knownKey, EtcdDocuments.EncodeKnown(name, ordinal, state)) } },
                cancellationToken).ConfigureAwait(false);
            if (put.Succeeded)
            {
                return;
            }
        }

        throw new InvalidOperationException($"node {nodeName} changed {MaxWriteRounds} times while its admin state was being set");
    }

    /// <summary>Known nodes (ordered by name) with the live record of those whose lease holds one.</summary>
    public static IReadOnlyList<NodeStatus> Merge(RangeResponse known, RangeResponse live)
    {
        var liveByName = live.Kvs.Select(EtcdDocuments.DecodeNode).ToDictionary(n => n.Name, StringComparer.Ordinal);
        return known.Kvs
            .Select(EtcdDocuments.DecodeKnown)
            .OrderBy(k => k.Name, StringComparer.Ordinal)
            .Select(k =>
            {
                NodeRecord? record = liveByName.GetValueOrDefault(k.Name);
                return new NodeStatus(record, k.Name, k.Ordinal, k.AdminState, record is not null);
            })
            .ToArray()
            .AsReadOnly();
    }

    public async ValueTask DisposeAsync()
    {
        EtcdNodeMembership[] open;
        lock (_lock)
        {
            _disposed = true;
            open = [.. _memberships];
        }

        foreach (EtcdNodeMembership membership in open)
        {
            await membership.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits a little while an earlier holder of the node's live record is there. Returns the time (Stopwatch) after
    /// which that holder can no longer be an expiring lease: its granted TTL, plus etcd's expiry slack, from when it
    /// was first seen. Past that, another process keeps it alive and joining fails.
    /// </summary>
    private async Task<long> WaitForHolderAsync(string node, KeyValue holder, long waitUntil, CancellationToken cancellationToken)
    {
        if (waitUntil == 0)
        {
            LeaseTimeToLiveResponse ttl = await _connection.CallAsync($"reading lease {holder.Lease:x}", (_, deadline, token) =>
                _connection.Client.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = holder.Lease }, deadline: deadline, cancellationToken: token),
                cancellationToken).ConfigureAwait(false);
            EtcdLog.WaitingForEarlierLease(_connection.Logger, node, holder.Lease, ttl.TTL);
            TimeSpan bound = TimeSpan.FromSeconds(Math.Max(ttl.GrantedTTL, 1)) + s_expirySlack;
            waitUntil = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
        }
        else if (Stopwatch.GetTimestamp() > waitUntil)
        {
            throw new InvalidOperationException(
                $"node {node} stays live under lease {holder.Lease:x} past that lease's time to live: another process runs with this node name");
        }

        await Task.Delay(s_holderPoll, cancellationToken).ConfigureAwait(false);
        return waitUntil;
    }

    private void Forget(EtcdNodeMembership membership)
    {
        lock (_lock)
        {
            _memberships.Remove(membership);
        }
    }

    private void ThrowIfDisposed()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(EtcdMetadataStore));
        }
    }
}
