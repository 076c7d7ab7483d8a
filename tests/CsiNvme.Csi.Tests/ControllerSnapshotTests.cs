using Csi.V1;
using CsiNvme.Host;
using CsiNvme.Server;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>CreateSnapshot / DeleteSnapshot / ListSnapshots and volumes cloned from snapshots and volumes.</summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerSnapshotTests
{
    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    private ControllerClient Controller => _harness.Controller;

    private async Task<string> NewVolumeAsync(long bytes = 1 << 20)
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: bytes));
        return name;
    }

    [Test]
    public async Task CreateSnapshot_returns_a_ready_snapshot_and_is_idempotent_by_name()
    {
        var volume = await NewVolumeAsync(2 << 20);
        var name = Caps.UniqueName("snapshot");
        var before = DateTimeOffset.UtcNow.AddSeconds(-5);
        var first = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = name })).Snapshot;
        var again = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = name })).Snapshot;
        var onServer = await _harness.Management.GetSnapshotAsync(new Mgmt.GetSnapshotRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(first.SnapshotId, Is.EqualTo(name));
            Assert.That(first.SourceVolumeId, Is.EqualTo(volume));
            Assert.That(first.SizeBytes, Is.EqualTo(2 << 20));
            Assert.That(first.ReadyToUse, Is.True);
            Assert.That(first.CreationTime.ToDateTimeOffset(), Is.GreaterThan(before).And.LessThan(DateTimeOffset.UtcNow.AddSeconds(5)));
            Assert.That(again, Is.EqualTo(first));
            Assert.That(onServer.SourceVolume, Is.EqualTo(volume));
        });
    }

    [Test]
    public async Task CreateSnapshot_error_codes()
    {
        var volume = await NewVolumeAsync();
        var other = await NewVolumeAsync();
        var name = Caps.UniqueName("snapshot");
        await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = name });
        Task<StatusCode> Code(CreateSnapshotRequest request) => CsiHarness.CodeOf(() => Controller.CreateSnapshotAsync(request).ResponseAsync);
        var withParameter = new CreateSnapshotRequest { SourceVolumeId = volume, Name = Caps.UniqueName("snapshot") };
        withParameter.Parameters.Add("retention", "7d");
        Assert.Multiple(async () =>
        {
            Assert.That(await Code(new() { SourceVolumeId = other, Name = name }), Is.EqualTo(StatusCode.AlreadyExists), "same name, other source");
            Assert.That(await Code(new() { Name = "snap" }), Is.EqualTo(StatusCode.InvalidArgument), "no source");
            Assert.That(await Code(new() { SourceVolumeId = volume }), Is.EqualTo(StatusCode.InvalidArgument), "no name");
            Assert.That(await Code(withParameter), Is.EqualTo(StatusCode.InvalidArgument), "unknown parameter");
            Assert.That(await Code(new() { SourceVolumeId = "missing", Name = Caps.UniqueName("snapshot") }), Is.EqualTo(StatusCode.NotFound), "unknown source");
            Assert.That(await Code(new() { SourceVolumeId = "Bad Id", Name = Caps.UniqueName("snapshot") }), Is.EqualTo(StatusCode.NotFound), "malformed source id");
        });
    }

    [Test]
    public async Task DeleteSnapshot_removes_it_and_is_idempotent()
    {
        var volume = await NewVolumeAsync();
        var name = Caps.UniqueName("snapshot");
        await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = name });
        await Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = name });
        Assert.Multiple(async () =>
        {
            Assert.That(
                await CsiHarness.CodeOf(() => _harness.Management.GetSnapshotAsync(new Mgmt.GetSnapshotRequest { Name = name }).ResponseAsync),
                Is.EqualTo(StatusCode.NotFound));
            Assert.That(async () => await Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = name }), Throws.Nothing);
            Assert.That(async () => await Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = "Bad Id" }), Throws.Nothing);
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest()).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
        });
    }

    [Test]
    public async Task ListSnapshots_filters_by_id_and_source_and_pages()
    {
        await using var harness = await CsiHarness.StartAsync();
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-a", requiredBytes: 1 << 20));
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-b", requiredBytes: 1 << 20));
        foreach (var (volume, snapshot) in new[] { ("pvc-a", "snap-1"), ("pvc-a", "snap-2"), ("pvc-b", "snap-3"), ("pvc-a", "snap-4") })
        {
            await harness.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = snapshot });
        }

        async Task<string[]> Ids(ListSnapshotsRequest request) =>
            (await harness.Controller.ListSnapshotsAsync(request)).Entries.Select(e => e.Snapshot.SnapshotId).ToArray();

        var paged = new List<string>();
        var token = string.Empty;
        for (var i = 0; i < 10; i++)
        {
            var page = await harness.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { MaxEntries = 3, StartingToken = token });
            paged.AddRange(page.Entries.Select(e => e.Snapshot.SnapshotId));
            token = page.NextToken;
            if (token.Length == 0)
            {
                break;
            }
        }

        Assert.Multiple(async () =>
        {
            Assert.That(await Ids(new()), Is.EqualTo(new[] { "snap-1", "snap-2", "snap-3", "snap-4" }));
            Assert.That(paged, Is.EqualTo(new[] { "snap-1", "snap-2", "snap-3", "snap-4" }));
            Assert.That(await Ids(new() { SourceVolumeId = "pvc-a" }), Is.EqualTo(new[] { "snap-1", "snap-2", "snap-4" }));
            Assert.That(await Ids(new() { SourceVolumeId = "pvc-a", MaxEntries = 2 }), Is.EqualTo(new[] { "snap-1", "snap-2" }));
            Assert.That(await Ids(new() { SnapshotId = "snap-3" }), Is.EqualTo(new[] { "snap-3" }));
            Assert.That(await Ids(new() { SnapshotId = "snap-3", SourceVolumeId = "pvc-a" }), Is.Empty);
            Assert.That(await Ids(new() { SnapshotId = "snap-9" }), Is.Empty);
            Assert.That(await Ids(new() { SourceVolumeId = "pvc-none" }), Is.Empty);
            Assert.That(await Ids(new() { SourceVolumeId = "Bad Id" }), Is.Empty);
            Assert.That(
                await CsiHarness.CodeOf(() => harness.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { StartingToken = "invalid-token" }).ResponseAsync),
                Is.EqualTo(StatusCode.Aborted));
            Assert.That(
                await CsiHarness.CodeOf(() => harness.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { MaxEntries = -3 }).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
        });
    }

    [Test]
    public async Task CreateVolume_from_a_snapshot_or_a_volume_clones_it()
    {
        var source = await NewVolumeAsync(3 << 20);
        var snapshot = Caps.UniqueName("snapshot");
        await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = source, Name = snapshot });

        var fromSnapshot = Caps.Create(Caps.UniqueName());
        fromSnapshot.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = snapshot } };
        var clone = (await Controller.CreateVolumeAsync(fromSnapshot)).Volume;
        var retry = (await Controller.CreateVolumeAsync(fromSnapshot)).Volume;

        var fromVolume = Caps.Create(Caps.UniqueName(), requiredBytes: 4 << 20);
        fromVolume.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = source } };
        var copy = (await Controller.CreateVolumeAsync(fromVolume)).Volume;
        Assert.Multiple(() =>
        {
            Assert.That(clone.CapacityBytes, Is.EqualTo(3 << 20), "no capacity range: the source's size");
            Assert.That(clone.ContentSource.Snapshot.SnapshotId, Is.EqualTo(snapshot));
            Assert.That(retry, Is.EqualTo(clone));
            Assert.That(copy.CapacityBytes, Is.EqualTo(4 << 20), "a clone may be larger than its source");
            Assert.That(copy.ContentSource.Volume.VolumeId, Is.EqualTo(source));
        });
    }

    [Test]
    public async Task CreateVolume_from_a_source_error_codes()
    {
        var source = await NewVolumeAsync(3 << 20);
        CreateVolumeRequest From(VolumeContentSource contentSource, long required = 0, long limit = 0)
        {
            var request = Caps.Create(Caps.UniqueName(), required, limit);
            request.VolumeContentSource = contentSource;
            return request;
        }

        Task<StatusCode> Code(CreateVolumeRequest request) => CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(request).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(await Code(From(new() { Snapshot = new() { SnapshotId = "missing" } })), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Code(From(new() { Volume = new() { VolumeId = "missing" } })), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Code(From(new() { Snapshot = new() })), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Code(From(new() { Volume = new() { VolumeId = source } }, limit: 1 << 20)), Is.EqualTo(StatusCode.OutOfRange), "source larger than the limit");
        });
    }

    [Test]
    public async Task Snapshots_need_a_backend_with_them()
    {
        await using var harness = await CsiHarness.StartAsync(StorageBackend.Memory);
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-m", requiredBytes: 1 << 20));
        var snapshot = await CsiHarness.FailureOf(() => harness.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = "pvc-m", Name = "s" }).ResponseAsync);
        var clone = Caps.Create("pvc-clone");
        clone.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = "pvc-m" } };
        var cloneCode = await CsiHarness.CodeOf(() => harness.Controller.CreateVolumeAsync(clone).ResponseAsync);
        var capacity = await harness.Controller.GetCapacityAsync(new GetCapacityRequest());
        Assert.Multiple(() =>
        {
            Assert.That(snapshot.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(cloneCode, Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(capacity.AvailableCapacity, Is.Zero, "no pools");
        });
    }

    /// <summary>
    /// The whole controller path with data, through a user-space NVMe/TCP host using the node's host NQN:
    /// a published volume is writable, a snapshot keeps the data of its moment, a clone of it reads that data
    /// back, an unpublished node is refused, and a volume with a connected host is not deleted.
    /// </summary>
    [Test]
    public async Task A_clone_of_a_snapshot_reads_the_data_of_the_snapshot_over_NVMe_TCP()
    {
        var node = Caps.Node("worker-1");
        var target = _harness.StorageServer!.NvmeEndpoints[0];
        var host = new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = node, HostId = Guid.NewGuid() });
        var source = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(source, requiredBytes: 1 << 20));
        var published = await Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = source, NodeId = node, VolumeCapability = Caps.Block() });

        var before = Pattern(0xA5);
        var after = Pattern(0x5A);
        string snapshot = Caps.UniqueName("snapshot");
        await using (var controller = await host.ConnectAsync(target, published.PublishContext["nqn"]))
        {
            var ns = controller.Namespaces[0];
            Assert.That(ns.Uuid?.ToString("D"), Is.EqualTo(published.PublishContext["uuid"]));
            Assert.That((await controller.IoQueues[0].WriteAsync(ns, 0, before)).IsSuccess, Is.True);
            Assert.That((await controller.IoQueues[0].FlushAsync(ns)).IsSuccess, Is.True);
            await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = source, Name = snapshot });
            Assert.That((await controller.IoQueues[0].WriteAsync(ns, 0, after)).IsSuccess, Is.True);

            var inUse = await CsiHarness.FailureOf(() => Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source }).ResponseAsync);
            Assert.That(inUse.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        }

        var cloneName = Caps.UniqueName();
        var request = Caps.Create(cloneName);
        request.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = snapshot } };
        await Controller.CreateVolumeAsync(request);
        var clone = await Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = cloneName, NodeId = node, VolumeCapability = Caps.Block() });
        await using (var controller = await host.ConnectAsync(target, clone.PublishContext["nqn"]))
        {
            var ns = controller.Namespaces[0];
            var read = new byte[before.Length];
            Assert.That((await controller.IoQueues[0].ReadAsync(ns, 0, read)).IsSuccess, Is.True);
            Assert.That(read, Is.EqualTo(before));
        }

        // Unpublished, the node's host NQN is no longer admitted.
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = cloneName, NodeId = node });
        Assert.That(async () => await host.ConnectAsync(target, clone.PublishContext["nqn"]), Throws.Exception);
        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = cloneName });
    }

    private static byte[] Pattern(byte seed)
    {
        var data = new byte[8192];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(seed ^ (i * 31));
        }

        return data;
    }
}
