using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.Api.V1.Agent;
using CsiNvme.Metadata;
using CsiNvme.Volumes;
using CsiNvme.Volumes.Catalog;
using CsiNvme.Volumes.Local;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

/// <summary>
/// The management API of a cluster, answered by any node: records in etcd (compare-and-swap), the work on copies done
/// by the nodes that hold them through their agents, placement by <see cref="Placement"/>.
/// </summary>
public sealed class ClusterCatalog(ClusterNode node, ILogger<ClusterCatalog> logger) : IVolumeCatalog, INodeCatalog
{
    private static readonly TimeSpan _serveWait = TimeSpan.FromSeconds(30);
    // How long a primary-only call waits for the node the record names to finish taking over, and how often it asks.
    private static readonly TimeSpan _primaryTakeoverWait = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan _primaryTakeoverPoll = TimeSpan.FromMilliseconds(100);
    // How long CreateVolume waits for the cluster view before it says too few nodes are usable, and how often it looks.
    private static readonly TimeSpan _placementViewWait = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan _placementViewPoll = TimeSpan.FromMilliseconds(100);

    private IClusterStore Store => node.Store;

    private NodeAgentClients Agents => node.Agents;

    public async Task<Volume> CreateAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        var name = request.Name;
        VolumeRules.ValidateName(name);
        var labels = VolumeRules.ValidateLabels(request.Labels);
        var hosts = VolumeRules.ValidateHosts(request.AllowedHosts);
        var replicas = request.Replicas == 0 ? 1 : (int)request.Replicas;
        VolumeRules.ValidateReplicaCount((uint)replicas);

