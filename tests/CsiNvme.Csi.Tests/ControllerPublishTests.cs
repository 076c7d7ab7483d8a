using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>ControllerPublishVolume / ControllerUnpublishVolume: the volume's allowed hosts on the server are the published nodes.</summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerPublishTests
{
    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    private ControllerClient Controller => _harness.Controller;

    private static ControllerPublishVolumeRequest Publish(string volume, string node, VolumeCapability? capability = null) => new()
    {
        VolumeId = volume,
        NodeId = Caps.Node(node),
        VolumeCapability = capability ?? Caps.Block(),
    };

    private async Task<Mgmt.Volume> OnServer(string name) => await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });

    [Test]
    public async Task Publish_allows_the_node_host_and_returns_where_and_what_to_connect()
    {
        var name = Caps.UniqueName();
        var created = (await Controller.CreateVolumeAsync(Caps.Create(name))).Volume;
        var response = await Controller.ControllerPublishVolumeAsync(Publish(name, "a"));
        var again = await Controller.ControllerPublishVolumeAsync(Publish(name, "a"));
        var volume = await OnServer(name);
        Assert.Multiple(() =>
        {
            Assert.That(volume.AllowedHosts, Is.EqualTo(new[] { Caps.Node("a") }));
            Assert.That(response.PublishContext["nqn"], Is.EqualTo(created.VolumeContext["nqn"]));
            Assert.That(response.PublishContext["targets"], Is.EqualTo(string.Join(",", _harness.StorageServer!.NvmeEndpoints)));
            Assert.That(response.PublishContext["nguid"], Is.EqualTo(volume.Nguid));
            Assert.That(response.PublishContext["uuid"], Is.EqualTo(volume.Uuid));
            Assert.That(again.PublishContext, Is.EquivalentTo(response.PublishContext), "publishing twice to the same node is idempotent");
        });
    }

    [TestCase(Mode.SingleNodeWriter)]
    [TestCase(Mode.SingleNodeReaderOnly)]
    [TestCase(Mode.SingleNodeSingleWriter)]
    [TestCase(Mode.SingleNodeMultiWriter)]
    public async Task A_single_node_volume_published_to_one_node_is_refused_to_another_with_FAILED_PRECONDITION(Mode mode)
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name, capabilities: Caps.Mount("ext4", mode)));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", Caps.Mount("ext4", mode)));
        var failure = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(name, "b", Caps.Mount("ext4", mode))).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(failure.Status.Detail, Does.Contain(Caps.Node("a")));
            Assert.That((await OnServer(name)).AllowedHosts, Is.EqualTo(new[] { Caps.Node("a") }));
        });

        // Once the first node lets go, the second one may have it (a pod moved to another node).
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a") });
        await Controller.ControllerPublishVolumeAsync(Publish(name, "b", Caps.Mount("ext4", mode)));
        Assert.That((await OnServer(name)).AllowedHosts, Is.EqualTo(new[] { Caps.Node("b") }));
    }

    [Test]
    public async Task A_multi_writer_block_volume_is_published_to_two_nodes_at_once()
    {
        var name = Caps.UniqueName();
        var rwx = Caps.Block(Mode.MultiNodeMultiWriter);
        await Controller.CreateVolumeAsync(Caps.Create(name, capabilities: rwx));
        var a = await Controller.ControllerPublishVolumeAsync(Publish(name, "source", rwx));
        var b = await Controller.ControllerPublishVolumeAsync(Publish(name, "destination", rwx));
        var list = await Controller.ListVolumesAsync(new ListVolumesRequest());
        var entry = list.Entries.Single(e => e.Volume.VolumeId == name);
        Assert.Multiple(async () =>
        {
            Assert.That((await OnServer(name)).AllowedHosts, Is.EquivalentTo(new[] { Caps.Node("source"), Caps.Node("destination") }));
            Assert.That(b.PublishContext, Is.EquivalentTo(a.PublishContext));
            Assert.That(entry.Status.PublishedNodeIds, Is.EquivalentTo(new[] { Caps.Node("source"), Caps.Node("destination") }));
        });

        // The migration source lets go; the destination keeps it.
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("source") });
        Assert.That((await OnServer(name)).AllowedHosts, Is.EqualTo(new[] { Caps.Node("destination") }));
    }

    [Test]
    public async Task Multi_node_readers_of_a_filesystem_share_it()
    {
        var name = Caps.UniqueName();
        var readers = Caps.Mount("xfs", Mode.MultiNodeReaderOnly);
        await Controller.CreateVolumeAsync(Caps.Create(name, capabilities: readers));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", readers));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "b", readers));
        Assert.That((await OnServer(name)).AllowedHosts, Has.Count.EqualTo(2));
    }

    [Test]
    public async Task Publish_error_codes()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        Task<StatusCode> Code(ControllerPublishVolumeRequest request) => CsiHarness.CodeOf(() => Controller.ControllerPublishVolumeAsync(request).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(await Code(new() { NodeId = Caps.Node("a"), VolumeCapability = Caps.Block() }), Is.EqualTo(StatusCode.InvalidArgument), "no volume id");
            Assert.That(await Code(new() { VolumeId = name, VolumeCapability = Caps.Block() }), Is.EqualTo(StatusCode.InvalidArgument), "no node id");
            Assert.That(await Code(new() { VolumeId = name, NodeId = Caps.Node("a") }), Is.EqualTo(StatusCode.InvalidArgument), "no capability");
            Assert.That(await Code(Publish(name, "a", Caps.Mount("ext4", Mode.MultiNodeMultiWriter))), Is.EqualTo(StatusCode.InvalidArgument), "filesystem with writers on several nodes");
            Assert.That(await Code(new() { VolumeId = name, NodeId = "worker-1", VolumeCapability = Caps.Block() }), Is.EqualTo(StatusCode.NotFound), "node id is not an NQN: no such node");
            Assert.That(await Code(new() { VolumeId = "missing", NodeId = "worker-1", VolumeCapability = Caps.Block() }), Is.EqualTo(StatusCode.NotFound), "unknown volume and node");
            Assert.That(await Code(Publish("missing", "a")), Is.EqualTo(StatusCode.NotFound), "unknown volume");
            Assert.That(await Code(Publish("Not Valid!", "a")), Is.EqualTo(StatusCode.NotFound), "malformed volume id");
        });
        Assert.That((await OnServer(name)).AllowedHosts, Is.Empty);
    }

    [Test]
    public async Task Unpublish_removes_the_node_and_is_idempotent()
    {
        var name = Caps.UniqueName();
        var rwx = Caps.Block(Mode.MultiNodeMultiWriter);
        await Controller.CreateVolumeAsync(Caps.Create(name, capabilities: rwx));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", rwx));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "b", rwx));

        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a") });
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a") });
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("never") });
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name, NodeId = "not-an-nqn" });
        Assert.That((await OnServer(name)).AllowedHosts, Is.EqualTo(new[] { Caps.Node("b") }));

        // Without a node id: from every node.
        await Controller.ControllerPublishVolumeAsync(Publish(name, "c", rwx));
        await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = name });
        Assert.That((await OnServer(name)).AllowedHosts, Is.Empty);

        Assert.That(async () => await Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = "missing", NodeId = Caps.Node("a") }), Throws.Nothing);
        Assert.That(
            await CsiHarness.CodeOf(() => Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { NodeId = Caps.Node("a") }).ResponseAsync),
            Is.EqualTo(StatusCode.InvalidArgument));
    }

    [Test]
    public async Task Concurrent_publishes_of_a_single_node_volume_to_different_nodes_let_exactly_one_in()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        var attempts = Enumerable.Range(0, 8).Select(async i =>
        {
            try
            {
                await Controller.ControllerPublishVolumeAsync(Publish(name, $"n{i}"));
                return StatusCode.OK;
            }
            catch (RpcException e)
            {
                return e.StatusCode;
            }
        });
        var codes = await Task.WhenAll(attempts);
        Assert.Multiple(async () =>
        {
            Assert.That(codes.Count(c => c == StatusCode.OK), Is.EqualTo(1));
            Assert.That(codes.Count(c => c == StatusCode.FailedPrecondition), Is.EqualTo(7));
            Assert.That((await OnServer(name)).AllowedHosts, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public async Task Concurrent_creates_of_one_name_make_one_volume()
    {
        var name = Caps.UniqueName();
        var volumes = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20)).ResponseAsync));
        var all = await _harness.Management.ListVolumesAsync(new Mgmt.ListVolumesRequest());
        Assert.Multiple(() =>
        {
            Assert.That(volumes.Select(v => v.Volume).Distinct().Count(), Is.EqualTo(1));
            Assert.That(all.Volumes.Count(v => v.Name == name), Is.EqualTo(1));
        });
    }
}
