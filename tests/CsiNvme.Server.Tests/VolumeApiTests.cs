using CsiNvme.Api;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class VolumeApiTests
{
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    private const string HostB = "nqn.2024-01.com.example:host-b";

    private TempDirectory _dir = null!;
    private InProcessServer _server = null!;

    [SetUp]
    public async Task SetUp()
    {
        _dir = new TempDirectory("csinvme-server-test");
        _server = await InProcessServer.StartAsync(_dir.Path);
    }

    [TearDown]
    public async Task TearDown()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    [Test]
    public async Task CreateReturnsTheVolumeWithItsDerivedIdentity()
    {
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol-a", SizeBytes = 1UL << 30 });

        var id = Guid.Parse(volume.Id);
        Assert.Multiple(() =>
        {
            Assert.That(volume.Name, Is.EqualTo("vol-a"));
            Assert.That(volume.SizeBytes, Is.EqualTo(1UL << 30));
            Assert.That(volume.BlockSize, Is.EqualTo(512));
            Assert.That(volume.SubsystemNqn, Is.EqualTo(VolumeNaming.SubsystemNqn(id)));
            Assert.That(volume.Nguid, Is.EqualTo(id.ToString("N")));
            Assert.That(volume.Nguid, Does.Match("^[0-9a-f]{32}$"));
            Assert.That(volume.Uuid, Is.EqualTo(id.ToString("D")));
            Assert.That(volume.AllowAnyHost, Is.False);
            Assert.That(volume.AllowedHosts, Is.Empty);
            Assert.That(volume.ListenAddresses, Is.EqualTo(_server.Server.NvmeEndpoints.Select(e => e.ToString())));
            Assert.That(volume.ConnectedHosts, Is.Empty);
            Assert.That(volume.Backend, Is.EqualTo("file"));
            Assert.That(volume.CreatedUnixMs, Is.InRange(before, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
        });

        var subsystem = _server.Server.Target.FindSubsystem(volume.SubsystemNqn);
        Assert.That(subsystem, Is.Not.Null);
        Assert.That(subsystem!.SerialNumber, Is.EqualTo(id.ToString("N")[..20]));
        Assert.That(subsystem.Namespaces, Has.Count.EqualTo(1));
        Assert.That(subsystem.Namespaces[0].NamespaceId, Is.EqualTo(1u));
        Assert.That(subsystem.Namespaces[0].NguidHex, Is.EqualTo(volume.Nguid));
        Assert.That(subsystem.Namespaces[0].Volume.SizeBytes, Is.EqualTo(1L << 30));
        Assert.That(subsystem.IsHostAllowed(HostA), Is.False, "an empty allowed list denies every host");

        var file = Path.Combine(_dir.Path, "volumes", $"{id:D}.img");
        Assert.That(new FileInfo(file).Length, Is.EqualTo(1L << 30));
    }

    [Test]
    public async Task GetAndListReturnWhatCreateReturned()
    {
        var b = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "b-vol", SizeBytes = 8192, AllowAnyHost = true });
        var a = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "a-vol", SizeBytes = 4096, AllowedHosts = { HostB, HostA, HostA } });

        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "a-vol" }), Is.EqualTo(a));
        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "b-vol" }), Is.EqualTo(b));
        Assert.That(a.AllowedHosts, Is.EqualTo(new[] { HostB, HostA }.Order(StringComparer.Ordinal)), "deduplicated and sorted");
        Assert.That(b.AllowAnyHost, Is.True);

        var list = await _server.Volumes.ListVolumesAsync(new ListVolumesRequest());
        Assert.That(list.Volumes, Is.EqualTo(new[] { a, b }), "sorted by name");
    }

    [TestCase(1UL, 4096UL)]
    [TestCase(1000UL, 4096UL)]
    [TestCase(4096UL, 4096UL)]
    [TestCase(4097UL, 8192UL)]
    [TestCase((1UL << 30) + 1, (1UL << 30) + 4096)]
    public async Task SizeIsRoundedUpToWhole4KiB(ulong requested, ulong expected)
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "rounded", SizeBytes = requested });
        Assert.That(volume.SizeBytes, Is.EqualTo(expected));
    }

    [Test]
    public async Task BlockSize4096CanBeAsked()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "big-blocks", SizeBytes = 1 << 20, BlockSize = 4096 });
        Assert.That(volume.BlockSize, Is.EqualTo(4096));
        Assert.That(_server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume.BlockSize, Is.EqualTo(4096));
    }

    [TestCase("", 4096UL, 0u, null)]
    [TestCase("Upper", 4096UL, 0u, null)]
    [TestCase("-leading-dash", 4096UL, 0u, null)]
    [TestCase("has space", 4096UL, 0u, null)]
    [TestCase("../escape", 4096UL, 0u, null)]
    [TestCase("zero-size", 0UL, 0u, null)]
    [TestCase("huge", ulong.MaxValue, 0u, null)]
    [TestCase("too-big", (64UL << 40) + 1, 0u, null)]
    [TestCase("odd-block", 4096UL, 1024u, null)]
    [TestCase("bad-host", 4096UL, 0u, "not-an-nqn")]
    [TestCase("bad-host-uuid", 4096UL, 0u, "nqn.2014-08.org.nvmexpress:uuid:zzz")]
    public async Task CreateRejectsBadInputWithInvalidArgument(string name, ulong size, uint blockSize, string? host)
    {
        var request = new CreateVolumeRequest { Name = name, SizeBytes = size, BlockSize = blockSize };
        if (host is not null)
        {
            request.AllowedHosts.Add(host);
        }

        var e = await Assert.ThrowsAsync<RpcException>(async () => await _server.Volumes.CreateVolumeAsync(request));
        Assert.That(e!.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(e.Status.Detail, Is.Not.Empty);
        Assert.That(Directory.GetFiles(Path.Combine(_dir.Path, "volumes")), Is.Empty, "nothing created");
    }

    [Test]
    public async Task CreatingAnExistingNameIsAlreadyExistsAndChangesNothing()
    {
        var first = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "dup", SizeBytes = 4096 });

        foreach (var size in new ulong[] { 4096, 8192 })
        {
            var e = await Assert.ThrowsAsync<RpcException>(async () =>
                await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "dup", SizeBytes = size }));
            Assert.That(e!.StatusCode, Is.EqualTo(StatusCode.AlreadyExists));
            Assert.That(e.Status.Detail, Does.Contain("dup").And.Contain(first.Id));
        }

        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "dup" }), Is.EqualTo(first));
        Assert.That(Directory.GetFiles(Path.Combine(_dir.Path, "volumes")), Has.Length.EqualTo(1));
    }

    [Test]
    public async Task DeleteRemovesSubsystemRecordAndFile()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "gone", SizeBytes = 4096 });
        var file = Path.Combine(_dir.Path, "volumes", $"{volume.Id}.img");
        Assert.That(File.Exists(file), Is.True);

        await _server.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "gone" });

        Assert.That(File.Exists(file), Is.False);
        Assert.That(_server.Server.Target.FindSubsystem(volume.SubsystemNqn), Is.Null);
        Assert.That((await _server.Volumes.ListVolumesAsync(new ListVolumesRequest())).Volumes, Is.Empty);
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "gone" })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "gone" })), Is.EqualTo(StatusCode.NotFound));

        // The name is free again and gets a new identity.
        var again = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "gone", SizeBytes = 4096 });
        Assert.That(again.Id, Is.Not.EqualTo(volume.Id));
    }

    [Test]
    public async Task OperationsOnAMissingVolumeAreNotFound()
    {
        var v = _server.Volumes;
        Assert.That(await InProcessServer.CodeOf(async () => await v.GetVolumeAsync(new GetVolumeRequest { Name = "nope" })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "nope" })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "nope", SizeBytes = 8192 })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.AllowHostAsync(new HostAccessRequest { Name = "nope", HostNqn = HostA })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.DenyHostAsync(new HostAccessRequest { Name = "nope", HostNqn = HostA })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "nope", AllowAnyHost = true })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await InProcessServer.CodeOf(async () => await v.GetVolumeAsync(new GetVolumeRequest { Name = "Bad/Name" })), Is.EqualTo(StatusCode.InvalidArgument));
    }

    [Test]
    public async Task ResizeGrowsStorageRecordAndMetricsAndIsIdempotent()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "grow", SizeBytes = 1 << 20 });
        var storage = _server.Server.Target.FindSubsystem(volume.SubsystemNqn)!.Namespaces[0].Volume;

        var grown = await _server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "grow", SizeBytes = (2 << 20) + 1 });
        Assert.That(grown.SizeBytes, Is.EqualTo((ulong)(2 << 20) + 4096));
        Assert.That(storage.SizeBytes, Is.EqualTo((2L << 20) + 4096));
        Assert.That(grown.Id, Is.EqualTo(volume.Id));
        Assert.That(new FileInfo(Path.Combine(_dir.Path, "volumes", $"{volume.Id}.img")).Length, Is.EqualTo((2L << 20) + 4096));

        var same = await _server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "grow", SizeBytes = grown.SizeBytes });
        Assert.That(same, Is.EqualTo(grown));
        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "grow" }), Is.EqualTo(grown));
    }

    [Test]
    public async Task ShrinkIsFailedPreconditionAndChangesNothing()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "shrink", SizeBytes = 1 << 20 });

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await _server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "shrink", SizeBytes = 4096 }));
        Assert.That(e!.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        Assert.That(e.Status.Detail, Does.Contain("only grow"));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "shrink", SizeBytes = 0 })), Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "shrink" }), Is.EqualTo(volume));
    }

    [Test]
    public async Task A_single_server_keeps_one_replica_and_refuses_more()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "alone", SizeBytes = 1 << 20 });

        Assert.That(await _server.Volumes.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "alone", Replicas = 1 }), Is.EqualTo(volume));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await _server.Volumes.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "alone", Replicas = 2 }));
        Assert.That((e!.StatusCode, e.Status.Detail), Is.EqualTo((StatusCode.FailedPrecondition,
            "2 replicas need a storage cluster; this is a single storage server (start the servers with --etcd-endpoints to form one)")));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "alone", Replicas = 0 })), Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "alone", Replicas = 4 })), Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.SetReplicaCountAsync(new SetReplicaCountRequest { Name = "missing", Replicas = 1 })), Is.EqualTo(StatusCode.NotFound));
        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "alone" }), Is.EqualTo(volume));
    }

    [Test]
    public async Task AllowAndDenyHostsUpdateRecordAndLiveSubsystem()
    {
        var volume = await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "acl", SizeBytes = 4096 });
        var subsystem = _server.Server.Target.FindSubsystem(volume.SubsystemNqn)!;

        var allowed = await _server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "acl", HostNqn = HostB });
        allowed = await _server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "acl", HostNqn = HostA });
        var again = await _server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "acl", HostNqn = HostA });
        Assert.That(allowed.AllowedHosts, Is.EqualTo(new[] { HostA, HostB }.Order(StringComparer.Ordinal)));
        Assert.That(again, Is.EqualTo(allowed), "allowing twice changes nothing");
        Assert.That(subsystem.IsHostAllowed(HostA) && subsystem.IsHostAllowed(HostB), Is.True);

        var denied = await _server.Volumes.DenyHostAsync(new HostAccessRequest { Name = "acl", HostNqn = HostA });
        Assert.That(denied.AllowedHosts, Is.EqualTo(new[] { HostB }));
        Assert.That(subsystem.IsHostAllowed(HostA), Is.False);
        Assert.That(subsystem.IsHostAllowed(HostB), Is.True);
        Assert.That(await _server.Volumes.DenyHostAsync(new HostAccessRequest { Name = "acl", HostNqn = HostA }), Is.EqualTo(denied), "denying twice changes nothing");

        var open = await _server.Volumes.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "acl", AllowAnyHost = true });
        Assert.That(open.AllowAnyHost, Is.True);
        Assert.That(subsystem.IsHostAllowed("nqn.2024-01.com.example:anyone"), Is.True);
        var closed = await _server.Volumes.SetAllowAnyHostAsync(new SetAllowAnyHostRequest { Name = "acl", AllowAnyHost = false });
        Assert.That(closed.AllowAnyHost, Is.False);
        Assert.That(subsystem.IsHostAllowed("nqn.2024-01.com.example:anyone"), Is.False);
        Assert.That(subsystem.IsHostAllowed(HostB), Is.True);

        Assert.That(await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "acl" }), Is.EqualTo(closed));
    }

    [TestCase("")]
    [TestCase("host-b")]
    [TestCase("nqn.2024-13.com.example:x")]
    [TestCase("nqn.2014-08.org.nvmexpress:uuid:1234")]
    public async Task BadHostNqnIsInvalidArgument(string hostNqn)
    {
        await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "acl", SizeBytes = 4096 });
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.AllowHostAsync(new HostAccessRequest { Name = "acl", HostNqn = hostNqn })), Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That(await InProcessServer.CodeOf(async () => await _server.Volumes.DenyHostAsync(new HostAccessRequest { Name = "acl", HostNqn = hostNqn })), Is.EqualTo(StatusCode.InvalidArgument));
        Assert.That((await _server.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "acl" })).AllowedHosts, Is.Empty);
    }

    [Test]
    public async Task ConcurrentCreatesOfOneNameYieldExactlyOneVolume()
    {
        var attempts = Enumerable.Range(0, 16).Select(async _ =>
        {
            try
            {
                return (await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "race", SizeBytes = 4096 })).Id;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
            {
                return null;
            }
        }).ToArray();
        var ids = await Task.WhenAll(attempts);

        Assert.That(ids.Count(id => id is not null), Is.EqualTo(1));
        Assert.That(Directory.GetFiles(Path.Combine(_dir.Path, "volumes")), Has.Length.EqualTo(1));
        Assert.That(_server.Server.Target.Subsystems, Has.Count.EqualTo(1));
    }

    [Test]
    public async Task ConcurrentCreatesOfDistinctNamesAllSucceed()
    {
        var names = Enumerable.Range(0, 16).Select(i => $"par-{i:D2}").ToArray();
        var volumes = await Task.WhenAll(names.Select(async n =>
            await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = n, SizeBytes = 4096 })));

        Assert.That(volumes.Select(v => v.Id).Distinct().Count(), Is.EqualTo(16));
        var list = await _server.Volumes.ListVolumesAsync(new ListVolumesRequest());
        Assert.That(list.Volumes.Select(v => v.Name), Is.EqualTo(names));
        Assert.That(_server.Server.Target.Subsystems, Has.Count.EqualTo(16));
    }

    [Test]
    public async Task ServerInfoDescribesTheServer()
    {
        await _server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "one", SizeBytes = 4096 });
        var info = await _server.Info.GetServerInfoAsync(new GetServerInfoRequest());

        Assert.Multiple(() =>
        {
            Assert.That(info.Version, Is.Not.Empty);
            Assert.That(info.DiscoveryNqn, Is.EqualTo("nqn.2014-08.org.nvmexpress.discovery"));
            Assert.That(info.NvmeListenAddresses, Is.EqualTo(_server.Server.NvmeEndpoints.Select(e => e.ToString())));
            Assert.That(info.NvmeListenAddresses.Single(), Does.Not.EndWith(":0"));
            Assert.That(info.ManagementAddress, Is.EqualTo(_server.Server.ManagementEndpoint.ToString()));
            Assert.That(info.Backend, Is.EqualTo("file"));
            Assert.That(info.DataDir, Is.EqualTo(Path.GetFullPath(_dir.Path)));
            Assert.That(info.MetadataStore, Does.StartWith("sqlite:").And.EndWith("metadata.db"));
            Assert.That(info.VolumeCount, Is.EqualTo(1));
            Assert.That(info.ConnectionCount, Is.Zero);
            Assert.That(info.StartedUnixMs, Is.GreaterThan(0));
        });
    }
}
