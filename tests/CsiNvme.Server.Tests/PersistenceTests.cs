using CsiNvme.Api.V1;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class PersistenceTests
{
    private const string Host = "nqn.2024-01.com.example:restart-host";

    [Test]
    public async Task VolumesIdentityAccessAndDataSurviveARestart()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        var pattern = new byte[64 * 1024];
        new Random(42).NextBytes(pattern);
        const long offset = 3L << 20;

        Volume created;
        Volume other;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            created = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "keep", SizeBytes = 4 << 20, AllowedHosts = { Host } });
            created = await first.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "keep", SizeBytes = 8 << 20 });
            other = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "other", SizeBytes = 4096, AllowAnyHost = true, BlockSize = 4096 });
            await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "deleted", SizeBytes = 4096 });
            await first.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "deleted" });

            var storage = StorageOf(first, created);
            Assert.That(storage.Write(offset, pattern, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));
            // No flush here: the graceful shutdown must make the write durable.
        }

        await using var second = await InProcessServer.StartAsync(dir.Path);
        var reloaded = await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "keep" });
        Assert.Multiple(() =>
        {
            Assert.That(reloaded.Id, Is.EqualTo(created.Id));
            Assert.That(reloaded.Nguid, Is.EqualTo(created.Nguid));
            Assert.That(reloaded.Uuid, Is.EqualTo(created.Uuid));
            Assert.That(reloaded.SubsystemNqn, Is.EqualTo(created.SubsystemNqn));
            Assert.That(reloaded.SizeBytes, Is.EqualTo((ulong)(8 << 20)));
            Assert.That(reloaded.BlockSize, Is.EqualTo(512));
            Assert.That(reloaded.AllowedHosts, Is.EqualTo(new[] { Host }));
            Assert.That(reloaded.CreatedUnixMs, Is.EqualTo(created.CreatedUnixMs));
        });

        var reloadedOther = await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "other" });
        Assert.That(reloadedOther.AllowAnyHost, Is.True);
        Assert.That(reloadedOther.BlockSize, Is.EqualTo(4096));
        Assert.That(reloadedOther.Id, Is.EqualTo(other.Id));

        Assert.That(await InProcessServer.CodeOf(async () => await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "deleted" })), Is.EqualTo(StatusCode.NotFound));
        Assert.That((await second.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(v => v.Name), Is.EqualTo(new[] { "keep", "other" }));

        var subsystem = second.Server.Target.FindSubsystem(created.SubsystemNqn)!;
        Assert.That(subsystem.IsHostAllowed(Host), Is.True);
        Assert.That(subsystem.Namespaces[0].NguidHex, Is.EqualTo(created.Nguid));

        var readBack = new byte[pattern.Length];
        Assert.That(StorageOf(second, reloaded).Read(offset, readBack), Is.EqualTo(StorageStatus.Success));
        Assert.That(readBack, Is.EqualTo(pattern));
    }

    [Test]
    public async Task ASecondServerCannotOpenADataDirectoryInUse()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        await using var first = await InProcessServer.StartAsync(dir.Path);

        var e = await Assert.ThrowsAsync<IOException>(async () => await InProcessServer.StartAsync(dir.Path));
        Assert.That(e!.Message, Does.Contain("in use"));

        // The first server is unaffected.
        await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "still-works", SizeBytes = 4096 });
    }

    [Test]
    public async Task TheMemoryBackendServesVolumesWithoutTouchingTheDisk()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        var dataDir = dir.Combine("never-created");
        await using var server = await InProcessServer.StartAsync(dataDir, StorageBackend.Memory);

        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "ram", SizeBytes = 1 << 20 });
        Assert.That(volume.Backend, Is.EqualTo("memory"));
        var storage = StorageOf(server, volume);
        Assert.That(storage.Write(4096, new byte[] { 1, 2, 3 }, false), Is.EqualTo(StorageStatus.Success));
        await server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "ram", SizeBytes = 2 << 20 });
        Assert.That(storage.SizeBytes, Is.EqualTo(2L << 20));
        await server.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "ram" });

        var info = await server.Info.GetServerInfoAsync(new GetServerInfoRequest());
        Assert.That(info.Backend, Is.EqualTo("memory"));
        Assert.That(info.MetadataStore, Is.EqualTo("memory"));
        Assert.That(Directory.Exists(dataDir), Is.False);
    }

    [Test]
    public async Task AFailedStartReleasesEverythingItOpened()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        Volume volume;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            volume = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "survivor", SizeBytes = 4096 });
        }

        using var occupied = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        occupied.Start();
        var options = InProcessServer.Options(dir.Path);
        options.MetricsListen = (System.Net.IPEndPoint)occupied.LocalEndpoint;
        Assert.That(async () => await StorageServer.StartAsync(options), Throws.InstanceOf<IOException>());

        // The data directory lock, the metadata store and the volume file were all released.
        await using var second = await InProcessServer.StartAsync(dir.Path);
        Assert.That((await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "survivor" })).Id, Is.EqualTo(volume.Id));
    }

    [Test]
    public async Task AVolumeFileGrownBehindTheRecordIsAdoptedAtStart()
    {
        // What an interrupted resize leaves behind: the file already has the new length, the record not yet.
        using var dir = new TempDirectory("csinvme-server-test");
        Volume volume;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            volume = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "half-grown", SizeBytes = 1 << 20 });
        }

        var file = Path.Combine(dir.Path, "volumes", $"{volume.Id}.img");
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(2 << 20);
        }

        await using (var second = await InProcessServer.StartAsync(dir.Path))
        {
            Assert.That((await second.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "half-grown" })).SizeBytes, Is.EqualTo((ulong)(2 << 20)));
        }

        await using var third = await InProcessServer.StartAsync(dir.Path);
        Assert.That((await third.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "half-grown" })).SizeBytes, Is.EqualTo((ulong)(2 << 20)), "the adopted size was persisted");
    }

    [Test]
    public async Task AMissingVolumeFileStopsTheStartWithItsName()
    {
        using var dir = new TempDirectory("csinvme-server-test");
        Volume volume;
        await using (var first = await InProcessServer.StartAsync(dir.Path))
        {
            volume = await first.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "lost", SizeBytes = 4096 });
        }

        File.Delete(Path.Combine(dir.Path, "volumes", $"{volume.Id}.img"));

        // Serving the other volumes while silently dropping one would hide data loss; refuse to start instead.
        Assert.That(
            async () => await InProcessServer.StartAsync(dir.Path),
            Throws.InvalidOperationException.With.Message.Contains("lost").And.Message.Contains("missing"));
    }

    private static IBlockVolume StorageOf(InProcessServer server, Volume volume) =>
        server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume;
}
