using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using CsiNvme.Metadata.Etcd;
using Etcdserverpb;
using Google.Protobuf;
using static CsiNvme.Metadata.Tests.EtcdTestKit;

namespace CsiNvme.Metadata.Tests;

/// <summary>
/// The cluster side of the etcd store against a real etcd: cluster id, ordinals, membership, admin state,
/// compare-and-swap and the change feed. One etcd serves the fixture; each test has its own key prefix. Tests that
/// stop, pause or partition etcd are in <see cref="EtcdFailureTests"/>.
/// </summary>
public sealed class EtcdClusterStoreTests
{
    private EtcdServer _etcd = null!;
    private string _prefix = null!;
    private readonly List<IAsyncDisposable> _owned = [];

    [OneTimeSetUp]
    public async Task StartEtcd() => _etcd = await EtcdServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopEtcd() => await _etcd.DisposeAsync();

    [SetUp]
    public void SetUp() => _prefix = NewPrefix();

    [TearDown]
    public async Task TearDown()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        _owned.Clear();
    }

    private async Task<EtcdMetadataStore> ConnectAsync(EtcdStoreOptions? options = null) => Own(await EtcdTestKit.ConnectAsync(_etcd.ClientUrl, _prefix, options));

    private T Own<T>(T disposable)
        where T : IAsyncDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    [Test]
    public async Task TheClusterIdIsCreatedOnceAndReadByEveryLaterConnection()
    {
        EtcdMetadataStore first = await ConnectAsync();
        EtcdMetadataStore second = await ConnectAsync();
        Assert.That(Guid.TryParse(first.ClusterId, out _), Is.True, first.ClusterId);
        Assert.That(second.ClusterId, Is.EqualTo(first.ClusterId));
        Assert.That(first.Description, Is.EqualTo("etcd:" + _etcd.ClientUrl));
        Assert.That(first.Prefix, Is.EqualTo(_prefix));

        // Another prefix is another cluster.
        await using EtcdMetadataStore other = await EtcdTestKit.ConnectAsync(_etcd.ClientUrl, NewPrefix());
        Assert.That(other.ClusterId, Is.Not.EqualTo(first.ClusterId));
    }

    [Test]
    public async Task AnUnreachableEtcdFailsWithinTheDeadlineNamingTheEndpoints()
    {
        int closedPort;
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            closedPort = ((IPEndPoint)socket.LocalEndPoint!).Port;
        }

        var options = new EtcdStoreOptions { AttemptTimeout = TimeSpan.FromSeconds(1), OperationTimeout = TimeSpan.FromSeconds(3) };
        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<MetadataStoreUnavailableException>(async () =>
            await EtcdMetadataStore.ConnectAsync([$"http://127.0.0.1:{closedPort}"], options: options));
        Assert.That(error!.Message, Does.Contain($"http://127.0.0.1:{closedPort}"));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "bounded by the operation deadline, not hanging");
    }

    [Test]
    public async Task BadEndpointsAndPrefixesAreRejected()
    {
        await Assert.ThrowsAsync<ArgumentException>(async () => await EtcdMetadataStore.ConnectAsync([]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await EtcdMetadataStore.ConnectAsync(["ftp://127.0.0.1:1"]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await EtcdMetadataStore.ConnectAsync([_etcd.ClientUrl], "no-slashes"));
    }

    [Test]
    public async Task ClosingTheStoreLeavesTheClusterAndLaterCallsThrowObjectDisposed()
    {
        EtcdMetadataStore observer = await ConnectAsync();
        EtcdMetadataStore store = await EtcdTestKit.ConnectAsync(_etcd.ClientUrl, _prefix);
        int ordinal = await store.ReserveOrdinalAsync("n0");
        INodeMembership membership = await store.JoinAsync(Node("n0", ordinal), ShortTtl);

        await store.DisposeAsync();
        await store.DisposeAsync();
        Assert.That(membership.IsValid, Is.False);
        Assert.That((await observer.ListNodesAsync()).Single().IsLive, Is.False, "the open membership's lease was revoked");
        Assert.That(async () => await store.ListVolumesAsync(), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await store.JoinAsync(Node("n0", ordinal), ShortTtl), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public async Task OrdinalsAreUniqueAndStableAcrossConcurrentReserversAndReconnects()
    {
        EtcdMetadataStore[] stores = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => ConnectAsync()));
        string[] names = Enumerable.Range(0, 12).Select(i => $"node-{i:D2}").ToArray();

        // Every store asks for every name at once: 48 racing reservations for 12 nodes.
        var requests = stores.SelectMany(store => names.Select(name => (name, task: Task.Run(() => store.ReserveOrdinalAsync(name))))).ToArray();
        await Task.WhenAll(requests.Select(r => r.task));

        var byName = requests.GroupBy(r => r.name).ToDictionary(g => g.Key, g => g.Select(r => r.task.Result).Distinct().ToArray());
        Assert.That(byName.Values.All(o => o.Length == 1), Is.True, "every caller got the same ordinal for a node");
        int[] ordinals = names.Select(n => byName[n][0]).ToArray();
        Assert.That(ordinals.Order(), Is.EqualTo(Enumerable.Range(0, 12)), "the smallest free ordinals, none shared");

        // A new connection, and a node asking again: the same answers.
        EtcdMetadataStore later = await ConnectAsync();
        foreach (var (name, ordinal) in names.Zip(ordinals))
        {
            Assert.That(await later.ReserveOrdinalAsync(name), Is.EqualTo(ordinal), name);
        }

        Assert.That(await later.ReserveOrdinalAsync("node-new"), Is.EqualTo(12));
        IReadOnlyList<NodeStatus> known = await later.ListNodesAsync();
        Assert.That(known.Select(n => n.Name), Is.EqualTo(names.Append("node-new")), "known nodes, ordered by name");
        Assert.That(known.All(n => !n.IsLive && n.Live is null && n.AdminState == NodeAdminState.Active), Is.True);
        await Assert.ThrowsAsync<ArgumentException>(async () => await later.ReserveOrdinalAsync("bad/name"));
    }

    [Test]
    public async Task ANodeJoinsIsListedUpdatesItsRecordAndLeaves()
    {
        EtcdMetadataStore store = await ConnectAsync();
        EtcdMetadataStore observer = await ConnectAsync();
        int ordinal = await store.ReserveOrdinalAsync("n0");
        NodeRecord self = Node("n0", ordinal);

        INodeMembership membership = await store.JoinAsync(self, StableTtl);
        Assert.Multiple(() =>
        {
            Assert.That(membership.IsValid, Is.True);
            Assert.That(membership.Lost.IsCancellationRequested, Is.False);
            Assert.That(membership.GrantedTtl, Is.GreaterThanOrEqualTo(StableTtl));
            Assert.That(membership.SafetyMargin, Is.GreaterThan(TimeSpan.Zero));
            Assert.That(Seconds(membership.ValidUntilTimestamp - Stopwatch.GetTimestamp()),
                Is.LessThanOrEqualTo((membership.GrantedTtl - membership.SafetyMargin).TotalSeconds), "never more than TTL - margin ahead");
        });

        NodeStatus listed = (await observer.ListNodesAsync()).Single();
        Assert.That(listed, Is.EqualTo(new NodeStatus(self, "n0", ordinal, NodeAdminState.Active, IsLive: true)));

        // Keep-alives carry the lease well past its TTL.
        await Task.Delay(membership.GrantedTtl + TimeSpan.FromSeconds(1));
        Assert.That(membership.IsValid, Is.True, membership.LostReason);
        Assert.That((await observer.ListNodesAsync()).Single().IsLive, Is.True);

        NodeRecord fuller = self with { Pools = [new NodePoolRecord("default", 200L << 30, 1L << 30)], NvmeListeners = ["127.0.0.1:4420", "127.0.0.2:4420"] };
        await membership.UpdateAsync(fuller);
        Assert.That((await observer.ListNodesAsync()).Single().Live, Is.EqualTo(fuller));
        Assert.That((await observer.ListNodesAsync()).Single().Live!.HostFacingListeners, Is.EqualTo(fuller.NvmeListeners), "without host listeners, hosts use the others");

        // Hosts reach the node at another address than the nodes do (NAT): both are kept.
        NodeRecord natted = fuller with { HostNvmeListeners = ["198.51.100.4:4420"] };
        await membership.UpdateAsync(natted);
        var read = (await observer.ListNodesAsync()).Single().Live!;
        Assert.That(read, Is.EqualTo(natted));
        Assert.That(read.HostFacingListeners, Is.EqualTo(new[] { "198.51.100.4:4420" }));
        Assert.That(read.NvmeListeners, Is.EqualTo(fuller.NvmeListeners));
        await membership.UpdateAsync(fuller);
        await Assert.ThrowsAsync<ArgumentException>(async () => await membership.UpdateAsync(Node("n1", ordinal)));

        await membership.DisposeAsync();
        Assert.That(membership.IsValid, Is.False);
        Assert.That(membership.Lost.IsCancellationRequested, Is.True, "leaving ends the membership's work too");
        NodeStatus left = (await observer.ListNodesAsync()).Single();
        Assert.That(left, Is.EqualTo(new NodeStatus(null, "n0", ordinal, NodeAdminState.Active, IsLive: false)), "a clean leave revokes the lease at once");
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await membership.UpdateAsync(fuller));

        // The same node joins again later under a new lease.
        await using INodeMembership again = await store.JoinAsync(self, StableTtl);
        Assert.That(again.LeaseId, Is.Not.EqualTo(membership.LeaseId));
        Assert.That((await observer.ListNodesAsync()).Single().IsLive, Is.True);
    }

    [Test]
    public async Task JoiningNeedsTheNodesOwnOrdinal()
    {
        EtcdMetadataStore store = await ConnectAsync();
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.JoinAsync(Node("stranger", 0), ShortTtl), "no ordinal reserved");
        int ordinal = await store.ReserveOrdinalAsync("n0");
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.JoinAsync(Node("n0", ordinal + 1), ShortTtl), "another ordinal");
    }

    [Test]
    public async Task ARestartedNodeWaitsForItsEarlierLeaseAndAnotherLiveProcessIsRefused()
    {
        EtcdMetadataStore store = await ConnectAsync();
        int ordinal = await store.ReserveOrdinalAsync("n0");
        using RawEtcd raw = Raw(_etcd.ClientUrl);
        ByteString liveKey = ByteString.CopyFromUtf8(_prefix + "nodes/n0");

        // An earlier incarnation that died: its record is still there under a lease nobody renews.
        LeaseGrantResponse earlier = await raw.Client.LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        await raw.Client.PutAsync(new PutRequest { Key = liveKey, Value = ByteString.CopyFromUtf8("{\"name\":\"n0\"}"), Lease = earlier.ID });
        var clock = Stopwatch.StartNew();
        await using (INodeMembership joined = await store.JoinAsync(Node("n0", ordinal), ShortTtl))
        {
            Assert.That(joined.LeaseId, Is.Not.EqualTo(earlier.ID));
            Assert.That(clock.Elapsed, Is.GreaterThan(TimeSpan.FromSeconds(1)), "joined only after the earlier lease expired");
            LeaseTimeToLiveResponse gone = await raw.Client.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = earlier.ID });
            Assert.That(gone.TTL, Is.EqualTo(-1), "the earlier lease expired: it was never renewed or taken over");
        }

        // Another process keeps the name alive: joining gives up after that lease's TTL instead of waiting forever.
        LeaseGrantResponse squatter = await raw.Client.LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        await raw.Client.PutAsync(new PutRequest { Key = liveKey, Value = ByteString.CopyFromUtf8("{\"name\":\"n0\"}"), Lease = squatter.ID });
        using var keepingAlive = new CancellationTokenSource();
        Task renewing = Task.Run(async () =>
        {
            while (!keepingAlive.IsCancellationRequested)
            {
                await raw.Client.LeaseKeepAlive(squatter.ID, keepingAlive.Token).ContinueWith(_ => { });
                await Task.Delay(300).ContinueWith(_ => { });
            }
        });
        try
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.JoinAsync(Node("n0", ordinal), ShortTtl));
            Assert.That(error!.Message, Does.Contain("another process"));
        }
        finally
        {
            await keepingAlive.CancelAsync();
            await renewing;
            await raw.Client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = squatter.ID });
        }
    }

    [Test]
    public async Task TheAdminStatePersistsAndIsOnlySetOnKnownNodes()
    {
        EtcdMetadataStore store = await ConnectAsync();
        int ordinal = await store.ReserveOrdinalAsync("n0");
        await store.SetNodeAdminStateAsync("n0", NodeAdminState.Draining);
        await store.SetNodeAdminStateAsync("n0", NodeAdminState.Draining);

        EtcdMetadataStore later = await ConnectAsync();
        Assert.That((await later.ListNodesAsync()).Single(), Is.EqualTo(new NodeStatus(null, "n0", ordinal, NodeAdminState.Draining, false)));

        // A drained node that joins stays drained: the state is not under its lease.
        await using (INodeMembership membership = await later.JoinAsync(Node("n0", ordinal), StableTtl))
        {
            Assert.That((await store.ListNodesAsync()).Single().AdminState, Is.EqualTo(NodeAdminState.Draining));
        }

        await store.SetNodeAdminStateAsync("n0", NodeAdminState.Active);
        Assert.That((await later.ListNodesAsync()).Single().AdminState, Is.EqualTo(NodeAdminState.Active));
        Assert.That(await later.ReserveOrdinalAsync("n0"), Is.EqualTo(ordinal), "reserving again keeps the ordinal and changes nothing else");
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.SetNodeAdminStateAsync("unknown", NodeAdminState.Draining));
    }

    [Test]
    public async Task ClusterFieldsOfVolumesAndSnapshotsAreStoredAndReturnedWithTheirRevision()
    {
        EtcdMetadataStore store = await ConnectAsync();
        VolumeRecord volume = Volume("vol");
        Assert.That(await store.TryCreateVolumeAsync(volume), Is.True);
        VolumeRecord? stored = await store.GetVolumeAsync("vol");
        Assert.That(stored, Is.EqualTo(volume), "content, lists included, compares equal");
        Assert.That(stored!.Revision, Is.GreaterThan(0));
        Assert.That((await store.ListVolumesAsync()).Single().Revision, Is.EqualTo(stored.Revision));

        VolumeRecord degraded = stored with { Replicas = [stored.Replicas[0], stored.Replicas[1] with { State = ReplicaState.OutOfSync }] };
        Assert.That(await store.UpdateVolumeAsync(degraded), Is.True);
        VolumeRecord? after = await store.GetVolumeAsync("vol");
        Assert.That(after, Is.EqualTo(degraded));
        Assert.That(after!.Revision, Is.GreaterThan(stored.Revision));

        SnapshotRecord snapshot = MetadataStoreTests.Snapshot("snap", volume) with { Nodes = ["n0", "n1"] };
        Assert.That(await store.TryCreateSnapshotAsync(snapshot), Is.True);
        Assert.That(await store.GetSnapshotAsync("snap"), Is.EqualTo(snapshot));

        // Ids stay unique, as in the other stores.
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.TryCreateVolumeAsync(Volume("other") with { Id = volume.Id }));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await store.TryCreateSnapshotAsync(MetadataStoreTests.Snapshot("other", volume) with { Id = snapshot.Id }));
        Assert.That(await store.DeleteVolumeAsync("vol"), Is.True);
        Assert.That(await store.TryCreateVolumeAsync(Volume("other") with { Id = volume.Id }), Is.True, "a deleted volume's id is free again");
    }

    [Test]
    public async Task OfTwoConcurrentCompareAndSwapsOnOneVolumeExactlyOneWins()
    {
        EtcdMetadataStore a = await ConnectAsync();
        EtcdMetadataStore b = await ConnectAsync();
        Assert.That(await a.TryCreateVolumeAsync(Volume("vol")), Is.True);
        for (int round = 0; round < 20; round++)
        {
            VolumeRecord read = (await a.GetVolumeAsync("vol"))!;
            VolumeRecord byA = read with { Primary = "n0", Epoch = read.Epoch + 1 };
            VolumeRecord byB = read with { Primary = "n1", Epoch = read.Epoch + 1 };

            bool[] won = await Task.WhenAll(
                Task.Run(() => a.TryUpdateVolumeAsync(byA, read.Revision)),
                Task.Run(() => b.TryUpdateVolumeAsync(byB, read.Revision)));

            Assert.That(won.Count(w => w), Is.EqualTo(1), $"round {round}");
            VolumeRecord now = (await b.GetVolumeAsync("vol"))!;
            Assert.That(now, Is.EqualTo(won[0] ? byA : byB), $"round {round}: the winner's record is stored");
            Assert.That(now.Revision, Is.GreaterThan(read.Revision));
            Assert.That(await a.TryUpdateVolumeAsync(byA with { SizeBytes = 1 }, read.Revision), Is.False, "a stale revision never wins");
        }

        VolumeRecord last = (await a.GetVolumeAsync("vol"))!;
        Assert.That(await a.TryUpdateVolumeAsync(Volume("missing"), last.Revision), Is.False);
        Assert.That(await a.TryDeleteVolumeAsync("vol", last.Revision - 1), Is.False);
        Assert.That(await a.GetVolumeAsync("vol"), Is.Not.Null);
        Assert.That(await a.TryDeleteVolumeAsync("vol", last.Revision), Is.True);
        Assert.That(await a.TryDeleteVolumeAsync("vol", last.Revision), Is.False);
    }

    [Test]
    public async Task CompareAndSwapKeepsTheFieldsFixedAtCreation()
    {
        EtcdMetadataStore store = await ConnectAsync();
        VolumeRecord volume = Volume("vol") with { Pool = "fast", Labels = new Dictionary<string, string> { ["a"] = "1" } };
        Assert.That(await store.TryCreateVolumeAsync(volume), Is.True);
        VolumeRecord read = (await store.GetVolumeAsync("vol"))!;
        Assert.That(await store.TryUpdateVolumeAsync(read with { Id = Guid.NewGuid(), Pool = "slow", Labels = new Dictionary<string, string>(), CreatedAt = DateTimeOffset.UnixEpoch, Epoch = 7 }, read.Revision), Is.True);
        Assert.That(await store.GetVolumeAsync("vol"), Is.EqualTo(volume with { Epoch = 7 }));
    }

    [Test]
    public async Task AWatchFromAListedRevisionSeesEveryLaterChangeOnceInOrder()
    {
        EtcdMetadataStore store = await ConnectAsync();
        EtcdMetadataStore watcher = await ConnectAsync();
        Assert.That(await store.TryCreateVolumeAsync(Volume("before")), Is.True);
        int n0 = await store.ReserveOrdinalAsync("n0");

        ClusterState state = await watcher.GetStateAsync();
        Assert.That(state.Volumes.Select(v => v.Name), Is.EqualTo(new[] { "before" }));
        Assert.That(state.Nodes.Select(n => n.Name), Is.EqualTo(new[] { "n0" }));
        Assert.That(state.Revision, Is.EqualTo(await watcher.GetRevisionAsync()));
        await using var changes = new ChangeCollector(watcher, state.Revision);

        int n1 = await store.ReserveOrdinalAsync("n1");
        INodeMembership member = Own(await store.JoinAsync(Node("n1", n1), StableTtl));
        await member.UpdateAsync(Node("n1", n1, freeBytes: 5));
        Assert.That(await store.TryCreateVolumeAsync(Volume("vol")), Is.True);
        VolumeRecord vol = (await store.GetVolumeAsync("vol"))!;
        Assert.That(await store.TryUpdateVolumeAsync(vol with { Epoch = 2 }, vol.Revision), Is.True);
        Assert.That(await store.TryCreateSnapshotAsync(MetadataStoreTests.Snapshot("snap", vol)), Is.True);
        await store.SetNodeAdminStateAsync("n0", NodeAdminState.Draining);
        Assert.That(await store.DeleteSnapshotAsync("snap"), Is.True);
        Assert.That(await store.DeleteVolumeAsync("vol"), Is.True);
        await member.DisposeAsync();

        var admin1 = await changes.NextAsync<NodeAdminChanged>();
        Assert.That((admin1.Name, admin1.Ordinal, admin1.AdminState), Is.EqualTo(("n1", n1, NodeAdminState.Active)));
        Assert.That((await changes.NextAsync<NodeUp>()).Node, Is.EqualTo(Node("n1", n1)));
        Assert.That((await changes.NextAsync<NodeChanged>()).Node, Is.EqualTo(Node("n1", n1, freeBytes: 5)));
        var created = await changes.NextAsync<VolumePut>();
        Assert.That(created.Volume, Is.EqualTo(Volume("vol") with { Id = vol.Id }));
        Assert.That(created.Volume.Revision, Is.EqualTo(created.Revision));
        var updated = await changes.NextAsync<VolumePut>();
        Assert.That(updated.Volume.Epoch, Is.EqualTo(2));
        Assert.That((await changes.NextAsync<SnapshotPut>()).Snapshot.Name, Is.EqualTo("snap"));
        var drained = await changes.NextAsync<NodeAdminChanged>();
        Assert.That((drained.Name, drained.Ordinal, drained.AdminState), Is.EqualTo(("n0", n0, NodeAdminState.Draining)));
        Assert.That((await changes.NextAsync<SnapshotDeleted>()).Name, Is.EqualTo("snap"));
        Assert.That((await changes.NextAsync<VolumeDeleted>()).Name, Is.EqualTo("vol"));
        var down = await changes.NextAsync<NodeDown>();
        Assert.That((down.Name, down.Last), Is.EqualTo(("n1", Node("n1", n1, freeBytes: 5))));
        Assert.That(await changes.NextOrNullAsync(TimeSpan.FromSeconds(1)), Is.Null, "nothing twice, nothing else");
    }

    [Test]
    public async Task AWatchFromACompactedRevisionAsksForAResync()
    {
        EtcdMetadataStore store = await ConnectAsync();
        long before = await store.GetRevisionAsync();
        Assert.That(await store.TryCreateVolumeAsync(Volume("a")), Is.True);
        Assert.That(await store.TryCreateVolumeAsync(Volume("b")), Is.True);
        long now = await store.GetRevisionAsync();
        using (RawEtcd raw = Raw(_etcd.ClientUrl))
        {
            await raw.Client.CompactAsync(new CompactionRequest { Revision = now });
        }

        await using var changes = new ChangeCollector(store, before);
        var resync = await changes.NextAsync<ResyncRequired>();
        Assert.That(resync.Revision, Is.EqualTo(now));
        await changes.Completion.WaitAsync(Patience);

        // From the current revision a watch works again.
        await using var fresh = new ChangeCollector(store, (await store.GetStateAsync()).Revision);
        Assert.That(await store.TryCreateVolumeAsync(Volume("c")), Is.True);
        Assert.That((await fresh.NextAsync<VolumePut>()).Volume.Name, Is.EqualTo("c"));
    }
}
