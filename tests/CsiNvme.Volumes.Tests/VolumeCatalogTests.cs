using CsiNvme.Api.V1;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Volumes.Tests;

/// <summary>
/// The single server's catalog over a real SQLite store, a thin pool file and an NVMe target: what it records, what it
/// exports, what survives a restart, and what it refuses (with the error the management API maps to a gRPC status).
/// </summary>
[TestFixture]
public sealed class VolumeCatalogTests
{
    private const string Host = "nqn.2024-01.com.example:volumes-test";

    private TempDirectory _dir = null!;
    private byte[] _key = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDirectory("csinvme-volumes-test");
        _key = CatalogNode.NewKey();
    }

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private string DataDir => _dir.Combine("data");

    private string PoolPath => _dir.Combine("pool.img");

    private Task<CatalogNode> OpenAsync(string? dataDir = null) => CatalogNode.OpenAsync(dataDir ?? DataDir, PoolPath, _key);

    private static byte[] Pattern(byte seed, int length = 4096)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(seed + i * 7);
        }

        return data;
    }

    private static byte[] Read(CatalogNode node, string volume, long offset, int length = 4096)
    {
        var data = new byte[length];
        Assert.That(node.Local.Find(volume).Storage.Read(offset, data), Is.EqualTo(StorageStatus.Success));
        return data;
    }

    [Test]
    public async Task A_volume_is_recorded_exported_and_kept_with_its_data_across_a_restart()
    {
        Volume created;
        await using (var node = await OpenAsync())
        {
            created = await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "vm-disk", SizeBytes = 10_000_001, AllowedHosts = { Host } });
            Assert.That(created.SizeBytes, Is.EqualTo(10_002_432UL), "rounded up to whole 4 KiB blocks");
            Assert.That((created.BlockSize, created.Backend, created.ReplicaCount), Is.EqualTo((512u, "thin", 1u)));
            var subsystem = node.Target.FindSubsystem(created.SubsystemNqn);
            Assert.That(subsystem, Is.Not.Null, "exported as its own subsystem");
            Assert.That(subsystem!.IsHostAllowed(Host), Is.True);
            Assert.That(subsystem.IsHostAllowed(Host + "-other"), Is.False);
            Assert.That(node.Metrics.Sizes["vm-disk"], Is.EqualTo((long)created.SizeBytes));
            Assert.That(node.Local.Find("vm-disk").Storage.Write(8192, Pattern(3), forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        }

        await using (var node = await OpenAsync())
        {
            var loaded = await node.Catalog.GetAsync("vm-disk");
            Assert.That((loaded.Id, loaded.SizeBytes, loaded.SubsystemNqn, loaded.Nguid), Is.EqualTo((created.Id, created.SizeBytes, created.SubsystemNqn, created.Nguid)));
            Assert.That(loaded.AllowedHosts, Is.EqualTo(new[] { Host }));
            Assert.That(node.Target.FindSubsystem(created.SubsystemNqn)!.IsHostAllowed(Host), Is.True, "exported again at start");
            Assert.That(Read(node, "vm-disk", 8192), Is.EqualTo(Pattern(3)));

            await node.Catalog.DeleteAsync("vm-disk");
            Assert.That(node.Target.FindSubsystem(created.SubsystemNqn), Is.Null);
            Assert.That(node.Metrics.Sizes, Does.Not.ContainKey("vm-disk"));
            Assert.That((await node.Catalog.ListAsync()), Is.Empty);
        }

        await using (var node = await OpenAsync())
        {
            Assert.That(await node.Catalog.ListAsync(), Is.Empty, "a deletion is durable");
            Assert.That((await CatchAsync(() => node.Catalog.GetAsync("vm-disk"))).Error, Is.EqualTo(VolumeError.NotFound));
        }
    }

    [Test]
    public async Task Refusals_carry_the_error_their_grpc_status_is_made_of_and_change_nothing()
    {
        await using var node = await OpenAsync();
        await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "data", SizeBytes = 1 << 20 });

        async Task<VolumeError> Refused(Func<Task> call) => (await CatchAsync(call)).Error;
        Assert.Multiple(async () =>
        {
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "data", SizeBytes = 1 << 20 })), Is.EqualTo(VolumeError.AlreadyExists));
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "Bad Name", SizeBytes = 1 << 20 })), Is.EqualTo(VolumeError.InvalidArgument));
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "two", SizeBytes = 1 << 20, Replicas = 2 })), Is.EqualTo(VolumeError.FailedPrecondition));
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "clone", SourceVolume = "missing" })), Is.EqualTo(VolumeError.NotFound));
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "both", SourceVolume = "data", SourceSnapshot = "s" })), Is.EqualTo(VolumeError.InvalidArgument));
            Assert.That(await Refused(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "huge", SizeBytes = 2 * CatalogNode.PoolBytes, Pool = "nope" })), Is.Not.EqualTo(VolumeError.Internal));
            Assert.That(await Refused(() => node.Catalog.ResizeAsync("data", 4096)), Is.EqualTo(VolumeError.FailedPrecondition));
            Assert.That(await Refused(() => node.Catalog.ResizeAsync("missing", 1 << 22)), Is.EqualTo(VolumeError.NotFound));
            Assert.That(await Refused(() => node.Catalog.AllowHostAsync("data", "not an nqn")), Is.EqualTo(VolumeError.InvalidArgument));
            Assert.That(await Refused(() => node.Catalog.CreateSnapshotAsync("missing", "snap")), Is.EqualTo(VolumeError.NotFound));
            Assert.That(await Refused(() => node.Catalog.DeleteSnapshotAsync("missing")), Is.EqualTo(VolumeError.NotFound));
        });

        var volumes = await node.Catalog.ListAsync();
        Assert.That(volumes.Select(v => v.Name), Is.EqualTo(new[] { "data" }));
        Assert.That(volumes[0].SizeBytes, Is.EqualTo(1UL << 20));
        Assert.That(await node.Catalog.ListSnapshotsAsync(), Is.Empty);
    }

    [Test]
    public async Task Growing_a_volume_grows_its_storage_and_keeps_what_it_held()
    {
        await using var node = await OpenAsync();
        await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "grow", SizeBytes = 1 << 20 });
        Assert.That(node.Local.Find("grow").Storage.Write((1 << 20) - 4096, Pattern(9), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        var grown = await node.Catalog.ResizeAsync("grow", (3 << 20) + 1);
        Assert.That(grown.SizeBytes, Is.EqualTo((3UL << 20) + 4096));
        Assert.That(node.Local.Find("grow").Storage.SizeBytes, Is.EqualTo((long)grown.SizeBytes));
        Assert.That(node.Metrics.Sizes["grow"], Is.EqualTo((long)grown.SizeBytes));
        Assert.That(Read(node, "grow", (1 << 20) - 4096), Is.EqualTo(Pattern(9)));
        Assert.That(Read(node, "grow", 2 << 20), Is.EqualTo(new byte[4096]), "the new space reads as zeros");
    }

    [Test]
    public async Task A_snapshot_keeps_the_content_of_its_moment_and_clones_of_it_and_of_the_volume_start_from_there()
    {
        await using (var node = await OpenAsync())
        {
            await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "golden", SizeBytes = 4 << 20, BlockSize = 4096 });
            Assert.That(node.Local.Find("golden").Storage.Write(0, Pattern(1), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            var snapshot = await node.Catalog.CreateSnapshotAsync("golden", "golden-v1");
            Assert.That((snapshot.SourceVolume, snapshot.SizeBytes), Is.EqualTo(("golden", 4UL << 20)));

            Assert.That(node.Local.Find("golden").Storage.Write(0, Pattern(2), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            var fromSnapshot = await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "vm-1", SourceSnapshot = "golden-v1" });
            var fromVolume = await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "vm-2", SourceVolume = "golden", SizeBytes = 8 << 20 });
            Assert.That((fromSnapshot.SizeBytes, fromSnapshot.BlockSize), Is.EqualTo((4UL << 20, 4096u)), "a clone takes its source's size and block size");
            Assert.That(fromVolume.SizeBytes, Is.EqualTo(8UL << 20));
            Assert.That(Read(node, "vm-1", 0), Is.EqualTo(Pattern(1)));
            Assert.That(Read(node, "vm-2", 0), Is.EqualTo(Pattern(2)));

            // Writes to a clone stay in the clone.
            Assert.That(node.Local.Find("vm-1").Storage.Write(0, Pattern(5), forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            Assert.That(Read(node, "golden", 0), Is.EqualTo(Pattern(2)));

            var refused = await CatchAsync(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "vm-3", SourceSnapshot = "golden-v1", Pool = "elsewhere" }));
            Assert.That(refused.Error, Is.EqualTo(VolumeError.FailedPrecondition));
            Assert.That(refused.Message, Does.Contain("same pool"));
            var smaller = await CatchAsync(() => node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "vm-4", SourceSnapshot = "golden-v1", SizeBytes = 1 << 20 }));
            Assert.That(smaller.Error, Is.Not.EqualTo(VolumeError.Internal));
        }

        await using (var node = await OpenAsync())
        {
            Assert.That((await node.Catalog.ListSnapshotsAsync("golden")).Select(s => s.Name), Is.EqualTo(new[] { "golden-v1" }));
            Assert.That(Read(node, "vm-1", 0), Is.EqualTo(Pattern(5)));
            Assert.That(Read(node, "vm-2", 0), Is.EqualTo(Pattern(2)));
            await node.Catalog.DeleteSnapshotAsync("golden-v1");
            Assert.That(Read(node, "vm-1", 0), Is.EqualTo(Pattern(5)), "a clone outlives its snapshot");
        }
    }

    [Test]
    public async Task Hosts_allowed_and_denied_are_applied_to_the_exported_subsystem_and_recorded()
    {
        await using (var node = await OpenAsync())
        {
            var volume = await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "shared", SizeBytes = 1 << 20 });
            var subsystem = node.Target.FindSubsystem(volume.SubsystemNqn)!;
            Assert.That(subsystem.IsHostAllowed(Host), Is.False, "no host until one is allowed");

            await node.Catalog.AllowHostAsync("shared", Host);
            await node.Catalog.AllowHostAsync("shared", Host + "-b");
            Assert.That(subsystem.IsHostAllowed(Host), Is.True);
            var denied = await node.Catalog.DenyHostAsync("shared", Host + "-b");
            Assert.That(denied.AllowedHosts, Is.EqualTo(new[] { Host }));
            Assert.That(subsystem.IsHostAllowed(Host + "-b"), Is.False);
        }

        await using (var node = await OpenAsync())
        {
            var volume = await node.Catalog.GetAsync("shared");
            Assert.That(volume.AllowedHosts, Is.EqualTo(new[] { Host }));
            var subsystem = node.Target.FindSubsystem(volume.SubsystemNqn)!;
            Assert.That((subsystem.IsHostAllowed(Host), subsystem.IsHostAllowed(Host + "-b")), Is.EqualTo((true, false)));
            await node.Catalog.SetAllowAnyHostAsync("shared", true);
            Assert.That(subsystem.IsHostAllowed("nqn.2024-01.com.example:anyone"), Is.True);
        }
    }

    [Test]
    public async Task A_pool_opened_with_another_data_directory_stops_the_start_and_loses_nothing()
    {
        Volume created;
        await using (var node = await OpenAsync())
        {
            created = await node.Catalog.CreateAsync(new CreateVolumeRequest { Name = "precious", SizeBytes = 1 << 20 });
            Assert.That(node.Local.Find("precious").Storage.Write(0, Pattern(7), forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        }

        // A mis-mounted (empty) data directory next to the same pool: the pool's images have no records there.
        var refused = (await Assert.ThrowsAsync<InvalidOperationException>(async () => await OpenAsync(_dir.Combine("wrong-data"))))!;
        TestContext.Out.WriteLine(refused.Message);
        Assert.That(refused.Message, Does.Contain("precious").Or.Contain(created.Id));

        await using (var node = await OpenAsync())
        {
            Assert.That((await node.Catalog.GetAsync("precious")).Id, Is.EqualTo(created.Id));
            Assert.That(Read(node, "precious", 0), Is.EqualTo(Pattern(7)));
        }
    }

    private static async Task<VolumeException> CatchAsync(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (VolumeException e)
        {
            return e;
        }

        Assert.Fail("the call was not refused");
        throw new InvalidOperationException("unreachable");
    }
}
