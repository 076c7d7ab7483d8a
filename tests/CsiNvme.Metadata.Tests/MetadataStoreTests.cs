using CsiNvme.Metadata.Etcd;

namespace CsiNvme.Metadata.Tests;

public enum StoreKind
{
    Sqlite,
    InMemory,
    Etcd,
}

[TestFixture(StoreKind.Sqlite)]
[TestFixture(StoreKind.InMemory)]
[TestFixture(StoreKind.Etcd)]
public sealed class MetadataStoreTests(StoreKind kind)
{
    private EtcdServer? _etcd;
    private TempDirectory _dir = null!;
    private IMetadataStore _store = null!;

    [OneTimeSetUp]
    public async Task StartEtcd()
    {
        if (kind == StoreKind.Etcd)
        {
            _etcd = await EtcdServer.StartAsync();
        }
    }

    [OneTimeTearDown]
    public async Task StopEtcd()
    {
        if (_etcd is not null)
        {
            await _etcd.DisposeAsync();
        }
    }

    [SetUp]
    public async Task SetUp()
    {
        _dir = new TempDirectory("csinvme-metadata");
        _store = kind switch
        {
            StoreKind.Sqlite => await SqliteMetadataStore.OpenAsync(_dir.Combine("metadata.db")),
            StoreKind.InMemory => new InMemoryMetadataStore(),

            // One etcd for the fixture; each test has its own key prefix, so it starts from an empty store.
            _ => await EtcdMetadataStore.ConnectAsync([_etcd!.ClientUrl], $"/csinvme-test/{Guid.NewGuid():N}/"),
        };
    }

    [TearDown]
    public async Task TearDown()
    {
        await _store.DisposeAsync();
        _dir.Dispose();
    }

    internal static VolumeRecord Volume(string name, params string[] hosts) => new(
        Guid.NewGuid(),
        name,
        SizeBytes: 1L << 30,
        BlockSize: 4096,
        AllowAnyHost: false,
        hosts,
        // Whole milliseconds: that is the stored precision.
        DateTimeOffset.FromUnixTimeMilliseconds(1_750_000_000_123));

    internal static void AssertSame(VolumeRecord? actual, VolumeRecord expected)
    {
        Assert.That(actual, Is.Not.Null);
        Assert.Multiple(() =>
        {
            Assert.That(actual!.Id, Is.EqualTo(expected.Id));
            Assert.That(actual.Name, Is.EqualTo(expected.Name));
            Assert.That(actual.SizeBytes, Is.EqualTo(expected.SizeBytes));
            Assert.That(actual.BlockSize, Is.EqualTo(expected.BlockSize));
            Assert.That(actual.AllowAnyHost, Is.EqualTo(expected.AllowAnyHost));
            Assert.That(actual.AllowedHosts, Is.EqualTo(expected.AllowedHosts));
            Assert.That(actual.CreatedAt, Is.EqualTo(expected.CreatedAt));
            Assert.That(actual.Pool, Is.EqualTo(expected.Pool));
            Assert.That(actual.Labels, Is.EquivalentTo(expected.Labels));
        });
    }

    internal static SnapshotRecord Snapshot(string name, VolumeRecord source, string pool = "default") => new(
        Guid.NewGuid(),
        name,
        source.Id,
        source.Name,
        source.SizeBytes,
        source.BlockSize,
        DateTimeOffset.FromUnixTimeMilliseconds(1_750_000_100_456),
        pool);

    [Test]
    public async Task CreateGetListDelete()
    {
        VolumeRecord a = Volume("alpha", "nqn.2014-08.org.nvmexpress:uuid:1", "nqn.2014-08.org.nvmexpress:uuid:2");
        VolumeRecord b = Volume("beta") with { AllowAnyHost = true, BlockSize = 512, SizeBytes = 5 << 20 };

        Assert.That(await _store.TryCreateVolumeAsync(b), Is.True);
        Assert.That(await _store.TryCreateVolumeAsync(a), Is.True);

        AssertSame(await _store.GetVolumeAsync("alpha"), a);
        AssertSame(await _store.GetVolumeAsync("beta"), b);
        Assert.That(await _store.GetVolumeAsync("gamma"), Is.Null);

        IReadOnlyList<VolumeRecord> all = await _store.ListVolumesAsync();
        Assert.That(all.Select(v => v.Name), Is.EqualTo(new[] { "alpha", "beta" }));
        AssertSame(all[0], a);

        Assert.That(await _store.DeleteVolumeAsync("alpha"), Is.True);
        Assert.That(await _store.DeleteVolumeAsync("alpha"), Is.False);
        Assert.That(await _store.GetVolumeAsync("alpha"), Is.Null);
        Assert.That((await _store.ListVolumesAsync()).Select(v => v.Name), Is.EqualTo(new[] { "beta" }));
    }