        var sourceSnapshot = string.IsNullOrEmpty(request.SourceSnapshot) ? null : request.SourceSnapshot;
        var sourceVolume = string.IsNullOrEmpty(request.SourceVolume) ? null : request.SourceVolume;
        if (sourceSnapshot is not null && sourceVolume is not null)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "give either a source snapshot or a source volume, not both");
        }

        var blockSize = VolumeRules.ValidateBlockSize(request.BlockSize);
        var pool = string.IsNullOrEmpty(request.Pool) ? null : request.Pool;
        long sizeBytes = request.SizeBytes == 0 && (sourceSnapshot ?? sourceVolume) is not null ? 0 : VolumeRules.RoundSize(request.SizeBytes);
        if (await Store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false) is { } existing)
        {
            throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists (id {existing.Id}, {existing.SizeBytes} bytes)");
        }

        if (pool is not null && !node.Nodes.Any(n => n.IsLive && n.Live is { } live && live.Pools.Any(p => p.Name == pool)))
        {
            // A node that is down registers no pools: it may have this one.
            var known = node.Nodes.Where(n => n.IsLive && n.Live is not null).SelectMany(n => n.Live!.Pools.Select(p => p.Name)).Distinct().Order(StringComparer.Ordinal);
            var down = node.Nodes.Where(n => !n.IsLive).Select(n => n.Name).ToArray();
            throw down.Length == 0
                ? new VolumeException(VolumeError.InvalidArgument, $"pool {pool} does not exist on any node (pools: {string.Join(", ", known)})")
                : new VolumeException(VolumeError.ResourceExhausted, $"no node that is up has a pool {pool} (pools: {string.Join(", ", known)}; down: {string.Join(", ", down)})");
        }

        // Nodes that hold the clone source; a clone's copies start there, any more are rebuilt from the primary.
        IReadOnlyList<string> sourceNodes = [];
        Guid? snapshotId = null;
        Guid? volumeId = null;
        if (sourceSnapshot is not null)
        {
            VolumeRules.ValidateName(sourceSnapshot, "source snapshot");
            var snapshot = await Store.GetSnapshotAsync(sourceSnapshot, cancellationToken).ConfigureAwait(false)
                ?? throw new VolumeException(VolumeError.NotFound, $"snapshot {sourceSnapshot} not found");
            (snapshotId, sourceNodes) = (snapshot.Id, pool is null || snapshot.Pool == pool ? snapshot.Nodes : []);
            sizeBytes = CloneSize(sizeBytes, snapshot.SizeBytes, "snapshot", sourceSnapshot);
            blockSize = request.BlockSize == 0 ? snapshot.BlockSize : blockSize;
        }
        else if (sourceVolume is not null)
        {
            VolumeRules.ValidateName(sourceVolume, "source volume");
            var source = await Store.GetVolumeAsync(sourceVolume, cancellationToken).ConfigureAwait(false)
                ?? throw new VolumeException(VolumeError.NotFound, $"volume {sourceVolume} not found");
            (volumeId, sourceNodes) = (source.Id, source.Replicas.Where(r => r.State == ReplicaState.InSync && (pool is null || r.Pool == pool)).Select(r => r.Node).ToArray());
            sizeBytes = CloneSize(sizeBytes, source.SizeBytes, "volume", sourceVolume);
            blockSize = request.BlockSize == 0 ? source.BlockSize : blockSize;
        }

        var isClone = snapshotId is not null || volumeId is not null;
        if (isClone && pool is not null && sourceNodes.Count == 0)
        {
            // As on a single server: clones share clusters with their source, within one pool.
            throw new VolumeException(VolumeError.FailedPrecondition, $"{sourceSnapshot ?? sourceVolume} is not in pool {pool}: a clone stays in its source's pool");
        }

        // This node sees the others through etcd's watch: a node that registered, renewed its registration or was
        // undrained a moment ago may not be in the view yet, so too few usable nodes is only final after a short wait.
        var viewDeadline = DateTime.UtcNow + _placementViewWait;
        IReadOnlyList<Placement.Candidate> candidates;
        IReadOnlyList<Placement.Candidate>? chosen;
        while (true)
        {
            candidates = Placement.Candidates(node.Nodes, node.Records, pool);
            if (isClone)
            {
                var holders = candidates.Where(c => sourceNodes.Contains(c.Name)).ToArray();
                if (holders.Length == 0)
                {
                    throw new VolumeException(VolumeError.FailedPrecondition, $"no live node holds {sourceSnapshot ?? sourceVolume} to clone it (it is on {string.Join(", ", sourceNodes)})");
                }

                var first = Placement.Choose(holders, Math.Min(replicas, holders.Length), sizeBytes: sizeBytes)!;
                var rest = replicas > first.Count ? Placement.Choose(candidates, replicas - first.Count, first.Select(c => c.Name).ToArray(), sizeBytes) : [];
                chosen = rest is null ? null : [.. first, .. rest];
            }
            else
            {
                chosen = Placement.Choose(candidates, replicas, sizeBytes: sizeBytes);
            }

            if (chosen is not null || DateTime.UtcNow >= viewDeadline)
            {
                break;
            }

            await Task.Delay(_placementViewPoll, cancellationToken).ConfigureAwait(false);
        }

        if (chosen is null)
        {
            throw Exhausted(replicas, candidates.Count, pool);
        }

        var primary = Placement.ChoosePrimary(isClone ? chosen.Where(c => sourceNodes.Contains(c.Name)).ToArray() : chosen);
        var id = Guid.NewGuid();
        var record = new VolumeRecord(id, name, sizeBytes, blockSize, request.AllowAnyHost, hosts, VolumeRules.Now())
        {
            Labels = labels,
            ReplicaCount = replicas,
            Primary = primary.Name,
            Epoch = 1,
        };

        var prepared = new List<ReplicaRecord>();
        try
        {
            foreach (var candidate in chosen)
            {
                var holdsSource = sourceNodes.Contains(candidate.Name);
                var placedIn = await Agents.PrepareReplicaAsync(node, candidate.Name, record, holdsSource ? snapshotId : null, holdsSource ? volumeId : null, cancellationToken, pool).ConfigureAwait(false);
                prepared.Add(new ReplicaRecord(candidate.Name, placedIn, !isClone || holdsSource ? ReplicaState.InSync : ReplicaState.OutOfSync, !isClone || holdsSource ? 1 : 0));
            }
        }
        catch (RpcException e)
        {
            await DiscardAsync(prepared, id).ConfigureAwait(false);
            throw new VolumeException(VolumeError.Internal, $"preparing the replicas of volume {name} failed: {e.Status.Detail}", e);
        }

        record = record with { Replicas = prepared, Pool = prepared.First(p => p.Node == primary.Name).Pool };
        bool created;
        try
        {
            created = await Store.TryCreateVolumeAsync(record, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await DiscardAsync(prepared, id).ConfigureAwait(false);
            throw new VolumeException(VolumeError.Internal, $"recording volume {name} failed: {e.Message}", e);
        }

        if (!created)
        {
            await DiscardAsync(prepared, id).ConfigureAwait(false);
            throw new VolumeException(VolumeError.AlreadyExists, $"volume {name} already exists");
        }

        VolumeLog.VolumeCreated(logger, name, id, sizeBytes, (long)request.SizeBytes, blockSize, VolumeNaming.SubsystemNqn(id));
        await WaitServedAsync(record, cancellationToken).ConfigureAwait(false);
        return await DescribeAsync(await Store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false) ?? record, cancellationToken).ConfigureAwait(false);
    }

    private VolumeException Exhausted(int replicas, int usable, string? pool)
    {
        var unusable = node.Nodes
            .Select(n => (n.Name, Reason: Placement.UnusableReason(n)))
            .Where(n => n.Reason is not null)
            .Select(n => $"{n.Name} ({n.Reason})")
            .ToArray();
        return new(VolumeError.ResourceExhausted,
            $"{replicas} replicas need {replicas} storage nodes that are up, active and have room{(pool is null ? "" : $" in pool {pool}")}; "
            + $"{(usable == 1 ? "1 is" : $"{usable} are")} usable{(unusable.Length == 0 ? "" : $" (not usable: {string.Join(", ", unusable)})")}");
    }

    private static long CloneSize(long requested, long sourceSize, string kind, string source)
    {
        if (requested == 0)
        {
            return sourceSize;
        }

        if (requested < sourceSize)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"a clone must be at least as large as its source: {kind} {source} is {sourceSize} bytes ({ByteSize.Format(sourceSize)}), {requested} asked");
        }

        return requested;
    }

    private async Task DiscardAsync(IEnumerable<ReplicaRecord> prepared, Guid id)
    {
        foreach (var replica in prepared)
        {
            await Agents.DiscardReplicaAsync(node, replica.Node, id, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Waits (bounded) until the primary serves the new volume, so a host may connect as soon as the call returns.</summary>
    private async Task WaitServedAsync(VolumeRecord record, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _serveWait;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var status = await Agents.For(node, record.Primary).GetVolumeStatusAsync(new GetVolumeStatusRequest { VolumeId = record.Id.ToString("D") }, Agents.Call(cancellationToken)).ConfigureAwait(false);
                if (status.Role == "primary")
                {
                    return;
                }
            }
            catch (RpcException)
            {
                // The primary may not have seen the record yet.
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    public async Task<Volume> GetAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        return await DescribeAsync(await FindAsync(name, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<Volume>> ListAsync(CancellationToken cancellationToken = default)
    {
        var records = await Store.ListVolumesAsync(cancellationToken).ConfigureAwait(false);
        return await Task.WhenAll(records.Select(r => DescribeAsync(r, cancellationToken))).ConfigureAwait(false);
    }

    private async Task<VolumeRecord> FindAsync(string name, CancellationToken cancellationToken) =>
        await Store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false)
            ?? throw new VolumeException(VolumeError.NotFound, $"volume {name} not found");

    public async Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        for (var attempt = 0; ; attempt++)
        {
            var record = await FindAsync(name, cancellationToken).ConfigureAwait(false);
            if (await Store.TryDeleteVolumeAsync(name, record.Revision, cancellationToken).ConfigureAwait(false))
            {
                VolumeLog.VolumeDeleted(logger, name, record.Id);
                return;
            }

            if (attempt > 100)
            {
                throw new VolumeException(VolumeError.Internal, $"volume {name}: its record kept changing while it was deleted");
            }
        }
    }

    public async Task<Volume> ResizeAsync(string name, ulong requestedSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        var newSize = VolumeRules.RoundSize(requestedSizeBytes);
        var record = await FindAsync(name, cancellationToken).ConfigureAwait(false);
        if (newSize < record.SizeBytes)
        {
            throw new VolumeException(
                VolumeError.FailedPrecondition,
                $"volume {name} is {record.SizeBytes} bytes ({ByteSize.Format(record.SizeBytes)}); it cannot shrink to {newSize} bytes: volumes only grow");
        }

        if (newSize > record.SizeBytes)
        {
            await CallPrimaryAsync(record, client => client.ResizeVolumeAsync(new Api.V1.Agent.ResizeVolumeRequest { VolumeName = name, SizeBytes = (ulong)newSize }, Agents.Call(cancellationToken)).ResponseAsync).ConfigureAwait(false);
        }

        return await GetAsync(name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Records the new count; the primary does the rest (<see cref="ClusterNode"/>'s replica keeping): adds replicas on
    /// active nodes without one and rebuilds them, or removes the extra ones once the ones kept are in sync. More
    /// replicas than active nodes can hold is refused here rather than left waiting.
    /// </summary>
    public async Task<Volume> SetReplicaCountAsync(string name, uint replicas, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        VolumeRules.ValidateReplicaCount(replicas);
        var (before, after) = await UpdateRecordAsync(name, record =>
        {
            if (record.ReplicaCount == replicas)
            {
                return null;
            }

            var kept = record.Replicas.Count(r => !node.IsDraining(r.Node));
            var room = Placement.Candidates(node.Nodes, node.Records).Count(c => record.Replicas.All(r => r.Node != c.Name));
            if (replicas > kept + room)
            {
                throw new VolumeException(
                    VolumeError.FailedPrecondition,
                    $"volume {name}: {replicas} replicas need {replicas} active nodes; it has {kept} on active nodes and {room} more "
                    + $"{(room == 1 ? "node is" : "nodes are")} up, active and without one");
            }

            return record with { ReplicaCount = (int)replicas };
        }, "its replica count was changed", cancellationToken).ConfigureAwait(false);
        if (after is not null)
        {
            VolumeLog.ReplicaCountChanged(logger, name, before.ReplicaCount, after.ReplicaCount);
        }

        return await GetAsync(name, cancellationToken).ConfigureAwait(false);
    }

    public Task<Volume> AllowHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        return UpdateAccessAsync(name, r => r.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal)
            ? null
            : r with { AllowedHosts = r.AllowedHosts.Append(hostNqn).Order(StringComparer.Ordinal).ToArray() }, cancellationToken);
    }

    public Task<Volume> DenyHostAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        return UpdateAccessAsync(name, r => r.AllowedHosts.Contains(hostNqn, StringComparer.Ordinal)
            ? r with { AllowedHosts = r.AllowedHosts.Where(h => h != hostNqn).ToArray() }
            : null, cancellationToken);
    }

    public Task<Volume> SetHostSecretAsync(SetHostSecretRequest request, CancellationToken cancellationToken = default)
    {
        HostSecretRecord? entry = null;
        return UpdateAccessAsync(request.Name, r =>
        {
            entry ??= HostSecrets.Seal(node.Local.Secrets, r.Id, request.HostNqn, request.Secret, request.CtrlSecret, request.Hash, request.DhGroup);
            return r with { HostSecrets = HostSecrets.With(r.HostSecrets, entry) };
        }, cancellationToken);
    }

    public Task<Volume> ClearHostSecretAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        return UpdateAccessAsync(name, r => r.HostSecrets.Any(h => h.HostNqn == hostNqn)
            ? r with { HostSecrets = HostSecrets.Without(r.HostSecrets, hostNqn) }
            : null, cancellationToken);
    }

    public Task<Volume> SetHostTlsPskAsync(SetHostTlsPskRequest request, CancellationToken cancellationToken = default)
    {
        TlsPskRecord? entry = null;
        return UpdateAccessAsync(request.Name, r =>
        {
            entry ??= HostTlsPsks.Seal(node.Local.Secrets, r.Id, request.HostNqn, request.Psk);
            return r with { TlsPsks = HostTlsPsks.With(r.TlsPsks, entry) };
        }, cancellationToken);
    }

    public Task<Volume> ClearHostTlsPskAsync(string name, string hostNqn, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateHostNqn(hostNqn);
        return UpdateAccessAsync(name, r => r.TlsPsks.Any(t => t.HostNqn == hostNqn)
            ? r with { TlsPsks = HostTlsPsks.Without(r.TlsPsks, hostNqn) }
            : null, cancellationToken);
    }

    public Task<Volume> SetTlsRequiredAsync(string name, bool tlsRequired, CancellationToken cancellationToken = default) =>
        UpdateAccessAsync(name, r => r.TlsRequired == tlsRequired ? null : r with { TlsRequired = tlsRequired }, cancellationToken);

    public Task<Volume> SetAllowAnyHostAsync(string name, bool allowAnyHost, CancellationToken cancellationToken = default) =>
        UpdateAccessAsync(name, r => r.AllowAnyHost == allowAnyHost ? null : r with { AllowAnyHost = allowAnyHost }, cancellationToken);

    /// <summary>
    /// Records a host access change, then has every replica node apply it and confirm: a denied host has no controller
    /// left on any node, and no command it had in flight on any of them is still running, when the call returns
    /// (<see cref="HostFencing"/>). Runs on every call, also when the record had the change already, so a retry after a
    /// failure waits again.
    /// </summary>
    private async Task<Volume> UpdateAccessAsync(string name, Func<VolumeRecord, VolumeRecord?> change, CancellationToken cancellationToken)
    {
        VolumeRules.ValidateName(name);
        var (before, after) = await UpdateRecordAsync(name, change, "its hosts were changed", cancellationToken).ConfigureAwait(false);
        var record = after ?? before;
        await Task.WhenAll(record.Replicas.Where(r => node.IsLive(r.Node)).Select(async r =>
        {
            try
            {
                await Agents.For(node, r.Node).ApplyHostAccessAsync(new ApplyHostAccessRequest { VolumeId = record.Id.ToString("D") }, Agents.Call(cancellationToken)).ConfigureAwait(false);
            }
            catch (RpcException e) when (!node.IsLive(r.Node))
            {
                // A node that is down serves no host (its process or its lease is gone) and applies the record when it
                // comes back, before it exports the volume.
                VolumeLog.OperationRefusedOn(logger, "host access", r.Node, e.Status.Detail);
            }
            catch (RpcException e)
            {
                // A live node that could not confirm may still have a removed host's commands running: no promise yet.
                throw new VolumeException(VolumeError.Unavailable, $"volume {name}: node {r.Node} did not confirm the host access change: {e.Status.Detail}", e);
            }
        })).ConfigureAwait(false);
        return await GetAsync(name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Applies <paramref name="change"/> to the volume's record with a compare-and-swap, again on the fresh record when
    /// another writer came first. Returns the record the change saw and the one stored, or null when the change had
    /// nothing to do.
    /// </summary>
    /// <param name="what">What was changed, for the error when the record never holds still: "its hosts were changed".</param>
    private async Task<(VolumeRecord Before, VolumeRecord? After)> UpdateRecordAsync(string name, Func<VolumeRecord, VolumeRecord?> change, string what, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var record = await FindAsync(name, cancellationToken).ConfigureAwait(false);
            if (change(record) is not { } updated)
            {
                return (record, null);
            }

            if (await Store.TryUpdateVolumeAsync(updated, record.Revision, cancellationToken).ConfigureAwait(false))
            {
                return (record, updated);
            }

            if (attempt > 100)
            {
                throw new VolumeException(VolumeError.Internal, $"volume {name}: its record kept changing while {what}");
            }
        }
    }

    public async Task<Snapshot> CreateSnapshotAsync(string volumeName, string snapshotName, IReadOnlyDictionary<string, string>? labels = null, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(volumeName);
        VolumeRules.ValidateName(snapshotName, "snapshot name");
        labels = VolumeRules.ValidateLabels(labels);
        var record = await FindAsync(volumeName, cancellationToken).ConfigureAwait(false);
        if (await Store.GetSnapshotAsync(snapshotName, cancellationToken).ConfigureAwait(false) is { } existing)
        {
            throw new VolumeException(VolumeError.AlreadyExists, $"snapshot {snapshotName} already exists (id {existing.Id}, of volume {existing.SourceVolumeName})");
        }

        var request = new SnapshotVolumeRequest { VolumeName = volumeName, SnapshotId = Guid.NewGuid().ToString("D"), SnapshotName = snapshotName };
        foreach (var (key, value) in labels)
        {
            request.Labels[key] = value;
        }

        await CallPrimaryAsync(record, client => client.SnapshotVolumeAsync(request, Agents.Call(cancellationToken)).ResponseAsync).ConfigureAwait(false);
        return await GetSnapshotAsync(snapshotName, cancellationToken).ConfigureAwait(false);
    }

    public async Task<Snapshot> GetSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name, "snapshot name");
        var snapshot = await Store.GetSnapshotAsync(name, cancellationToken).ConfigureAwait(false)
            ?? throw new VolumeException(VolumeError.NotFound, $"snapshot {name} not found");
        return node.Local.Describe(snapshot);
    }

    public async Task<IReadOnlyList<Snapshot>> ListSnapshotsAsync(string? volumeName = null, CancellationToken cancellationToken = default)
    {
        if (!string.IsNullOrEmpty(volumeName))
        {
            VolumeRules.ValidateName(volumeName);
        }

        return (await Store.ListSnapshotsAsync(cancellationToken).ConfigureAwait(false))
            .Where(s => string.IsNullOrEmpty(volumeName) || s.SourceVolumeName == volumeName)
            .Select(node.Local.Describe)
            .ToArray();
    }

    public async Task DeleteSnapshotAsync(string name, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name, "snapshot name");
        if (!await Store.DeleteSnapshotAsync(name, cancellationToken).ConfigureAwait(false))
        {
            throw new VolumeException(VolumeError.NotFound, $"snapshot {name} not found");
        }
    }

    public async Task<Api.V1.VerifyVolumeResponse> VerifyAsync(string name, uint regionSize, CancellationToken cancellationToken = default)
    {
        VolumeRules.ValidateName(name);
        var record = await FindAsync(name, cancellationToken).ConfigureAwait(false);
        var verified = await CallPrimaryAsync(record, client => client.VerifyVolumeAsync(new Api.V1.Agent.VerifyVolumeRequest { VolumeName = name, RegionSize = regionSize }, Agents.Call(cancellationToken)).ResponseAsync).ConfigureAwait(false);
        var allInSync = record.Replicas.All(r => r.State == ReplicaState.InSync);
        var response = new Api.V1.VerifyVolumeResponse
        {
            AllInSync = allInSync,
            RegionSize = regionSize == 0 ? 1u << 20 : regionSize,
            RegionsCompared = verified.RegionsCompared,
            MismatchCount = verified.MismatchCount,
            Identical = allInSync && verified.MismatchCount == 0 && verified.Nodes.Count == record.Replicas.Count,
        };
        response.Nodes.AddRange(verified.Nodes);
        response.Skipped.AddRange(verified.Skipped);
        foreach (var mismatch in verified.Mismatches)
        {
            var region = new RegionMismatch { Offset = mismatch.Offset, Length = mismatch.Length };
            for (var i = 0; i < verified.Nodes.Count && i < mismatch.Checksums.Count; i++)
            {
                region.Checksums[verified.Nodes[i]] = mismatch.Checksums[i].ToString("x16");
            }

            response.Mismatches.Add(region);
        }

        return response;
    }

    public Task<IReadOnlyList<Pool>> ListPoolsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(node.Local.ListPools(node.Records.SelectMany(r => r.Replicas.Where(x => x.Node == node.Name).Select(x => x.Pool)), node.Snapshots.Where(s => s.Nodes.Contains(node.Name)).Select(s => s.Pool)));

    /// <summary>Calls the volume's primary; UNAVAILABLE while it has none that is up (a failover under way).</summary>
    private async Task<T> CallPrimaryAsync<T>(VolumeRecord record, Func<NodeAgentService.NodeAgentServiceClient, Task<T>> call)
    {
        var takeoverDeadline = DateTime.UtcNow + _primaryTakeoverWait;
        while (true)
        {
            if (record.Primary.Length == 0)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, $"volume {record.Name} has no primary right now (a failover may be under way); try again"));
            }

            if (!node.IsLive(record.Primary))
            {
                throw new RpcException(new Status(StatusCode.Unavailable, $"volume {record.Name}: its primary {record.Primary} is down (a failover starts once its lease expires); try again"));
            }

            try
            {
                return await call(Agents.For(node, record.Primary)).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition && e.Status.Detail.Contains(ClusterNode.NotPrimaryPhrase, StringComparison.Ordinal)
                                         && DateTime.UtcNow < takeoverDeadline)
            {
                // The record names a node that has not taken over yet (a handover or promotion a moment ago), or the
                // primary moved on since the record was read: ask again, with the record as it is now.
                await Task.Delay(_primaryTakeoverPoll).ConfigureAwait(false);
                record = await FindAsync(record.Name, CancellationToken.None).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
            {
                // The node was still registered but did not answer: it may have just stopped. Name it.
                throw new RpcException(new Status(e.StatusCode, $"volume {record.Name}: its primary {record.Primary} did not answer ({e.Status.Detail}); a failover starts once its lease expires; try again", e));
            }
        }
    }

    /// <summary>The API view of a volume: the record, every replica with its node and state, and what the nodes report.</summary>
    private async Task<Volume> DescribeAsync(VolumeRecord record, CancellationToken cancellationToken)
    {
        var statuses = await Task.WhenAll(record.Replicas.Select(async r =>
        {
            if (!node.IsLive(r.Node))
            {
                return (r.Node, Status: (VolumeStatus?)null);
            }

            try
            {
                using var quick = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                quick.CancelAfter(TimeSpan.FromSeconds(2));
                return (r.Node, Status: await Agents.For(node, r.Node).GetVolumeStatusAsync(new GetVolumeStatusRequest { VolumeId = record.Id.ToString("D") }, Agents.Call(quick.Token)).ConfigureAwait(false));
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException)
            {
                return (r.Node, Status: (VolumeStatus?)null);
            }
        })).ConfigureAwait(false);
        var byNode = statuses.Where(s => s.Status is not null).ToDictionary(s => s.Node, s => s.Status!, StringComparer.Ordinal);
        var primaryStatus = byNode.GetValueOrDefault(record.Primary);
        var volume = new Volume
        {
            Name = record.Name,
            Id = record.Id.ToString("D"),
            SizeBytes = (ulong)record.SizeBytes,
            BlockSize = (uint)record.BlockSize,
            SubsystemNqn = VolumeNaming.SubsystemNqn(record.Id),
            Nguid = Convert.ToHexStringLower(record.Id.ToByteArray(bigEndian: true)),
            Uuid = record.Id.ToString("D"),
            AllowAnyHost = record.AllowAnyHost,
            Backend = node.Local.BackendName,
            CreatedUnixMs = record.CreatedAt.ToUnixTimeMilliseconds(),
            Pool = record.Replicas.FirstOrDefault(r => r.Node == record.Primary)?.Pool ?? record.Pool,
            AllocatedBytes = primaryStatus?.AllocatedBytes ?? 0,
            ReplicaCount = (uint)Math.Max(1, record.ReplicaCount),
            Primary = record.Primary,
            Epoch = (ulong)Math.Max(0, record.Epoch),
        };
        volume.AllowedHosts.AddRange(record.AllowedHosts);
        HostSecrets.Describe(volume, record, node.Local.TryGet(record.Name)?.Subsystem);
        HostTlsPsks.Describe(volume, record);
        foreach (var (key, value) in record.Labels)
        {
            volume.Labels[key] = value;
        }

        // The primary's listeners first: a host that connects one path at a time finds the optimized one first.
        foreach (var replica in record.Replicas.OrderBy(r => r.Node == record.Primary ? 0 : 1).ThenBy(r => r.Node, StringComparer.Ordinal))
        {
            var listeners = node.HostListenersOf(replica.Node).Select(e => e.ToString()).ToArray();
            volume.ListenAddresses.AddRange(listeners);
            var entry = new Replica
            {
                Node = replica.Node,
                State = replica.State.Name(),
                Primary = replica.Node == record.Primary,
                Pool = replica.Pool,
                InSyncEpoch = (ulong)Math.Max(0, replica.InSyncEpoch),
                NodeUp = node.IsLive(replica.Node),
            };
            entry.NvmeListenAddresses.AddRange(listeners);
            if (primaryStatus?.Replicas.FirstOrDefault(r => r.Node == replica.Node) is { } replication)
            {
                entry.DirtyRegions = replication.DirtyRegions;
                entry.RebuildRegionsDone = replication.RebuildRegionsDone;
                entry.RebuildRegionsTotal = replication.RebuildRegionsTotal;
                entry.RebuildBytesCopied = replication.RebuildBytesCopied;
                entry.RebuildBytesPerSecond = replication.RebuildBytesPerSecond;
            }

            volume.Replicas.Add(entry);
        }

        volume.ConnectedHosts.AddRange(byNode.Values.SelectMany(s => s.ConnectedHosts).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal));
        return volume;
    }

    // ---- nodes ----

    public async Task<IReadOnlyList<Node>> ListNodesAsync(CancellationToken cancellationToken = default)
    {
        var nodes = await Store.ListNodesAsync(cancellationToken).ConfigureAwait(false);
        var volumes = await Store.ListVolumesAsync(cancellationToken).ConfigureAwait(false);
        return nodes.Select(n => Describe(n, volumes)).ToArray();
    }

    public Task<Node> DrainAsync(string name, CancellationToken cancellationToken = default) =>
        SetAdminStateAsync(name, NodeAdminState.Draining, cancellationToken);

    public Task<Node> UndrainAsync(string name, CancellationToken cancellationToken = default) =>
        SetAdminStateAsync(name, NodeAdminState.Active, cancellationToken);

    private async Task<Node> SetAdminStateAsync(string name, NodeAdminState state, CancellationToken cancellationToken)
    {
        var known = (await Store.ListNodesAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(n => n.Name == name)
            ?? throw new VolumeException(VolumeError.NotFound, $"node {name} is not a node of this cluster");
        if (known.AdminState != state)
        {
            await Store.SetNodeAdminStateAsync(name, state, cancellationToken).ConfigureAwait(false);
        }

        var nodes = await Store.ListNodesAsync(cancellationToken).ConfigureAwait(false);
        return Describe(nodes.First(n => n.Name == name), await Store.ListVolumesAsync(cancellationToken).ConfigureAwait(false));
    }

    private static Node Describe(NodeStatus status, IReadOnlyList<VolumeRecord> volumes)
    {
        var held = volumes.Where(v => v.Replicas.Any(r => r.Node == status.Name)).ToArray();
        var primaries = volumes.Count(v => v.Primary == status.Name);
        var node = new Node
        {
            Name = status.Name,
            Ordinal = status.Ordinal,
            State = status.IsLive ? "up" : "down",
            AdminState = status.AdminState == NodeAdminState.Draining ? "draining" : "active",
            VolumeCount = (uint)held.Length,
            PrimaryCount = (uint)primaries,
            ManagementAddress = status.Live?.ManagementAddress ?? "",
            Version = status.Live?.Version ?? "",
        };
        if (status.Live is { } live)
        {
            node.NvmeListenAddresses.AddRange(live.HostFacingListeners);
            foreach (var pool in live.Pools)
            {
                node.Pools.Add(new Pool { Name = pool.Name, CapacityBytes = (ulong)pool.CapacityBytes, FreeBytes = (ulong)pool.FreeBytes });
            }

            node.FreeBytes = (ulong)live.Pools.Sum(p => p.FreeBytes);
        }

        if (status.AdminState == NodeAdminState.Draining)
        {
            // A replica stays only where there is nowhere to move it; primaries must all have moved (a volume with one
            // replica first gets a new one on an active node, which then takes the role).
            node.DrainStatus = primaries > 0
                ? $"{primaries} {(primaries == 1 ? "primary" : "primaries")} to hand over"
                : held.Length == 0
                    ? "drained"
                    : $"drained of primaries; {held.Length} {(held.Length == 1 ? "replica" : "replicas")} left (moved when another node has room)";
        }

        return node;
    }
}
