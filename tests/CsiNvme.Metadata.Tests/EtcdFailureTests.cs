using System.Diagnostics;
using System.Net;
using CsiNvme.Metadata.Etcd;
using Etcdserverpb;
using static CsiNvme.Metadata.Tests.EtcdTestKit;

namespace CsiNvme.Metadata.Tests;

/// <summary>
/// The etcd store when etcd or the path to it fails: a paused etcd, a partitioned node, an etcd restart. Each test
/// has its own etcd, since it stops or pauses it.
/// </summary>
public sealed class EtcdFailureTests
{
    private EtcdServer _etcd = null!;
    private readonly List<IAsyncDisposable> _owned = [];

    [SetUp]
    public async Task SetUp() => _etcd = await EtcdServer.StartAsync();

    [TearDown]
    public async Task TearDown()
    {
        if (_etcd.IsRunning)
        {
            _etcd.Resume();
        }

        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        _owned.Clear();
        await _etcd.DisposeAsync();
    }

    private async Task<EtcdMetadataStore> ConnectAsync(string url, string prefix) => Own(await EtcdTestKit.ConnectAsync(url, prefix));

    private T Own<T>(T disposable)
        where T : IAsyncDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    [Test]
    public async Task ALeaseIsLostWhileEtcdIsPausedAndNeverRenewedAfter()
    {
        string prefix = NewPrefix();
        EtcdMetadataStore store = await ConnectAsync(_etcd.ClientUrl, prefix);
        EtcdMetadataStore observer = await ConnectAsync(_etcd.ClientUrl, prefix);
        int ordinal = await store.ReserveOrdinalAsync("n0");
        INodeMembership membership = Own(await store.JoinAsync(Node("n0", ordinal), ShortTtl));
        await Task.Delay(membership.GrantedTtl / 2);
        Assert.That(membership.IsValid, Is.True);

        long pausedAt = Stopwatch.GetTimestamp();
        _etcd.Pause();
        try
        {
            await WaitForAsync(membership.Lost);
            long lostSeenAt = Stopwatch.GetTimestamp();
            Assert.Multiple(() =>
            {
                Assert.That(membership.IsValid, Is.False);
                Assert.That(membership.LostReason, Is.Not.Null);
                Assert.That(lostSeenAt, Is.GreaterThanOrEqualTo(membership.ValidUntilTimestamp));

                // etcd renewed the lease last no later than the pause, so it cannot expire it before pause + TTL; the
                // node's deadline ran out at the latest TTL - margin after the pause.
                Assert.That(
                    Seconds(membership.ValidUntilTimestamp - pausedAt),
                    Is.LessThanOrEqualTo((membership.GrantedTtl - membership.SafetyMargin).TotalSeconds));
            });

            TestContext.Out.WriteLine(
                $"TTL {membership.GrantedTtl.TotalSeconds}s, margin {membership.SafetyMargin.TotalSeconds}s: deadline {Seconds(membership.ValidUntilTimestamp - pausedAt):F3}s after the pause, "
                + $"Lost seen {Seconds(lostSeenAt - membership.ValidUntilTimestamp) * 1000:F1}ms after the deadline ({membership.LostReason})");

            // Paused well past the TTL: etcd expires the lease as soon as it runs again.
            await Task.Delay(membership.GrantedTtl);
        }
        finally
        {
            _etcd.Resume();
        }

        await WaitUntilAsync(async () => !(await observer.ListNodesAsync()).Single().IsLive, "another client sees the node down");
        Assert.That(membership.IsValid, Is.False, "a lost membership stays lost");
        using (RawEtcd raw = Raw(_etcd.ClientUrl))
        {
            LeaseTimeToLiveResponse lease = await raw.Client.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = membership.LeaseId });
            Assert.That(lease.TTL, Is.EqualTo(-1), "the lease is gone, and was not granted again behind the owner's back");
        }

        await Assert.ThrowsAsync<InvalidOperationException>(async () => await membership.UpdateAsync(Node("n0", ordinal)));

        // The owner decides to join again: a new lease.
        INodeMembership rejoined = Own(await store.JoinAsync(Node("n0", ordinal), ShortTtl));
        Assert.That(rejoined.LeaseId, Is.Not.EqualTo(membership.LeaseId));
        Assert.That((await observer.ListNodesAsync()).Single().IsLive, Is.True);
    }

    [Test]
    public async Task APartitionedNodeStopsActingOnItsLeaseBeforeEtcdCanLetAnotherNodeTakeOver()
    {
        string prefix = NewPrefix();
        var proxy = Own(new TcpProxy(new IPEndPoint(IPAddress.Loopback, _etcd.ClientPort)));
        EtcdMetadataStore partitioned = await ConnectAsync(proxy.Url, prefix);
        EtcdMetadataStore other = await ConnectAsync(_etcd.ClientUrl, prefix);
        int ordinal = await partitioned.ReserveOrdinalAsync("n0");
        Assert.That(await other.TryCreateVolumeAsync(Volume("vol") with { Primary = "n0" }), Is.True);

        await using var changes = new ChangeCollector(other, await other.GetRevisionAsync());
        INodeMembership membership = Own(await partitioned.JoinAsync(Node("n0", ordinal), ShortTtl));
        await changes.NextAsync<NodeUp>();
        await Task.Delay(membership.GrantedTtl / 2);
        Assert.That(membership.IsValid, Is.True);

        // Cut the node off from etcd; etcd itself keeps running and expires the lease after its TTL.
        proxy.Pause();
        var down = await changes.NextAsync<NodeDown>();
        long downSeenAt = Stopwatch.GetTimestamp();
        bool validWhenDownSeen = membership.IsValid;
        TestContext.Out.WriteLine(
            $"TTL {membership.GrantedTtl.TotalSeconds}s, margin {membership.SafetyMargin.TotalSeconds}s: the cluster saw the node down "
            + $"{Seconds(downSeenAt - membership.ValidUntilTimestamp):F3}s after the node's deadline");
        Assert.Multiple(() =>
        {
            Assert.That(down.Name, Is.EqualTo("n0"));
            Assert.That(validWhenDownSeen, Is.False, "the node had stopped acting as the lease holder when the cluster saw it down");

            // etcd's expiry is at least the node's deadline plus the margin (it renewed no earlier than each
            // keep-alive was sent); both clocks here are this machine's monotonic clock.
            Assert.That(
                Seconds(downSeenAt - membership.ValidUntilTimestamp),
                Is.GreaterThanOrEqualTo(membership.SafetyMargin.TotalSeconds),
                "the node's deadline came at least the safety margin before etcd expired the lease");
        });

        // Another node takes over the volume now, with a higher epoch.
        VolumeRecord vol = (await other.GetVolumeAsync("vol"))!;
        Assert.That(await other.TryUpdateVolumeAsync(vol with { Primary = "n1", Epoch = vol.Epoch + 1 }, vol.Revision), Is.True);
        await WaitForAsync(membership.Lost);
        Assert.That(membership.IsValid, Is.False);

        // The partition heals: the old membership stays lost and its lease does not come back.
        proxy.Resume();
        await Task.Delay(membership.GrantedTtl);
        Assert.That(membership.IsValid, Is.False);
        Assert.That((await other.ListNodesAsync()).Single().IsLive, Is.False);
    }

    [Test]
    public async Task TheChangeFeedAndTheLeaseSurviveAnEtcdRestart()
    {
        string prefix = NewPrefix();
        EtcdMetadataStore store = await ConnectAsync(_etcd.ClientUrl, prefix);
        EtcdMetadataStore watcher = await ConnectAsync(_etcd.ClientUrl, prefix);
        int ordinal = await store.ReserveOrdinalAsync("n0");

        // Long enough to outlast the restart: etcd restores leases with a fresh TTL when it starts.
        INodeMembership membership = Own(await store.JoinAsync(Node("n0", ordinal), TimeSpan.FromSeconds(10)));
        await using var changes = new ChangeCollector(watcher, (await watcher.GetStateAsync()).Revision);
        Assert.That(await store.TryCreateVolumeAsync(Volume("a")), Is.True);
        Assert.That((await changes.NextAsync<VolumePut>()).Volume.Name, Is.EqualTo("a"));

        await _etcd.StopAsync();
        await _etcd.RestartAsync();
        long restartedAt = Stopwatch.GetTimestamp();

        // Written while the watcher is still reconnecting: it resumes after the last revision it delivered.
        await using (EtcdMetadataStore writer = await EtcdTestKit.ConnectAsync(_etcd.ClientUrl, prefix))
        {
            Assert.That(await writer.TryCreateVolumeAsync(Volume("b")), Is.True);
            Assert.That(await writer.DeleteVolumeAsync("a"), Is.True);
        }

        Assert.That((await changes.NextAsync<VolumePut>()).Volume.Name, Is.EqualTo("b"));
        Assert.That((await changes.NextAsync<VolumeDeleted>()).Name, Is.EqualTo("a"));
        Assert.That(await store.TryCreateVolumeAsync(Volume("c")), Is.True, "the store's own connection came back too");
        Assert.That((await changes.NextAsync<VolumePut>()).Volume.Name, Is.EqualTo("c"));
        Assert.That(await changes.NextOrNullAsync(TimeSpan.FromSeconds(1)), Is.Null, "no change twice, no node down");

        await WaitUntilAsync(() => Task.FromResult(membership.ValidUntilTimestamp > restartedAt), "a keep-alive answered after the restart");
        Assert.That(membership.IsValid, Is.True, membership.LostReason);
        Assert.That((await watcher.ListNodesAsync()).Single().IsLive, Is.True);
    }

    private static async Task WaitForAsync(CancellationToken token)
    {
        var fired = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (token.Register(() => fired.TrySetResult()))
        {
            try
            {
                await fired.Task.WaitAsync(Patience);
            }
            catch (TimeoutException)
            {
                Assert.Fail($"not cancelled within {Patience.TotalSeconds:F0}s");
            }
        }
    }
}
