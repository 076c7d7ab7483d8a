using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// What CreateVolume was asked for is recorded in the volume's labels on the server, and the controller keeps to
/// it: retries compare against it, ListVolumes/ControllerGetVolume report the same volume_context, publishing
/// checks capabilities against it.
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerRecordTests
{
    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    private ControllerClient Controller => _harness.Controller;

    private static ControllerPublishVolumeRequest Publish(string volume, string node, VolumeCapability capability) => new()
    {
        VolumeId = volume,
        NodeId = Caps.Node(node),
        VolumeCapability = capability,
    };

    private static CreateVolumeRequest WithParameters(CreateVolumeRequest request, params (string Key, string Value)[] parameters)
    {
        foreach (var (key, value) in parameters)
        {
            request.Parameters.Add(key, value);
        }

        return request;
    }

    private Task<StatusCode> CreateCode(CreateVolumeRequest request) => CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(request).ResponseAsync);

    [Test]
    public async Task The_request_is_recorded_in_the_volume_labels()
    {
        var name = Caps.UniqueName();
        var source = Caps.UniqueName("src");
        await Controller.CreateVolumeAsync(Caps.Create(source, requiredBytes: 1 << 20));
        var request = WithParameters(
            Caps.Create(name, requiredBytes: 1 << 20, capabilities: [Caps.Mount("", Mode.SingleNodeWriter), Caps.Mount("ext4", Mode.SingleNodeReaderOnly)]),
            ("ctrlLossTmo", "-1"), ("dataDigest", "True"), ("csi.storage.k8s.io/pvc/name", "ignored"));
        request.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = source } };
        await Controller.CreateVolumeAsync(request);

        var labels = (await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name })).Labels;
        Assert.That(labels, Is.EquivalentTo(new Dictionary<string, string>
        {
            // A mount without a filesystem type is ext4 on the node, so both are the same capability.
            ["csi.nvme.csinvme.io/capabilities"] = "mount/ext4:SingleNodeReaderOnly;mount/ext4:SingleNodeWriter",
            ["csi.nvme.csinvme.io/source"] = "volume:" + source,
            ["csi.nvme.csinvme.io/ctx.ctrlLossTmo"] = "-1",
            ["csi.nvme.csinvme.io/ctx.dataDigest"] = "true",
        }));
    }

    [Test]
    public async Task A_retry_returns_the_same_volume_and_volume_context_and_List_and_Get_report_that_context()
    {
        var name = Caps.UniqueName();
        var snapshotSource = Caps.UniqueName("src");
        await Controller.CreateVolumeAsync(Caps.Create(snapshotSource, requiredBytes: 1 << 20));
        var snapshot = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = snapshotSource, Name = Caps.UniqueName("snap") })).Snapshot;

        CreateVolumeRequest Request()
        {
            var request = WithParameters(Caps.Create(name, requiredBytes: 1 << 20, capabilities: Caps.Block(Mode.MultiNodeMultiWriter)), ("keepAliveTmo", "7"), ("nrIoQueues", "4"));
            request.VolumeContentSource = new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = snapshot.SnapshotId } };
            return request;
        }

        var first = (await Controller.CreateVolumeAsync(Request())).Volume;
        var retry = (await Controller.CreateVolumeAsync(Request())).Volume;
        var listed = (await Controller.ListVolumesAsync(new ListVolumesRequest())).Entries.Single(e => e.Volume.VolumeId == name).Volume;
        var got = (await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name })).Volume;

        Assert.Multiple(() =>
        {
            Assert.That(first.VolumeContext["keepAliveTmo"], Is.EqualTo("7"));
            Assert.That(first.VolumeContext["nrIoQueues"], Is.EqualTo("4"));
            Assert.That(first.ContentSource.Snapshot.SnapshotId, Is.EqualTo(snapshot.SnapshotId));
            Assert.That(retry, Is.EqualTo(first), "the retry is the same volume with the same volume_context and content source");
            Assert.That(listed.VolumeContext, Is.EquivalentTo(first.VolumeContext));
            Assert.That(got.VolumeContext, Is.EquivalentTo(first.VolumeContext));
            Assert.That(listed.ContentSource, Is.EqualTo(first.ContentSource));
            Assert.That(got.ContentSource, Is.EqualTo(first.ContentSource));
        });
    }

    [Test]
    public async Task The_same_name_with_a_different_source_capability_or_parameters_is_ALREADY_EXISTS()
    {
        var name = Caps.UniqueName();
        var sourceA = Caps.UniqueName("src");
        var sourceB = Caps.UniqueName("src");
        await Controller.CreateVolumeAsync(Caps.Create(sourceA, requiredBytes: 1 << 20));
        await Controller.CreateVolumeAsync(Caps.Create(sourceB, requiredBytes: 1 << 20));

        CreateVolumeRequest Request(string? source, VolumeCapability capability, params (string, string)[] parameters)
        {
            var request = WithParameters(Caps.Create(name, requiredBytes: 1 << 20, capabilities: capability), parameters);
            if (source is not null)
            {
                request.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = source } };
            }

            return request;
        }

        var block = Caps.Block(Mode.SingleNodeWriter);
        await Controller.CreateVolumeAsync(Request(sourceA, block, ("ctrlLossTmo", "30")));
        Assert.Multiple(async () =>
        {
            Assert.That(await CreateCode(Request(sourceB, block, ("ctrlLossTmo", "30"))), Is.EqualTo(StatusCode.AlreadyExists), "other source volume");
            Assert.That(await CreateCode(Request(null, block, ("ctrlLossTmo", "30"))), Is.EqualTo(StatusCode.AlreadyExists), "no source");
            Assert.That(await CreateCode(Request(sourceA, Caps.Mount("ext4"), ("ctrlLossTmo", "30"))), Is.EqualTo(StatusCode.AlreadyExists), "mount instead of block");
            Assert.That(await CreateCode(Request(sourceA, Caps.Block(Mode.MultiNodeMultiWriter), ("ctrlLossTmo", "30"))), Is.EqualTo(StatusCode.AlreadyExists), "other access mode");
            Assert.That(await CreateCode(Request(sourceA, block, ("ctrlLossTmo", "31"))), Is.EqualTo(StatusCode.AlreadyExists), "other parameter value");
            Assert.That(await CreateCode(Request(sourceA, block)), Is.EqualTo(StatusCode.AlreadyExists), "parameter left out");
            Assert.That(await CreateCode(Request(sourceA, block, ("ctrlLossTmo", "30"), ("dataDigest", "true"))), Is.EqualTo(StatusCode.AlreadyExists), "parameter added");
        });

        // Spelling a value differently is the same parameter: the record holds the normalized form.
        var same = (await Controller.CreateVolumeAsync(Request(sourceA, block, ("ctrlLossTmo", "+30")))).Volume;
        Assert.That(same.VolumeContext["ctrlLossTmo"], Is.EqualTo("30"));

        var differentFs = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(differentFs, capabilities: Caps.Mount("ext4")));
        Assert.That(await CreateCode(Caps.Create(differentFs, capabilities: Caps.Mount("xfs"))), Is.EqualTo(StatusCode.AlreadyExists), "other filesystem");
        Assert.That((await Controller.CreateVolumeAsync(Caps.Create(differentFs, capabilities: Caps.Mount(""))).ResponseAsync).Volume.VolumeId, Is.EqualTo(differentFs), "no fs type is ext4");
    }

    [Test]
    public async Task Publish_refuses_a_capability_the_volume_was_not_created_with()
    {
        var blockVolume = Caps.UniqueName();
        var ext4Volume = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(blockVolume, capabilities: Caps.Block(Mode.SingleNodeWriter)));
        await Controller.CreateVolumeAsync(Caps.Create(ext4Volume, capabilities: Caps.Mount("ext4", Mode.SingleNodeWriter)));

        var mountOnBlock = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(blockVolume, "a", Caps.Mount("ext4"))).ResponseAsync);
        var xfsOnExt4 = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(ext4Volume, "a", Caps.Mount("xfs"))).ResponseAsync);
        var blockOnExt4 = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(ext4Volume, "a", Caps.Block())).ResponseAsync);
        var multiOnSingle = await CsiHarness.FailureOf(() =>
            Controller.ControllerPublishVolumeAsync(Publish(blockVolume, "a", Caps.Block(Mode.MultiNodeMultiWriter))).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(mountOnBlock.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(mountOnBlock.Status.Detail, Does.Contain("created as block"));
            Assert.That(xfsOnExt4.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(blockOnExt4.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(multiOnSingle.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(multiOnSingle.Status.Detail, Does.Contain("MultiNodeMultiWriter"));
            Assert.That((await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = blockVolume })).AllowedHosts, Is.Empty);
            Assert.That((await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = ext4Volume })).AllowedHosts, Is.Empty);
        });

        // The recorded capability itself is accepted; a mount without fs type means ext4.
        await Controller.ControllerPublishVolumeAsync(Publish(ext4Volume, "a", Caps.Mount("")));
        await Controller.ControllerPublishVolumeAsync(Publish(blockVolume, "a", Caps.Block()));
    }

    [Test]
    public async Task The_single_node_rule_follows_the_recorded_access_modes()
    {
        // Created for both a single-node writer and RWX block: the CO may publish it to two nodes as RWX...
        var both = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(both, capabilities: [Caps.Block(Mode.SingleNodeWriter), Caps.Block(Mode.MultiNodeMultiWriter)]));
        await Controller.ControllerPublishVolumeAsync(Publish(both, "a", Caps.Block(Mode.MultiNodeMultiWriter)));
        await Controller.ControllerPublishVolumeAsync(Publish(both, "b", Caps.Block(Mode.MultiNodeMultiWriter)));
        // ...but not to a third as a single-node writer while others have it.
        var single = await CsiHarness.CodeOf(() => Controller.ControllerPublishVolumeAsync(Publish(both, "c", Caps.Block(Mode.SingleNodeWriter))).ResponseAsync);
        Assert.That(single, Is.EqualTo(StatusCode.FailedPrecondition));

        // Created single-node only: a second node is refused whatever mode the publish names.
        var rwo = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(rwo, capabilities: [Caps.Block(Mode.SingleNodeWriter), Caps.Block(Mode.SingleNodeReaderOnly)]));
        await Controller.ControllerPublishVolumeAsync(Publish(rwo, "a", Caps.Block(Mode.SingleNodeWriter)));
        var failure = await CsiHarness.FailureOf(() => Controller.ControllerPublishVolumeAsync(Publish(rwo, "b", Caps.Block(Mode.SingleNodeReaderOnly))).ResponseAsync);
        Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
        Assert.That(failure.Status.Detail, Does.Contain(Caps.Node("a")));
    }

    [Test]
    public async Task A_volume_made_outside_the_driver_is_published_by_the_request_alone()
    {
        var name = Caps.UniqueName();
        await _harness.Management.CreateVolumeAsync(new Mgmt.CreateVolumeRequest { Name = name, SizeBytes = 1 << 20 });
        var rwx = Caps.Block(Mode.MultiNodeMultiWriter);
        await Controller.ControllerPublishVolumeAsync(Publish(name, "a", rwx));
        await Controller.ControllerPublishVolumeAsync(Publish(name, "b", rwx));
        var got = (await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name })).Volume;
        Assert.That(got.VolumeContext.Keys, Is.EquivalentTo(new[] { "nqn", "nguid", "uuid", "blockSize" }));
        Assert.That(got.ContentSource, Is.Null);
    }
}
