using CsiNvme.Api.V1;
using CsiNvme.Metadata;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

/// <summary>
/// Pools and a metadata store that disagree: a missing, empty or foreign store never costs an image, and
/// --recover-metadata rebuilds the records from what the pools keep about their images.
/// </summary>
[TestFixture]
public sealed class MetadataRecoveryTests
{
    private const int Cluster = 64 * 1024;

    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-recovery");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    /// <summary>Pools outside any data directory, as the chart keeps them, so a data directory can be swapped under them.</summary>
    private StorageServerOptions Options(string dataDirectory)
    {
        var options = InProcessServer.Options(dataDirectory, StorageBackend.Thin);
        options.Pools = [new PoolDefinition(_dir.Combine("pools", "fast.img"), 256L << 20), new PoolDefinition(_dir.Combine("pools", "slow.img"), 256L << 20)];
        return options;
    }

    [TestCase("missing")]
    [TestCase("empty")]
    public async Task AServerOverPoolsWithAMissingOrEmptyMetadataStoreRefusesToStartAndKeepsEveryImage(string store)
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var original = _dir.Combine("data");
        var written = await CreateVolumesWithDataAsync(Options(original));

        var other = _dir.Combine("other-data");
        if (store == "empty")
        {
            Directory.CreateDirectory(other);
            await (await SqliteMetadataStore.OpenAsync(Path.Combine(other, StorageServer.MetadataFileName))).DisposeAsync();
        }

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(Options(other)));
        TestContext.Out.WriteLine(refused!.Message);
        Assert.That(refused.Message, Does.Contain("sqlite:" + Path.Combine(other, StorageServer.MetadataFileName)));
        foreach (var name in new[] { "vm-a", "vm-b", "vm-a-golden", "vm-c" })
        {
            Assert.That(refused.Message, Does.Contain(name));
        }

        Assert.That(refused.Message, Does.Contain("--recover-metadata").And.Contain("--data-dir"));

        // A second refused start changes nothing either; then the original data directory serves everything.
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(Options(other)));
        await using var server = await InProcessServer.StartAsync(Options(original));
        await VerifyAsync(server, written);
    }

    [Test]
    public async Task RecoverMetadataBringsBackEveryVolumeSnapshotAndCloneWithItsDataAndAccess()
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var original = _dir.Combine("data");
        var written = await CreateVolumesWithDataAsync(Options(original));
        IReadOnlyList<Volume> volumesBefore;
        IReadOnlyList<Snapshot> snapshotsBefore;
        await using (var server = await InProcessServer.StartAsync(Options(original)))
        {
            // Access and size changed after creation: recovery must restore today's, not the creation's.
            await server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "vm-a", HostNqn = "nqn.2024-01.io.example:node-2" });
            await server.Volumes.DenyHostAsync(new HostAccessRequest { Name = "vm-a", HostNqn = "nqn.2024-01.io.example:node-1" });
            await server.Volumes.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "vm-b", AllowAnyHost = false });
            await server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "vm-b", HostNqn = "nqn.2024-01.io.example:node-3" });
            await server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "vm-c", HostNqn = "nqn.2024-01.io.example:node-1" });
            await server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "vm-b", SizeBytes = 6 << 20 });
            (volumesBefore, snapshotsBefore) = await ListAsync(server);
        }

        var recovered = _dir.Combine("recovered-data");
        var options = Options(recovered);
        options.RecoverMetadata = true;
        await using (var server = await InProcessServer.StartAsync(options))
        {
            var (volumes, snapshots) = await ListAsync(server);
            Assert.That(volumes, Is.EqualTo(volumesBefore), "names, ids (so NQNs, NGUIDs), sizes, block sizes, pools, hosts, labels, creation times");
            Assert.That(snapshots, Is.EqualTo(snapshotsBefore));
            Assert.That(volumes.Select(v => v.Name), Is.EqualTo(new[] { "vm-a", "vm-b", "vm-c" }));
            Assert.That(volumes[0].AllowedHosts, Is.EqualTo(new[] { "nqn.2024-01.io.example:node-2" }));
            Assert.That(volumes[0].Labels["app"], Is.EqualTo("db"));
            Assert.That(volumes[1].SizeBytes, Is.EqualTo(6UL << 20));
            Assert.That(snapshots.Single().SourceVolume, Is.EqualTo("vm-a"));
            await VerifyAsync(server, written);

            // The exported subsystems let exactly the recorded hosts in.
            var subsystem = server.Server.Target.FindSubsystem(volumes[0].SubsystemNqn)!;
            Assert.That(subsystem.IsHostAllowed("nqn.2024-01.io.example:node-2"), Is.True);
            Assert.That(subsystem.IsHostAllowed("nqn.2024-01.io.example:node-1"), Is.False);
            Assert.That(server.Server.Target.FindSubsystem(volumes[1].SubsystemNqn)!.IsHostAllowed("nqn.2024-01.io.example:node-3"), Is.True);

            // Recovered volumes work as any other: a new snapshot and clone, and a write.
            await server.Volumes.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "vm-c", Name = "vm-c-later" });
            await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vm-d", SourceSnapshot = "vm-a-golden" });
            written.Add(new Written("vm-d", Cluster, written.Single(w => w.Volume == "vm-c" && w.Offset == Cluster).Data));
        }

        // The recovered store now owns the pools: it starts without the flag, and the old data directory is told apart.
        await using (var server = await InProcessServer.StartAsync(Options(recovered)))
        {
            await VerifyAsync(server, written);
        }

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(Options(original)));
        Assert.That(refused!.Message, Does.Contain("was last used with metadata store sqlite:" + Path.Combine(recovered, StorageServer.MetadataFileName)));
    }

    [Test]
    public async Task ExistingRecordsWinAndOnlyMissingOnesAreRebuilt()
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var data = _dir.Combine("data");
        var written = await CreateVolumesWithDataAsync(Options(data));
        await using (var store = await SqliteMetadataStore.OpenAsync(Path.Combine(data, StorageServer.MetadataFileName)))
        {
            Assert.That(await store.DeleteVolumeAsync("vm-b"), Is.True);
            Assert.That(await store.DeleteSnapshotAsync("vm-a-golden"), Is.True);
            // A record that differs from what the pool recorded: the record wins.
            var vmA = (await store.GetVolumeAsync("vm-a"))!;
            Assert.That(await store.UpdateVolumeAsync(vmA with { AllowAnyHost = true, AllowedHosts = ["nqn.2024-01.io.example:from-the-store"] }), Is.True);
        }

        var options = Options(data);
        options.RecoverMetadata = true;
        await using (var server = await InProcessServer.StartAsync(options))
        {
            var vmA = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vm-a" });
            Assert.That(vmA.AllowAnyHost, Is.True);
            Assert.That(vmA.AllowedHosts, Is.EqualTo(new[] { "nqn.2024-01.io.example:from-the-store" }));
            var vmB = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vm-b" });
            Assert.That((vmB.Pool, vmB.BlockSize, vmB.AllowAnyHost), Is.EqualTo(("slow", 4096u, true)));
            Assert.That((await server.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "vm-a-golden" })).Labels["kind"], Is.EqualTo("golden"));
            await VerifyAsync(server, written);
        }

        // The start brought the pool's copy of vm-a's record up to the store's: a second recovery, from nothing, agrees.
        var fresh = Options(_dir.Combine("fresh"));
        fresh.RecoverMetadata = true;
        await using (var server = await InProcessServer.StartAsync(fresh))
        {
            var vmA = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "vm-a" });
            Assert.That(vmA.AllowAnyHost, Is.True);
            Assert.That(vmA.AllowedHosts, Is.EqualTo(new[] { "nqn.2024-01.io.example:from-the-store" }));
        }
    }

    [Test]
    public async Task ARecoveryThatWouldGiveTwoImagesOneNameRebuildsNothing()
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var data = _dir.Combine("data");
        await CreateVolumesWithDataAsync(Options(data));
        var databasePath = Path.Combine(data, StorageServer.MetadataFileName);
        Guid impostor = Guid.NewGuid();
        await using (var store = await SqliteMetadataStore.OpenAsync(databasePath))
        {
            var vmB = (await store.GetVolumeAsync("vm-b"))!;
            Assert.That(await store.DeleteVolumeAsync("vm-b"), Is.True);
            Assert.That(await store.DeleteVolumeAsync("vm-c"), Is.True);
            Assert.That(await store.TryCreateVolumeAsync(vmB with { Id = impostor }), Is.True);
        }

        var options = Options(data);
        options.RecoverMetadata = true;
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(options));
        TestContext.Out.WriteLine(refused!.Message);
        Assert.That(refused.Message, Does.StartWith("--recover-metadata rebuilt nothing"));
        Assert.That(refused.Message, Does.Contain($"volume vm-b (id").And.Contain($"a volume of that name is already recorded (id {impostor}, pool slow)"));
        await using var check = await SqliteMetadataStore.OpenAsync(databasePath);
        Assert.That((await check.ListVolumesAsync()).Select(v => v.Name), Is.EqualTo(new[] { "vm-a", "vm-b" }), "vm-c was not rebuilt either");
    }

    [Test]
    public async Task CrashLeftoversAreReclaimedAndInterruptedOperationsWithARecordAreKept()
    {
        var data = _dir.Combine("data");
        var options = InProcessServer.Options(data, StorageBackend.Thin);
        var pattern = Pattern(4, Cluster);
        await using (var server = await InProcessServer.StartAsync(options))
        {
            foreach (var name in new[] { "kept", "record-written", "delete-started", "record-removed" })
            {
                await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = name, SizeBytes = 1 << 20 });
                Write(server, name, 0, pattern);
            }
        }

        // The states a crash leaves at each step of a create and a delete (see VolumeCatalog): the server is down, so
        // the pool is opened directly, as the crashed server had it.
        var poolPath = Path.Combine(data, "pools", "default.pool");
        var store = await SqliteMetadataStore.OpenAsync(Path.Combine(data, StorageServer.MetadataFileName));
        var ids = (await store.ListVolumesAsync()).ToDictionary(v => v.Name, v => v.Id);
        Guid neverRecorded, snapshotNeverRecorded;
        long usedBefore;
        using (var pool = CsiNvme.Storage.Thin.ThinPool.Open(new CsiNvme.Storage.Thin.ThinPoolOptions { DataPath = poolPath }))
        {
            usedBefore = pool.UsedBytes;
            // Created, the crash before the record: never acknowledged.
            neverRecorded = pool.CreateVolume(Guid.NewGuid(), "never-recorded", 1L << 20, 512, CsiNvme.Storage.Thin.ThinImageState.Pending, "{}").Id;
            Assert.That(pool.OpenVolume(neverRecorded).Write(0, pattern, forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
            snapshotNeverRecorded = pool.CreateSnapshot(ids["kept"], Guid.NewGuid(), "snap-never-recorded", CsiNvme.Storage.Thin.ThinImageState.Pending, "{}").Id;
            // Record written, the crash before the state change.
            pool.SetImageState(ids["record-written"], CsiNvme.Storage.Thin.ThinImageState.Pending);
            // Marked for deletion, the crash before the record was removed: the delete was never acknowledged.
            pool.SetImageState(ids["delete-started"], CsiNvme.Storage.Thin.ThinImageState.Deleting);
            // Marked, record removed, the crash before the pool delete.
            pool.SetImageState(ids["record-removed"], CsiNvme.Storage.Thin.ThinImageState.Deleting);
        }

        Assert.That(await store.DeleteVolumeAsync("record-removed"), Is.True);
        await store.DisposeAsync();

        await using (var server = await InProcessServer.StartAsync(options))
        {
            var (volumes, snapshots) = await ListAsync(server);
            Assert.That(volumes.Select(v => v.Name), Is.EqualTo(new[] { "delete-started", "kept", "record-written" }));
            Assert.That(snapshots, Is.Empty);
            foreach (var name in new[] { "delete-started", "kept", "record-written" })
            {
                var buffer = new byte[pattern.Length];
                Assert.That(StorageOf(server, await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = name })).Read(0, buffer), Is.EqualTo(StorageStatus.Success));
                Assert.That(buffer, Is.EqualTo(pattern), name);
            }

            // The kept snapshot-less "kept" merged back: the reclaimed snapshot and volumes gave their clusters back.
            var pool = (await server.Info.ListPoolsAsync(new ListPoolsRequest())).Pools.Single();
            Assert.That(pool.UsedBytes, Is.EqualTo((ulong)(usedBefore - Cluster)), "the reclaimed images' clusters came back");
        }

        using (var pool = CsiNvme.Storage.Thin.ThinPool.Open(new CsiNvme.Storage.Thin.ThinPoolOptions { DataPath = poolPath }))
        {
            var images = pool.ListImages().Where(i => !i.Deleted).ToArray();
            Assert.That(images.Select(i => i.Id), Does.Not.Contain(neverRecorded).And.Not.Contain(snapshotNeverRecorded).And.Not.Contain(ids["record-removed"]));
            Assert.That(images.Select(i => i.State), Is.All.EqualTo(CsiNvme.Storage.Thin.ThinImageState.Committed), "interrupted states were settled");
        }
    }

    [Test]
    public async Task RecordsWhoseImagesAreMissingStopTheStartEvenWithRecovery()
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var data = _dir.Combine("data");
        var written = await CreateVolumesWithDataAsync(Options(data));

        // The pool's file went elsewhere (a mount that did not happen): --pool PATH,SIZE creates a new, empty pool there.
        var poolPath = _dir.Combine("pools", "fast.img");
        Directory.CreateDirectory(_dir.Combine("elsewhere"));
        File.Move(poolPath, _dir.Combine("elsewhere", "fast.img"));
        File.Move(poolPath + ".journal", _dir.Combine("elsewhere", "fast.img.journal"));

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(Options(data)));
        TestContext.Out.WriteLine(refused!.Message);
        Assert.That(refused.Message, Does.Contain("was used with a pool fast of pool id").And.Contain($"but {poolPath} holds pool id"));
        Assert.That(refused.Message, Does.Contain("volume vm-a (id").And.Contain("is missing from pool fast"));
        Assert.That(refused.Message, Does.Contain("snapshot vm-a-golden (id"));
        Assert.That(refused.Message, Does.Contain("Check --pool"));

        var options = Options(data);
        options.RecoverMetadata = true;
        refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await InProcessServer.StartAsync(options));
        Assert.That(refused!.Message, Does.Contain("is missing from pool fast").And.Not.Contain("was used with a pool fast"));

        File.Delete(poolPath);
        File.Delete(poolPath + ".journal");
        File.Move(_dir.Combine("elsewhere", "fast.img"), poolPath);
        File.Move(_dir.Combine("elsewhere", "fast.img.journal"), poolPath + ".journal");
        await using var server = await InProcessServer.StartAsync(Options(data));
        await VerifyAsync(server, written);
    }

    [Test]
    public async Task PoolsFromBeforeRecoveryDataGetItAtStartAndTheirImagesCanStillBeRecovered()
    {
        // A pool as the server wrote it before images had states and annotations: every image committed, nothing more.
        Directory.CreateDirectory(_dir.Combine("pools"));
        var poolPath = _dir.Combine("pools", "fast.img");
        var pattern = Pattern(5, Cluster);
        Guid legacy, recorded;
        using (var pool = CsiNvme.Storage.Thin.ThinPool.Open(new CsiNvme.Storage.Thin.ThinPoolOptions { DataPath = poolPath, SizeBytes = 256L << 20 }))
        {
            legacy = pool.CreateVolume(Guid.NewGuid(), "legacy", 1L << 20, 4096).Id;
            Assert.That(pool.OpenVolume(legacy).Write(0, pattern, forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
            pool.CreateSnapshot(legacy, Guid.NewGuid(), "legacy-snap");
            recorded = pool.CreateVolume(Guid.NewGuid(), "recorded", 1L << 20, 512).Id;
        }

        // "recorded" has its record, as before the upgrade; "legacy" and its snapshot lost theirs.
        var data = _dir.Combine("data");
        Directory.CreateDirectory(data);
        await using (var store = await SqliteMetadataStore.OpenAsync(Path.Combine(data, StorageServer.MetadataFileName)))
        {
            var record = new VolumeRecord(recorded, "recorded", 1L << 20, 512, false, ["nqn.2024-01.io.example:old-node"], DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000))
            {
                Pool = "fast",
            };
            Assert.That(await store.TryCreateVolumeAsync(record), Is.True);
        }

        var options = Options(data);
        options.RecoverMetadata = true;
        await using (var server = await InProcessServer.StartAsync(options))
        {
            var volume = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "legacy" });
            Assert.That((volume.Id, volume.SizeBytes, volume.BlockSize, volume.AllowAnyHost), Is.EqualTo((legacy.ToString("D"), 1UL << 20, 4096u, false)));
            Assert.That(volume.AllowedHosts, Is.Empty, "the pool never knew its hosts");
            var buffer = new byte[pattern.Length];
            Assert.That(StorageOf(server, volume).Read(0, buffer), Is.EqualTo(StorageStatus.Success));
            Assert.That(buffer, Is.EqualTo(pattern));
            var snapshot = await server.Volumes.GetSnapshotAsync(new GetSnapshotRequest { Name = "legacy-snap" });
            Assert.That(snapshot.SizeBytes, Is.EqualTo(1UL << 20));
        }

        // The start gave every recorded image its recovery data and the pool its owner.
        using (var pool = CsiNvme.Storage.Thin.ThinPool.Open(new CsiNvme.Storage.Thin.ThinPoolOptions { DataPath = poolPath }))
        {
            Assert.That(pool.GetImage(recorded)!.Annotation, Does.Contain("nqn.2024-01.io.example:old-node"));
            Assert.That(pool.Annotation, Does.Contain(Path.Combine(data, StorageServer.MetadataFileName)));
        }
    }

    [Test]
    public async Task TheServerProcessRefusesAMismatchedDataDirectoryAndRecoversWithTheFlag()
    {
        Directory.CreateDirectory(_dir.Combine("pools"));
        var written = await CreateVolumesWithDataAsync(Options(_dir.Combine("data")));
        var other = Directory.CreateDirectory(_dir.Combine("other-data")).FullName;
        string[] pools = ["--pool", _dir.Combine("pools", "fast.img"), "--pool", _dir.Combine("pools", "slow.img")];

        var refused = await ProcessRunner.RunAsync(
            "dotnet",
            [RepoPaths.ServerDll, "--data-dir", other, "--nvme-listen", "127.0.0.1:0", "--mgmt-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", .. pools],
            TimeSpan.FromSeconds(60));
        Assert.That(refused.ExitCode, Is.EqualTo(1), refused.Output);
        Assert.That(refused.Output, Does.Contain("csinvme-server: cannot start: metadata store sqlite:" + Path.Combine(other, StorageServer.MetadataFileName)));
        Assert.That(refused.Output, Does.Contain("volume vm-a (id").And.Contain("--recover-metadata"));
        Assert.That(refused.Output, Does.Not.Contain("CSINVME-READY"));

        await using var server = await ServerProcess.StartAsync(other, [.. pools, "--recover-metadata"]);
        Assert.That(server.Output, Does.Contain("Recovered volume vm-a from pool fast"));
        var volumes = (await server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes;
        Assert.That(volumes.Select(v => v.Name), Is.EqualTo(new[] { "vm-a", "vm-b", "vm-c" }));
        Assert.That(await server.StopAsync(), Is.Zero, server.OutputTail());

        // The data, read by an in-process server over the same directory.
        await using var check = await InProcessServer.StartAsync(Options(other));
        await VerifyAsync(check, written);
    }

    private static async Task<(IReadOnlyList<Volume> Volumes, IReadOnlyList<Snapshot> Snapshots)> ListAsync(InProcessServer server)
    {
        var volumes = (await server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(v =>
        {
            // Listen ports differ from server to server; everything else of a volume must come back.
            var copy = v.Clone();
            copy.ListenAddresses.Clear();
            return copy;
        }).ToArray();
        return (volumes, (await server.Volumes.ListSnapshotsAsync(new ListSnapshotsRequest())).Snapshots.ToArray());
    }

    private sealed record Written(string Volume, long Offset, byte[] Data);

    /// <summary>
    /// Two volumes in two pools, a snapshot and a clone of it, each with a known pattern; the source is overwritten
    /// after the snapshot so the snapshot, the clone and the source all hold different data.
    /// </summary>
    private static async Task<List<Written>> CreateVolumesWithDataAsync(StorageServerOptions options)
    {
        var written = new List<Written>();
        await using var server = await InProcessServer.StartAsync(options);
        var v = server.Volumes;
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "vm-a", SizeBytes = 8 << 20, Pool = "fast", AllowedHosts = { "nqn.2024-01.io.example:node-1" }, Labels = { ["app"] = "db" } });
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "vm-b", SizeBytes = 4 << 20, Pool = "slow", BlockSize = 4096, AllowAnyHost = true });
        var golden = Pattern(1, 3 * Cluster);
        Write(server, "vm-a", Cluster, golden);
        written.Add(new Written("vm-b", 5 * 4096, Pattern(2, 8192)));
        Write(server, "vm-b", 5 * 4096, written[^1].Data);
        await v.CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "vm-a", Name = "vm-a-golden", Labels = { ["kind"] = "golden" } });
        var after = Pattern(3, 4096);
        Write(server, "vm-a", Cluster, after);
        written.Add(new Written("vm-a", Cluster, [.. after, .. golden.AsSpan(4096)]));
        await v.CreateVolumeAsync(new CreateVolumeRequest { Name = "vm-c", SourceSnapshot = "vm-a-golden", SizeBytes = 16 << 20 });
        written.Add(new Written("vm-c", Cluster, golden));
        written.Add(new Written("vm-c", 12 << 20, new byte[4096]));
        return written;
    }

    private static async Task VerifyAsync(InProcessServer server, IEnumerable<Written> written)
    {
        foreach (var w in written)
        {
            var volume = await server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = w.Volume });
            var buffer = new byte[w.Data.Length];
            Assert.That(StorageOf(server, volume).Read(w.Offset, buffer), Is.EqualTo(StorageStatus.Success));
            Assert.That(buffer, Is.EqualTo(w.Data), $"data of {w.Volume} at {w.Offset}");
        }
    }

    private static void Write(InProcessServer server, string name, long offset, byte[] data)
    {
        var volume = server.Volumes.GetVolume(new GetVolumeRequest { Name = name });
        Assert.That(StorageOf(server, volume).Write(offset, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
    }

    private static byte[] Pattern(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static IBlockVolume StorageOf(InProcessServer server, Volume volume) =>
        server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume;
}