    [Test]
    public async Task NamesAreUnique()
    {
        Assert.That(await _store.TryCreateVolumeAsync(Volume("same")), Is.True);
        Assert.That(await _store.TryCreateVolumeAsync(Volume("same") with { SizeBytes = 4096 }), Is.False);
        Assert.That((await _store.GetVolumeAsync("same"))!.SizeBytes, Is.EqualTo(1L << 30), "the first record is kept");

        // After a delete the name is free again.
        Assert.That(await _store.DeleteVolumeAsync("same"), Is.True);
        Assert.That(await _store.TryCreateVolumeAsync(Volume("same")), Is.True);
    }

    [Test]
    public async Task UpdateReplacesSizeAndHostsButKeepsIdentity()
    {
        VolumeRecord original = Volume("v", "nqn.host-a", "nqn.host-b");
        Assert.That(await _store.TryCreateVolumeAsync(original), Is.True);

        VolumeRecord changed = original with
        {
            Id = Guid.NewGuid(),
            SizeBytes = 2L << 30,
            AllowAnyHost = true,
            AllowedHosts = ["nqn.host-c", "nqn.host-a", "nqn.host-c"],
            CreatedAt = DateTimeOffset.UnixEpoch,
        };
        Assert.That(await _store.UpdateVolumeAsync(changed), Is.True);

        VolumeRecord? stored = await _store.GetVolumeAsync("v");
        AssertSame(stored, original with { SizeBytes = 2L << 30, AllowAnyHost = true, AllowedHosts = ["nqn.host-c", "nqn.host-a"] });

        Assert.That(await _store.UpdateVolumeAsync(changed with { AllowedHosts = [] }), Is.True);
        Assert.That((await _store.GetVolumeAsync("v"))!.AllowedHosts, Is.Empty);

        Assert.That(await _store.UpdateVolumeAsync(Volume("missing")), Is.False);
        Assert.That(await _store.GetVolumeAsync("missing"), Is.Null);
    }

    [Test]
    public async Task CallersCannotChangeStoredHostsThroughTheirList()
    {
        var hosts = new List<string> { "nqn.host-a" };
        VolumeRecord volume = Volume("v") with { AllowedHosts = hosts };
        Assert.That(await _store.TryCreateVolumeAsync(volume), Is.True);
        hosts.Add("nqn.host-b");
        Assert.That((await _store.GetVolumeAsync("v"))!.AllowedHosts, Is.EqualTo(new[] { "nqn.host-a" }));
    }

    [Test]
    public async Task ConcurrentCreatesOfOneNameHaveExactlyOneWinner()
    {
        for (int round = 0; round < 10; round++)
        {
            string name = $"race-{round}";
            VolumeRecord[] candidates = Enumerable.Range(0, 16).Select(_ => Volume(name)).ToArray();

            bool[] results = await Task.WhenAll(candidates.Select(c => Task.Run(() => _store.TryCreateVolumeAsync(c))));

            Assert.That(results.Count(r => r), Is.EqualTo(1), $"round {round}");
            VolumeRecord winner = candidates[Array.IndexOf(results, true)];
            Assert.That((await _store.GetVolumeAsync(name))!.Id, Is.EqualTo(winner.Id));
        }
    }

    [Test]
    public async Task ThePoolIsStoredAndFixedAtCreation()
    {
        VolumeRecord onFast = Volume("on-fast") with { Pool = "fast" };
        Assert.That(await _store.TryCreateVolumeAsync(onFast), Is.True);
        AssertSame(await _store.GetVolumeAsync("on-fast"), onFast);

        Assert.That(await _store.UpdateVolumeAsync(onFast with { Pool = "slow", SizeBytes = 2L << 30 }), Is.True);
        AssertSame(await _store.GetVolumeAsync("on-fast"), onFast with { SizeBytes = 2L << 30 });

        VolumeRecord noPool = Volume("no-pool");
        Assert.That(await _store.TryCreateVolumeAsync(noPool), Is.True);
        Assert.That((await _store.ListVolumesAsync()).Select(v => v.Pool), Is.EqualTo(new[] { "", "fast" }), "ordered by name: no-pool, on-fast");
    }

