using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>The thin backend through the management API: pools, snapshots, clones, placement and restarts.</summary>
[TestFixture]
public sealed class ThinBackendTests
{
    private const int Cluster = 64 * 1024;

    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-thin-server");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public async Task TheDefaultBackendIsThinWithOneSparsePoolSizedToTheFreeSpace()
    {
        Assert.That(new StorageServerOptions().Backend, Is.EqualTo(StorageBackend.Thin));
        var freeBefore = new DriveInfo(_dir.Path).AvailableFreeSpace;
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));

        var info = await server.Info.GetServerInfoAsync(new GetServerInfoRequest());
        Assert.That(info.Backend, Is.EqualTo("thin"));
        Assert.That(info.MetadataStore, Does.StartWith("sqlite:"));

        var pools = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools;
        Assert.That(pools, Has.Count.EqualTo(1));
        var pool = pools[0];
        var poolFile = Path.Combine(_dir.Path, "pools", "default.pool");
        Assert.Multiple(() =>
        {
            Assert.That(pool.Name, Is.EqualTo("default"));
            Assert.That(pool.Path, Is.EqualTo(poolFile));
            Assert.That(pool.JournalPath, Is.EqualTo(poolFile + ".journal"));
            Assert.That(pool.ClusterSize, Is.EqualTo(Cluster));
            // The free space at creation, rounded down to whole MiB, minus the header cluster.
            Assert.That((long)pool.CapacityBytes, Is.InRange(freeBefore - (512L << 20), freeBefore));
            Assert.That(pool.UsedBytes, Is.Zero);
            Assert.That(pool.FreeBytes, Is.EqualTo(pool.CapacityBytes));
            Assert.That(pool.VolumeCount, Is.Zero);
        });

        // Sparse: the file claims the whole free space but occupies almost none of it.
        Assert.That(new FileInfo(poolFile).Length, Is.GreaterThan(pool.CapacityBytes));
        Assert.That(new DriveInfo(_dir.Path).AvailableFreeSpace, Is.GreaterThan(freeBefore - (64L << 20)));

        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "thin-1", SizeBytes = 1UL << 40 });
        Assert.That(volume.Backend, Is.EqualTo("thin"));
        Assert.That(volume.Pool, Is.EqualTo("default"));
        Assert.That(volume.SizeBytes, Is.EqualTo(1UL << 40), "thin volumes may be larger than what is written");
        Assert.That(volume.AllocatedBytes, Is.Zero);
    }

    [Test]
    public async Task SnapshotCloneAndDeleteThroughTheApi()
    {
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));
        var volumes = server.Volumes;
        var source = await volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "golden", SizeBytes = 8 << 20, BlockSize = 4096 });
        var storage = StorageOf(server, source);
        var original = Pattern(1, 3 * Cluster + 4096);
        var later = Pattern(2, original.Length);
        Assert.That(storage.Write(Cluster, original, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var snapshot = await volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "golden", Name = "golden-v1" });
        Assert.Multiple(() =>
        {
            Assert.That(snapshot.Name, Is.EqualTo("golden-v1"));
            Assert.That(Guid.TryParse(snapshot.Id, out _), Is.True);
            Assert.That(snapshot.SourceVolume, Is.EqualTo("golden"));
            Assert.That(snapshot.SourceVolumeId, Is.EqualTo(source.Id));
            Assert.That(snapshot.SizeBytes, Is.EqualTo(source.SizeBytes));
            Assert.That(snapshot.BlockSize, Is.EqualTo(4096));
            Assert.That(snapshot.Pool, Is.EqualTo("default"));
            Assert.That(snapshot.CreatedUnixMs, Is.GreaterThanOrEqualTo(source.CreatedUnixMs));
            // The four clusters the pattern touched (3 whole, 1 partly) moved into the snapshot.
            Assert.That(snapshot.AllocatedBytes, Is.EqualTo(4UL * Cluster));
        });
        Assert.That(await volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "golden-v1" }), Is.EqualTo(snapshot));

        // After the snapshot the source moves on; the snapshot does not.
        Assert.That(storage.Write(Cluster, later, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var fromSnapshot = await volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "clone-a", SourceSnapshot = "golden-v1", AllowAnyHost = true });
        Assert.That(fromSnapshot.SizeBytes, Is.EqualTo(source.SizeBytes), "no size: the snapshot's");
        Assert.That(fromSnapshot.BlockSize, Is.EqualTo(4096), "no block size: the snapshot's");
        Assert.That(fromSnapshot.Pool, Is.EqualTo("default"));
        Assert.That(fromSnapshot.AllowAnyHost, Is.True);
        Assert.That(ReadBack(server, fromSnapshot, Cluster, original.Length), Is.EqualTo(original));

        var bigger = await volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "clone-big", SourceSnapshot = "golden-v1", SizeBytes = 16 << 20 });
        Assert.That(bigger.SizeBytes, Is.EqualTo((ulong)(16 << 20)));
        Assert.That(ReadBack(server, bigger, Cluster, original.Length), Is.EqualTo(original));
        Assert.That(ReadBack(server, bigger, 12 << 20, 4096), Is.All.EqualTo((byte)0), "the grown tail reads as zeros");

        var fromVolume = await volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "clone-b", SourceVolume = "golden" });
        Assert.That(ReadBack(server, fromVolume, Cluster, later.Length), Is.EqualTo(later), "a volume clone has the source's current data");

        // Clones are writable at once and independent of each other and of the source.
        var clone = StorageOf(server, fromSnapshot);
        Assert.That(clone.Write(0, Pattern(3, 4096), forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        Assert.That(ReadBack(server, source, 0, 4096), Is.All.EqualTo((byte)0));
        Assert.That(ReadBack(server, bigger, 0, 4096), Is.All.EqualTo((byte)0));

        var second = await volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "clone-b", Name = "b-snap" });
        var all = (await volumes.ListSnapshotsAsync(new ListSnapshotsRequest())).Snapshots;
        Assert.That(all.Select(s => s.Name), Is.EqualTo(new[] { "b-snap", "golden-v1" }));
        var ofGolden = (await volumes.ListSnapshotsAsync(new ListSnapshotsRequest { Volume = "golden" })).Snapshots;
        Assert.That(ofGolden.Select(s => s.Name), Is.EqualTo(new[] { "golden-v1" }));
        Assert.That((await volumes.ListSnapshotsAsync(new ListSnapshotsRequest { Volume = "no-such" })).Snapshots, Is.Empty);
        Assert.That(second.SourceVolume, Is.EqualTo("clone-b"));

        // Deleting the source keeps its snapshot readable; deleting the snapshot keeps its clones readable.
        await volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "golden" });
        var afterSourceGone = await volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "clone-c", SourceSnapshot = "golden-v1" });
        Assert.That(ReadBack(server, afterSourceGone, Cluster, original.Length), Is.EqualTo(original));
        Assert.That((await volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "golden-v1" })).SourceVolume, Is.EqualTo("golden"));

        await volumes.DeleteSnapshotAsync(new DeleteSnapshotRequest { Name = "golden-v1" });
        Assert.That(await InProcessServer.CodeOf(async () => await volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "golden-v1" })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(ReadBack(server, bigger, Cluster, original.Length), Is.EqualTo(original));
        Assert.That(ReadBack(server, afterSourceGone, Cluster, original.Length), Is.EqualTo(original));

        // Once everything is gone the pool is empty again.
        foreach (var name in new[] { "clone-a", "clone-big", "clone-b", "clone-c" })
        {
            await volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = name });
        }

        await volumes.DeleteSnapshotAsync(new DeleteSnapshotRequest { Name = "b-snap" });
        var pool = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single();
        Assert.That(pool.UsedBytes, Is.Zero, "every cluster came back");
        Assert.That(pool.VolumeCount, Is.Zero);
        Assert.That(pool.SnapshotCount, Is.Zero);
    }

    [Test]
    public async Task RefusalsHaveTheDocumentedStatusCodes()
    {
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));
        var v = server.Volumes;
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "src", SizeBytes = 1 << 20 });
        await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "src", Name = "snap" });

        async Task<StatusCode> Create(CreateVolumeRequest request) => await InProcessServer.CodeOf(async () => await v.CreateVolumeAsync(request));
        async Task<StatusCode> Snapshot(string volume, string name) =>
            await InProcessServer.CodeOf(async () => await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = volume, Name = name }));

        await Assert.MultipleAsync(async () =>
        {
            Assert.That(await Snapshot("src", "snap"), Is.EqualTo(StatusCode.AlreadyExists));
            Assert.That(await Snapshot("missing", "snap-2"), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Snapshot("src", "Bad Name"), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Snapshot("src", ""), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await InProcessServer.CodeOf(async () => await v.GetSnapshotAsync(new GetSnapshotRequest { Name = "nope" })), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await InProcessServer.CodeOf(async () => await v.DeleteSnapshotAsync(new DeleteSnapshotRequest { Name = "nope" })), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Create(new() { Name = "c1", SourceSnapshot = "nope" }), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Create(new() { Name = "c2", SourceVolume = "nope" }), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Create(new() { Name = "c3", SourceSnapshot = "snap", SourceVolume = "src" }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Create(new() { Name = "c4", SourceSnapshot = "snap", SizeBytes = 4096 }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Create(new() { Name = "c5", SourceVolume = "src", SizeBytes = 4096 }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Create(new() { Name = "c6", SourceSnapshot = "snap", Pool = "elsewhere" }), Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(await Create(new() { Name = "c7", SizeBytes = 4096, Pool = "elsewhere" }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Create(new() { Name = "src", SourceSnapshot = "snap" }), Is.EqualTo(StatusCode.AlreadyExists));
            Assert.That(await Create(new() { Name = "c8" }), Is.EqualTo(StatusCode.InvalidArgument), "no size and no source");
        });

        var e = await Assert.ThrowsAsync<RpcException>(async () => await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "c4", SourceSnapshot = "snap", SizeBytes = 4096 }));
        Assert.That(e!.Status.Detail, Does.Contain("at least as large").And.Contain("1048576"));
        Assert.That((await v.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(x => x.Name), Is.EqualTo(new[] { "src" }), "nothing was created");
    }

    [TestCase(StorageBackend.File)]
    [TestCase(StorageBackend.Memory)]
    public async Task BackendsWithoutSnapshotsRefuseThemAsFailedPrecondition(StorageBackend backend)
    {
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, backend));
        var v = server.Volumes;
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "plain", SizeBytes = 1 << 20 });

        var snapshot = await Assert.ThrowsAsync<RpcException>(async () => await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "plain", Name = "s" }));
        Assert.That(snapshot!.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        Assert.That(snapshot.Status.Detail, Does.Contain("thin backend").And.Contain(backend.ToString().ToLowerInvariant()));
        var clone = await Assert.ThrowsAsync<RpcException>(async () => await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "c", SourceVolume = "plain" }));
        Assert.That(clone!.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        Assert.That((await v.ListSnapshotsAsync(new ListSnapshotsRequest())).Snapshots, Is.Empty);
        Assert.That((await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools, Is.Empty);
        Assert.That((await v.GetVolumeAsync(new GetVolumeRequest { Name = "plain" })).Pool, Is.Empty);
    }

    [Test]
    public async Task VolumesGoToThePoolWithTheMostFreeSpace()
    {
        var options = InProcessServer.Options(_dir.Path, StorageBackend.Thin);
        options.Pools = [new PoolDefinition(_dir.Combine("big.img"), 96L << 20), new PoolDefinition(_dir.Combine("small.img"), 88L << 20)];
        await using var server = await InProcessServer.StartAsync(options);
        var v = server.Volumes;

        var first = await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "first", SizeBytes = 64 << 20 });
        Assert.That(first.Pool, Is.EqualTo("big"));

        // 16 MiB written to "big" leaves it less free space than "small".
        var storage = StorageOf(server, first);
        Assert.That(storage.Write(0, Pattern(4, 16 << 20), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        var second = await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "second", SizeBytes = 64 << 20 });
        Assert.That(second.Pool, Is.EqualTo("small"));

        var pinned = await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "pinned", SizeBytes = 1 << 20, Pool = "big" });
        Assert.That(pinned.Pool, Is.EqualTo("big"));

        // A clone follows its source, whatever the free space says.
        await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "first", Name = "first-snap" });
        var clone = await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "first-clone", SourceSnapshot = "first-snap" });
        Assert.That(clone.Pool, Is.EqualTo("big"));
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "x", SourceVolume = "first", Pool = "small" }));
        Assert.That(refused!.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        Assert.That(refused.Status.Detail, Does.Contain("same pool"));

        var pools = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools;
        Assert.That(pools.Select(p => p.Name), Is.EqualTo(new[] { "big", "small" }));
        Assert.That(pools.Select(p => p.VolumeCount), Is.EqualTo(new[] { 3u, 1u }));
        Assert.That(pools.Select(p => p.SnapshotCount), Is.EqualTo(new[] { 1u, 0u }));
        Assert.That(pools.Select(p => p.CapacityBytes), Is.EqualTo(new[] { (96UL << 20) - Cluster, (88UL << 20) - Cluster }));
    }

    [Test]
    public async Task PoolNumbersAndMetricsFollowWritesAndDeletes()
    {
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "m", SizeBytes = 64 << 20 });
        var before = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single();
        Assert.That(before.UsedBytes, Is.Zero);
        Assert.That(before.VolumeCount, Is.EqualTo(1));

        var storage = StorageOf(server, volume);
        Assert.That(storage.Write(0, Pattern(5, 1 << 20), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        // One 4 KiB write in another cluster costs a whole cluster: the allocation granularity.
        Assert.That(storage.Write(10 << 20, Pattern(6, 4096), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var after = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single();
        const ulong expectedUsed = (1UL << 20) + Cluster;
        Assert.That(after.UsedBytes, Is.EqualTo(expectedUsed));
        Assert.That(after.FreeBytes, Is.EqualTo(after.CapacityBytes - expectedUsed));
        Assert.That((await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "m" })).AllocatedBytes, Is.EqualTo(expectedUsed));

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://{server.Server.MetricsEndpoint}/metrics");
        Assert.That(text, Does.Contain($"csinvme_pool_used_bytes{{pool=\"default\"}} {expectedUsed}"));
        Assert.That(text, Does.Contain($"csinvme_pool_capacity_bytes{{pool=\"default\"}} {after.CapacityBytes}"));

        // Deallocation gives clusters back once the freeing record is durable.
        Assert.That(storage.Deallocate(0, 1 << 20), Is.EqualTo(StorageStatus.Success));
        Assert.That(storage.Flush(), Is.EqualTo(StorageStatus.Success));
        Assert.That((await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single().UsedBytes, Is.EqualTo((ulong)Cluster));
        text = await http.GetStringAsync($"http://{server.Server.MetricsEndpoint}/metrics");
        Assert.That(text, Does.Contain($"csinvme_pool_used_bytes{{pool=\"default\"}} {Cluster}"));
    }

    [Test]
    public async Task ARestartKeepsVolumesSnapshotsPoolsAndData()
    {
        var options = InProcessServer.Options(_dir.Path, StorageBackend.Thin);
        options.Pools = [new PoolDefinition(_dir.Combine("one.img"), 32L << 20), new PoolDefinition(_dir.Combine("two.img"), 64L << 20)];
        var pattern = Pattern(7, 2 * Cluster);
        Volume a, b, clone;
        Snapshot snapshot;
        await using (var first = await InProcessServer.StartAsync(options))
        {
            a = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "a", SizeBytes = 4 << 20, Pool = "one" });
            b = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "b", SizeBytes = 4 << 20 });
            Assert.That(StorageOf(first, a).Write(0, pattern, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            snapshot = await first.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "a", Name = "a-snap" });
            Assert.That(StorageOf(first, a).Write(0, Pattern(8, 4096), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            clone = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "a-clone", SourceSnapshot = "a-snap" });
            a = await first.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "a", SizeBytes = 8 << 20 });
        }

        await using var second = await InProcessServer.StartAsync(options);
        var volumes = (await second.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes;
        Assert.That(volumes.Select(v => (v.Name, v.Pool, v.Id, v.SizeBytes)), Is.EqualTo(new[]
        {
            ("a", "one", a.Id, 8UL << 20),
            ("a-clone", "one", clone.Id, 4UL << 20),
            ("b", "two", b.Id, 4UL << 20),
        }));
        Assert.That(await second.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "a-snap" }), Is.EqualTo(snapshot));
        Assert.That(ReadBack(second, clone, 0, pattern.Length), Is.EqualTo(pattern));
        Assert.That(ReadBack(second, a, 0, 4096), Is.EqualTo(Pattern(8, 4096)));
        Assert.That(ReadBack(second, a, 4096, pattern.Length - 4096), Is.EqualTo(pattern.AsSpan(4096).ToArray()));

        // Snapshots still work after the restart.
        var again = await second.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "a-clone-2", SourceSnapshot = "a-snap" });
        Assert.That(ReadBack(second, again, 0, pattern.Length), Is.EqualTo(pattern));
    }

    [Test]
    public async Task CommittedPoolImagesWithoutARecordStopTheStartAndAreKept()
    {
        // Records removed behind the server's back (a store restored from an old backup looks the same): the images
        // were acknowledged to a user once, so they are never taken for crash leftovers.
        var options = InProcessServer.Options(_dir.Path, StorageBackend.Thin);
        var data = Pattern(9, Cluster);
        await using (var first = await InProcessServer.StartAsync(options))
        {
            var volume = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "lost", SizeBytes = 4 << 20 });
            Assert.That(StorageOf(first, volume).Write(0, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            await first.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "lost", Name = "lost-snap" });
            await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "kept", SizeBytes = 4 << 20 });
        }

        var databasePath = Path.Combine(_dir.Path, StorageServer.MetadataFileName);
        await using (var store = await SqliteMetadataStore.OpenAsync(databasePath))
        {
            Assert.That(await store.DeleteVolumeAsync("lost"), Is.True);
            Assert.That(await store.DeleteSnapshotAsync("lost-snap"), Is.True);
        }

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(options));
        Assert.That(refused!.Message, Does.Contain("holds 2 images that the metadata store has no record of").And.Contain("volume lost (id").And.Contain("snapshot lost-snap (id"));
        Assert.That(refused.Message, Does.Contain("sqlite:" + databasePath).And.Contain("--recover-metadata"));
        Assert.That(refused.Message, Does.Not.Contain("was last used with"), "the pool and the store still belong together");

        options.RecoverMetadata = true;
        await using var second = await InProcessServer.StartAsync(options);
        Assert.That((await second.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(v => v.Name), Is.EqualTo(new[] { "kept", "lost" }));
        var lost = await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "lost" });
        Assert.That(ReadBack(second, lost, 0, data.Length), Is.EqualTo(data));
        Assert.That((await second.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "lost-snap" })).SourceVolume, Is.EqualTo("lost"));
    }

    [Test]
    public async Task ADataDirectoryOfTheFileBackendIsNotSilentlyServedEmpty()
    {
        await using (var file = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.File)))
        {
            await file.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "old-file-volume", SizeBytes = 4096 });
        }

        Assert.That(
            async () => await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin)),
            Throws.InvalidOperationException.With.Message.Contains("old-file-volume").And.Message.Contains("--backend file"));
    }

    [Test]
    public async Task ThinVolumesGrowOnline()
    {
        await using var server = await InProcessServer.StartAsync(InProcessServer.Options(_dir.Path, StorageBackend.Thin));
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "grow", SizeBytes = 1 << 20 });
        var storage = StorageOf(server, volume);
        Assert.That(storage.Write(0, Pattern(10, 4096), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var grown = await server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "grow", SizeBytes = 3 << 20 });
        Assert.That(grown.SizeBytes, Is.EqualTo((ulong)(3 << 20)));
        Assert.That(storage.SizeBytes, Is.EqualTo(3L << 20), "the exported volume object itself grew");
        Assert.That(storage.Write((3 << 20) - 4096, Pattern(11, 4096), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
        Assert.That(ReadBack(server, volume, 0, 4096), Is.EqualTo(Pattern(10, 4096)));
        Assert.That(await InProcessServer.CodeOf(async () => await server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "grow", SizeBytes = 1 << 20 })), Is.EqualTo(StatusCode.FailedPrecondition));
    }

    private static byte[] Pattern(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static IBlockVolume StorageOf(InProcessServer server, Volume volume) =>
        server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume;

    private static byte[] ReadBack(InProcessServer server, Volume volume, long offset, int length)
    {
        var buffer = new byte[length];
        Assert.That(StorageOf(server, volume).Read(offset, buffer), Is.EqualTo(StorageStatus.Success));
        return buffer;
    }
}