    [Test]
    public async Task SnapshotsAreCreatedListedAndDeletedByName()
    {
        VolumeRecord source = Volume("src") with { Pool = "p1" };
        SnapshotRecord b = Snapshot("snap-b", source, "p1");
        SnapshotRecord a = Snapshot("snap-a", source, "p1") with { SizeBytes = 4096, BlockSize = 512 };

        Assert.That(await _store.TryCreateSnapshotAsync(b), Is.True);
        Assert.That(await _store.TryCreateSnapshotAsync(a), Is.True);
        Assert.That(await _store.GetSnapshotAsync("snap-a"), Is.EqualTo(a));
        Assert.That(await _store.GetSnapshotAsync("snap-b"), Is.EqualTo(b));
        Assert.That(await _store.GetSnapshotAsync("snap-c"), Is.Null);
        Assert.That(await _store.ListSnapshotsAsync(), Is.EqualTo(new[] { a, b }));

        // Snapshot names are their own namespace: a volume may share one.
        Assert.That(await _store.TryCreateVolumeAsync(Volume("snap-a")), Is.True);

        Assert.That(await _store.DeleteSnapshotAsync("snap-a"), Is.True);
        Assert.That(await _store.DeleteSnapshotAsync("snap-a"), Is.False);
        Assert.That(await _store.ListSnapshotsAsync(), Is.EqualTo(new[] { b }));
    }

    [Test]
    public async Task SnapshotNamesAreUniqueAndOutliveTheirSource()
    {
        VolumeRecord source = Volume("src");
        Assert.That(await _store.TryCreateVolumeAsync(source), Is.True);
        SnapshotRecord first = Snapshot("once", source);
        Assert.That(await _store.TryCreateSnapshotAsync(first), Is.True);
        Assert.That(await _store.TryCreateSnapshotAsync(Snapshot("once", source)), Is.False);
        Assert.That(await _store.GetSnapshotAsync("once"), Is.EqualTo(first), "the first record is kept");

        Assert.That(await _store.DeleteVolumeAsync("src"), Is.True);
        Assert.That(await _store.GetSnapshotAsync("once"), Is.EqualTo(first));
    }

    [Test]
    public async Task PoolBindingsAreRecordedAndReplacedByName()
    {
        Assert.That(_store.StoreId, Is.Not.EqualTo(Guid.Empty));
        Assert.That(await _store.ListPoolBindingsAsync(), Is.Empty);
        var first = new PoolBinding("fast", Guid.NewGuid());
        var other = new PoolBinding("slow", Guid.NewGuid());
        await _store.SetPoolBindingAsync(other);
        await _store.SetPoolBindingAsync(first);
        Assert.That(await _store.ListPoolBindingsAsync(), Is.EqualTo(new[] { first, other }));

        var replaced = first with { PoolId = Guid.NewGuid() };
        await _store.SetPoolBindingAsync(replaced);
        Assert.That(await _store.ListPoolBindingsAsync(), Is.EqualTo(new[] { replaced, other }));
        Assert.That(async () => await _store.SetPoolBindingAsync(new PoolBinding("", Guid.NewGuid())), Throws.InstanceOf<ArgumentException>());
    }

    [Test]
    public async Task LabelsAreStoredReturnedAndFixedAtCreation()
    {
        var given = new Dictionary<string, string> { ["csi/fsType"] = "ext4", ["empty"] = "", ["k8s.io/pvc-name"] = "data-0" };
        VolumeRecord labelled = Volume("labelled") with { Labels = given };
        Assert.That(await _store.TryCreateVolumeAsync(labelled), Is.True);
        given["later"] = "not stored: the store copied the labels";

        VolumeRecord? got = await _store.GetVolumeAsync("labelled");
        Assert.That(got!.Labels, Is.EquivalentTo(new Dictionary<string, string> { ["csi/fsType"] = "ext4", ["empty"] = "", ["k8s.io/pvc-name"] = "data-0" }));
        Assert.That(await _store.TryCreateVolumeAsync(Volume("plain")), Is.True);
        var listed = await _store.ListVolumesAsync();
        Assert.That(listed.Select(v => v.Labels.Count), Is.EqualTo(new[] { 3, 0 }), "labelled, plain");

        // An update (e.g. a host allowed) passes the labels it read; even if it passes others, the stored ones stay.
        Assert.That(await _store.UpdateVolumeAsync(got with { AllowAnyHost = true, Labels = new Dictionary<string, string>() }), Is.True);
        VolumeRecord? updated = await _store.GetVolumeAsync("labelled");
        Assert.That(updated!.AllowAnyHost, Is.True);
        Assert.That(updated.Labels, Is.EquivalentTo(got.Labels));

        // Deleting and re-creating the name starts from the new record's labels only.
        Assert.That(await _store.DeleteVolumeAsync("labelled"), Is.True);
        Assert.That(await _store.TryCreateVolumeAsync(Volume("labelled") with { Labels = new Dictionary<string, string> { ["x"] = "1" } }), Is.True);
        Assert.That((await _store.GetVolumeAsync("labelled"))!.Labels, Is.EquivalentTo(new Dictionary<string, string> { ["x"] = "1" }));
    }

    [Test]
    public async Task SnapshotLabelsAreStoredAndReturned()
    {
        VolumeRecord source = Volume("src");
        SnapshotRecord labelled = Snapshot("labelled", source) with { Labels = new Dictionary<string, string> { ["a"] = "1", ["b/c"] = "2" } };
        SnapshotRecord plain = Snapshot("plain", source);
        Assert.That(await _store.TryCreateSnapshotAsync(labelled), Is.True);
        Assert.That(await _store.TryCreateSnapshotAsync(plain), Is.True);

        Assert.That(await _store.GetSnapshotAsync("labelled"), Is.EqualTo(labelled));
        Assert.That(await _store.GetSnapshotAsync("labelled"), Is.Not.EqualTo(labelled with { Labels = new Dictionary<string, string> { ["a"] = "1" } }));
        Assert.That(await _store.ListSnapshotsAsync(), Is.EqualTo(new[] { labelled, plain }));
        Assert.That(await _store.DeleteSnapshotAsync("labelled"), Is.True);
        Assert.That(await _store.TryCreateSnapshotAsync(Snapshot("labelled", source)), Is.True);
        Assert.That((await _store.GetSnapshotAsync("labelled"))!.Labels, Is.Empty, "the deleted snapshot's labels went with it");
    }

    [Test]
    public async Task ReservationStateIsKeptPerVolumeAndGoesWithTheVolume()
    {
        VolumeRecord a = Volume("resv-a");
        VolumeRecord b = Volume("resv-b");
        Assert.That(await _store.TryCreateVolumeAsync(a), Is.True);
        Assert.That(await _store.TryCreateVolumeAsync(b), Is.True);
        Assert.That(await _store.GetReservationStateAsync(a.Id), Is.Null);

        await _store.SaveReservationStateAsync(a.Id, [1, 2, 3]);
        await _store.SaveReservationStateAsync(a.Id, [4, 5]);
        await _store.SaveReservationStateAsync(b.Id, [9]);
        Assert.That(await _store.GetReservationStateAsync(a.Id), Is.EqualTo(new byte[] { 4, 5 }), "a save replaces");
        Assert.That(await _store.GetReservationStateAsync(b.Id), Is.EqualTo(new byte[] { 9 }));
        Assert.That(async () => await _store.SaveReservationStateAsync(Guid.NewGuid(), [1]), Throws.InstanceOf<InvalidOperationException>(), "no such volume");

        Assert.That(await _store.DeleteVolumeAsync("resv-a"), Is.True);
        Assert.That(await _store.GetReservationStateAsync(a.Id), Is.Null, "deleted with its volume");
        Assert.That(await _store.GetReservationStateAsync(b.Id), Is.EqualTo(new byte[] { 9 }));
        Assert.That(async () => await _store.SaveReservationStateAsync(a.Id, [1]), Throws.InstanceOf<InvalidOperationException>(), "not after the delete");
        Assert.That(await _store.UpdateVolumeAsync(b with { SizeBytes = 2L << 30 }), Is.True);
        Assert.That(await _store.GetReservationStateAsync(b.Id), Is.EqualTo(new byte[] { 9 }), "an update keeps it");
    }
}
