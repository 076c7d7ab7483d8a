using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace CsiNvme.Csi.Tests;

/// <summary>CreateVolume, DeleteVolume, ValidateVolumeCapabilities, ControllerGetVolume, expansion: over the Unix socket, against a real storage server.</summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerVolumeTests
{
    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    private ControllerClient Controller => _harness.Controller;

    [Test]
    public async Task ControllerGetCapabilities_lists_what_the_controller_implements()
    {
        var response = await Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest());
        Assert.That(response.Capabilities.Select(c => c.Rpc.Type), Is.EquivalentTo(new[]
        {
            RpcType.CreateDeleteVolume, RpcType.PublishUnpublishVolume, RpcType.ListVolumes, RpcType.ListVolumesPublishedNodes,
            RpcType.GetCapacity, RpcType.CreateDeleteSnapshot, RpcType.ListSnapshots, RpcType.CloneVolume, RpcType.ExpandVolume,
            RpcType.GetVolume, RpcType.VolumeCondition, RpcType.SingleNodeMultiWriter, RpcType.ModifyVolume,
        }));
    }

    [Test]
    public async Task CreateVolume_creates_the_volume_on_the_server_with_its_context()
    {
        var name = Caps.UniqueName();
        var request = Caps.Create(name, requiredBytes: 10 << 20, capabilities: Caps.Mount("xfs"));
        request.Parameters.Add("ctrlLossTmo", "-1");
        request.Parameters.Add("headerDigest", "TRUE");
        request.Parameters.Add("blockSize", "4096");
        request.Parameters.Add("replicas", "01");
        request.Parameters.Add("csi.storage.k8s.io/pvc/name", "data");

        var volume = (await Controller.CreateVolumeAsync(request)).Volume;
        var onServer = await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(volume.VolumeId, Is.EqualTo(name));
            Assert.That(volume.CapacityBytes, Is.EqualTo(10 << 20));
            Assert.That(volume.AccessibleTopology, Is.Empty);
            Assert.That(onServer.SizeBytes, Is.EqualTo(10UL << 20));
            Assert.That(onServer.BlockSize, Is.EqualTo(4096));
            Assert.That(onServer.AllowedHosts, Is.Empty, "nobody may connect before ControllerPublishVolume");
            Assert.That(onServer.AllowAnyHost, Is.False);
            Assert.That(volume.VolumeContext, Is.EquivalentTo(new Dictionary<string, string>
            {
                ["nqn"] = onServer.SubsystemNqn,
                ["nguid"] = onServer.Nguid,
                ["uuid"] = onServer.Uuid,
                ["blockSize"] = "4096",
                ["ctrlLossTmo"] = "-1",
                ["headerDigest"] = "true",
                ["replicas"] = "1",
            }));
        });
    }

    [TestCase(0, 0, 1L << 30, TestName = "No range: 1 GiB")]
    [TestCase(10_000, 0, 12_288, TestName = "Required rounds up to 4 KiB")]
    [TestCase(4096, 4096, 4096, TestName = "Exact size")]
    [TestCase(0, (1 << 20) + 100, 1 << 20, TestName = "Limit only: the default held under the limit, rounded down")]
    [TestCase(0, 2L << 30, 1L << 30, TestName = "Limit above the default: the default")]
    [TestCase(5000, 12_288, 8192, TestName = "Required and limit: the smallest multiple of 4 KiB in range")]
    public async Task CreateVolume_sizes_follow_the_capacity_range(long required, long limit, long expected)
    {
        var volume = (await Controller.CreateVolumeAsync(Caps.Create(Caps.UniqueName(), required, limit))).Volume;
        Assert.That(volume.CapacityBytes, Is.EqualTo(expected));
    }

    [TestCase(5000, 5000, TestName = "No multiple of 4 KiB in range")]
    [TestCase(8192, 4096, TestName = "Required above limit")]
    [TestCase(0, 100, TestName = "Limit below 4 KiB")]
    [TestCase((64L << 40) + 1, 0, TestName = "Above the 64 TiB maximum")]
    public async Task CreateVolume_refuses_an_unsatisfiable_range_with_OUT_OF_RANGE(long required, long limit)
    {
        var code = await CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(Caps.Create(Caps.UniqueName(), required, limit)).ResponseAsync);
        Assert.That(code, Is.EqualTo(StatusCode.OutOfRange));
    }

    public static IEnumerable<TestCaseData> InvalidCreateRequests()
    {
        yield return new TestCaseData(new CreateVolumeRequest { VolumeCapabilities = { Caps.Block() } }).SetName("No name");
        yield return new TestCaseData(new CreateVolumeRequest { Name = "pvc-x" }).SetName("No capabilities");
        yield return new TestCaseData(new CreateVolumeRequest { Name = "pvc\u0001x", VolumeCapabilities = { Caps.Block() } }).SetName("Control character in name");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: new VolumeCapability { AccessMode = new() { Mode = Mode.SingleNodeWriter } }))
            .SetName("Capability without access type");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: new VolumeCapability { Block = new() })).SetName("Capability without access mode");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: Caps.Block(Mode.Unknown))).SetName("UNKNOWN access mode");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: Caps.Mount("btrfs"))).SetName("Unsupported filesystem");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: Caps.Mount("ext4", Mode.MultiNodeMultiWriter))).SetName("Filesystem with several writer nodes");
        yield return new TestCaseData(Caps.Create("pvc-x", capabilities: Caps.Mount("xfs", Mode.MultiNodeSingleWriter))).SetName("Filesystem with one writer and reader nodes");
        yield return new TestCaseData(Caps.Create("pvc-x", -1, 0)).SetName("Negative required bytes");
        yield return new TestCaseData(Caps.Create("pvc-x", 0, -1)).SetName("Negative limit bytes");
        yield return new TestCaseData(WithParameter("fsType", "ext4")).SetName("Unknown parameter");
        yield return new TestCaseData(WithParameter("ctrlLossTmo", "-2")).SetName("ctrlLossTmo below -1");
        yield return new TestCaseData(WithParameter("keepAliveTmo", "soon")).SetName("keepAliveTmo not a number");
        yield return new TestCaseData(WithParameter("dataDigest", "yes")).SetName("dataDigest not a boolean");
        yield return new TestCaseData(WithParameter("replicas", "0")).SetName("replicas below 1");
        yield return new TestCaseData(WithParameter("replicas", "4")).SetName("replicas above 3");
        yield return new TestCaseData(WithParameter("blockSize", "1024")).SetName("Unsupported block size");
        yield return new TestCaseData(new CreateVolumeRequest { Name = "pvc-x", VolumeCapabilities = { Caps.Block() }, MutableParameters = { ["iops"] = "5" } })
            .SetName("A mutable parameter other than replicas");
        yield return new TestCaseData(new CreateVolumeRequest { Name = "pvc-x", VolumeCapabilities = { Caps.Block() }, MutableParameters = { ["replicas"] = "0" } })
            .SetName("Mutable replicas 0");
        yield return new TestCaseData(new CreateVolumeRequest { Name = "pvc-x", VolumeCapabilities = { Caps.Block() }, VolumeContentSource = new VolumeContentSource() })
            .SetName("Empty content source");

        static CreateVolumeRequest WithParameter(string key, string value)
        {
            var request = Caps.Create("pvc-x");
            request.Parameters.Add(key, value);
            return request;
        }
    }

    [TestCaseSource(nameof(InvalidCreateRequests))]
    public async Task CreateVolume_refuses_invalid_requests_with_INVALID_ARGUMENT(CreateVolumeRequest request)
    {
        var failure = await CsiHarness.FailureOf(() => Controller.CreateVolumeAsync(request).ResponseAsync);
        Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), failure.Status.Detail);
        Assert.That(failure.Status.Detail, Is.Not.Empty);
    }

    [Test]
    public async Task CreateVolume_accepts_every_access_mode_for_block_and_the_safe_ones_for_filesystems()
    {
        foreach (var mode in Enum.GetValues<Mode>().Where(m => m != Mode.Unknown))
        {
            var volume = await Controller.CreateVolumeAsync(Caps.Create(Caps.UniqueName(), capabilities: Caps.Block(mode)));
            Assert.That(volume.Volume.VolumeId, Is.Not.Empty, mode.ToString());
        }

        foreach (var mode in new[] { Mode.SingleNodeWriter, Mode.SingleNodeReaderOnly, Mode.MultiNodeReaderOnly, Mode.SingleNodeSingleWriter, Mode.SingleNodeMultiWriter })
        {
            var volume = await Controller.CreateVolumeAsync(Caps.Create(Caps.UniqueName(), capabilities: [Caps.Mount("ext4", mode), Caps.Mount("", mode)]));
            Assert.That(volume.Volume.VolumeId, Is.Not.Empty, mode.ToString());
        }
    }

    [Test]
    public async Task CreateVolume_is_idempotent_by_name()
    {
        var name = Caps.UniqueName();
        var request = Caps.Create(name, requiredBytes: 1 << 20);
        request.Parameters.Add("reconnectDelay", "3");
        var first = (await Controller.CreateVolumeAsync(request)).Volume;
        var second = (await Controller.CreateVolumeAsync(request)).Volume;
        // A retry with a range the existing volume still satisfies is the same claim.
        var widenedRequest = Caps.Create(name, requiredBytes: 1, limitBytes: 2 << 20);
        widenedRequest.Parameters.Add("reconnectDelay", "3");
        var widened = (await Controller.CreateVolumeAsync(widenedRequest)).Volume;
        var volumes = await _harness.Management.ListVolumesAsync(new Mgmt.ListVolumesRequest());
        Assert.Multiple(() =>
        {
            Assert.That(second, Is.EqualTo(first));
            Assert.That(widened.VolumeId, Is.EqualTo(first.VolumeId));
            Assert.That(widened.CapacityBytes, Is.EqualTo(1 << 20));
            Assert.That(widened.VolumeContext, Is.EquivalentTo(first.VolumeContext));
            Assert.That(volumes.Volumes.Count(v => v.Name == name), Is.EqualTo(1));
        });
    }

    [Test]
    public async Task CreateVolume_with_the_name_of_an_incompatible_volume_is_ALREADY_EXISTS()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20));
        var bigger = await CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 2 << 20)).ResponseAsync);
        var smaller = await CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 4096, limitBytes: 8192)).ResponseAsync);
        var otherBlockSize = Caps.Create(name, requiredBytes: 1 << 20);
        otherBlockSize.Parameters.Add("blockSize", "4096");
        var blockSize = await CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(otherBlockSize).ResponseAsync);
        Assert.Multiple(() =>
        {
            Assert.That(bigger, Is.EqualTo(StatusCode.AlreadyExists));
            Assert.That(smaller, Is.EqualTo(StatusCode.AlreadyExists));
            Assert.That(blockSize, Is.EqualTo(StatusCode.AlreadyExists));
        });
    }

    [Test]
    public async Task CreateVolume_maps_names_the_server_refuses_to_stable_distinct_ids()
    {
        var upper = (await Controller.CreateVolumeAsync(Caps.Create("Data/PVC 1"))).Volume.VolumeId;
        var lower = (await Controller.CreateVolumeAsync(Caps.Create("data/pvc 1"))).Volume.VolumeId;
        var again = (await Controller.CreateVolumeAsync(Caps.Create("Data/PVC 1"))).Volume.VolumeId;
        var longName = (await Controller.CreateVolumeAsync(Caps.Create(new string('x', 300)))).Volume.VolumeId;
        Assert.Multiple(() =>
        {
            Assert.That(upper, Does.Match("^data-pvc-1-[0-9a-f]{16}$"));
            Assert.That(lower, Does.Match("^data-pvc-1-[0-9a-f]{16}$"));
            Assert.That(lower, Is.Not.EqualTo(upper));
            Assert.That(again, Is.EqualTo(upper));
            Assert.That(longName.Length, Is.EqualTo(128));
        });
    }

    [Test]
    public async Task DeleteVolume_removes_the_volume_and_is_idempotent()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = name });
        var lookup = await CsiHarness.CodeOf(() => _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name }).ResponseAsync);
        Assert.That(lookup, Is.EqualTo(StatusCode.NotFound));

        Assert.That(async () => await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = name }), Throws.Nothing);
        Assert.That(async () => await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "never-created" }), Throws.Nothing);
        Assert.That(async () => await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "Not A Valid Id!" }), Throws.Nothing);
        Assert.That(
            await CsiHarness.CodeOf(() => Controller.DeleteVolumeAsync(new DeleteVolumeRequest()).ResponseAsync),
            Is.EqualTo(StatusCode.InvalidArgument));
    }

    [Test]
    public async Task ValidateVolumeCapabilities_confirms_supported_capabilities_and_explains_the_others()
    {
        var name = Caps.UniqueName();
        var volume = (await Controller.CreateVolumeAsync(Caps.Create(name, capabilities: [Caps.Block(Mode.MultiNodeMultiWriter), Caps.Mount("xfs")]))).Volume;

        var supported = new ValidateVolumeCapabilitiesRequest { VolumeId = name, VolumeCapabilities = { Caps.Block(Mode.MultiNodeMultiWriter), Caps.Mount("xfs") } };
        supported.VolumeContext.Add(volume.VolumeContext);
        var confirmed = await Controller.ValidateVolumeCapabilitiesAsync(supported);

        var unsupported = await Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
        {
            VolumeId = name,
            VolumeCapabilities = { Caps.Mount("ext4", Mode.MultiNodeMultiWriter) },
        });
        var notCreatedFor = await Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
        {
            VolumeId = name,
            VolumeCapabilities = { Caps.Mount("ext4") },
        });
        var otherContext = new ValidateVolumeCapabilitiesRequest { VolumeId = name, VolumeCapabilities = { Caps.Block(Mode.MultiNodeMultiWriter) } };
        otherContext.VolumeContext.Add("nqn", "nqn.2026-11.io.csinvme:volume:00000000-0000-0000-0000-000000000000");
        var mismatch = await Controller.ValidateVolumeCapabilitiesAsync(otherContext);
        var badParameters = new ValidateVolumeCapabilitiesRequest { VolumeId = name, VolumeCapabilities = { Caps.Block(Mode.MultiNodeMultiWriter) } };
        badParameters.Parameters.Add("color", "blue");
        var parameters = await Controller.ValidateVolumeCapabilitiesAsync(badParameters);

        Assert.Multiple(() =>
        {
            Assert.That(confirmed.Confirmed, Is.Not.Null);
            Assert.That(confirmed.Confirmed.VolumeCapabilities, Is.EqualTo(supported.VolumeCapabilities));
            Assert.That(confirmed.Confirmed.VolumeContext, Is.EquivalentTo(volume.VolumeContext));
            Assert.That(unsupported.Confirmed, Is.Null);
            Assert.That(unsupported.Message, Does.Contain("block volume"));
            Assert.That(notCreatedFor.Confirmed, Is.Null, "created for block and xfs, not ext4");
            Assert.That(notCreatedFor.Message, Does.Contain("mount/ext4"));
            Assert.That(mismatch.Confirmed, Is.Null);
            Assert.That(parameters.Confirmed, Is.Null);
            Assert.That(parameters.Message, Does.Contain("color"));
        });
    }

    [Test]
    public async Task ValidateVolumeCapabilities_error_codes()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        Assert.Multiple(async () =>
        {
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeCapabilities = { Caps.Block() } }).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = name }).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = "missing", VolumeCapabilities = { Caps.Block() } }).ResponseAsync),
                Is.EqualTo(StatusCode.NotFound));
        });
    }

    [Test]
    public async Task ControllerGetVolume_reports_published_nodes_and_a_normal_condition()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name));
        await Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = name, NodeId = Caps.Node("a"), VolumeCapability = Caps.Block() });
        var response = await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name });
        Assert.Multiple(async () =>
        {
            Assert.That(response.Volume.VolumeId, Is.EqualTo(name));
            Assert.That(response.Volume.CapacityBytes, Is.EqualTo(1L << 30));
            Assert.That(response.Volume.VolumeContext["nqn"], Does.StartWith("nqn.2026-11.io.csinvme:volume:"));
            Assert.That(response.Status.PublishedNodeIds, Is.EqualTo(new[] { Caps.Node("a") }));
            Assert.That(response.Status.VolumeCondition.Abnormal, Is.False);
            Assert.That(response.Status.VolumeCondition.Message, Does.Contain(_harness.StorageServer!.NvmeEndpoints[0].ToString()));
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "missing" }).ResponseAsync),
                Is.EqualTo(StatusCode.NotFound));
            Assert.That(
                await CsiHarness.CodeOf(() => Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest()).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
        });
    }

    [Test]
    public async Task ControllerExpandVolume_grows_the_volume_and_asks_for_node_expansion_only_for_filesystems()
    {
        var name = Caps.UniqueName();
        // Created for both uses, so it may be expanded as either (another capability is INVALID_ARGUMENT).
        await Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20, capabilities: [Caps.Block(), Caps.Mount()]));
        var block = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = name,
            CapacityRange = new CapacityRange { RequiredBytes = (2 << 20) + 1 },
            VolumeCapability = Caps.Block(),
        });
        var mount = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = name,
            CapacityRange = new CapacityRange { RequiredBytes = 3 << 20 },
            VolumeCapability = Caps.Mount(),
        });
        // Asking again (a retry) or for less changes nothing: volumes do not shrink.
        var retry = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = name,
            CapacityRange = new CapacityRange { RequiredBytes = 1 << 20 },
        });
        var onServer = await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(block.CapacityBytes, Is.EqualTo((2 << 20) + 4096));
            Assert.That(block.NodeExpansionRequired, Is.False);
            Assert.That(mount.CapacityBytes, Is.EqualTo(3 << 20));
            Assert.That(mount.NodeExpansionRequired, Is.True);
            Assert.That(retry.CapacityBytes, Is.EqualTo(3 << 20));
            Assert.That(onServer.SizeBytes, Is.EqualTo(3UL << 20));
        });
    }

    [Test]
    public async Task ControllerExpandVolume_error_codes()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20));
        Task<StatusCode> Expand(ControllerExpandVolumeRequest request) => CsiHarness.CodeOf(() => Controller.ControllerExpandVolumeAsync(request).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(await Expand(new() { CapacityRange = new() { RequiredBytes = 2 << 20 } }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Expand(new() { VolumeId = name }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Expand(new() { VolumeId = name, CapacityRange = new() { RequiredBytes = -5 } }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Expand(new() { VolumeId = "missing", CapacityRange = new() { RequiredBytes = 2 << 20 } }), Is.EqualTo(StatusCode.NotFound));
            Assert.That(await Expand(new() { VolumeId = name, CapacityRange = new() { RequiredBytes = 5000, LimitBytes = 5000 } }), Is.EqualTo(StatusCode.OutOfRange));
            Assert.That(await Expand(new() { VolumeId = name, CapacityRange = new() { LimitBytes = 4096 } }), Is.EqualTo(StatusCode.OutOfRange));
            Assert.That(await Expand(new() { VolumeId = name, CapacityRange = new() { RequiredBytes = 65L << 40 } }), Is.EqualTo(StatusCode.OutOfRange));
        });
    }

    [Test]
    public async Task ControllerModifyVolume_takes_replicas_only_and_a_single_server_keeps_one()
    {
        var name = Caps.UniqueName();
        var request = Caps.Create(name, requiredBytes: 1 << 20);
        // A VolumeAttributesClass's replicas over the StorageClass's: the volume is created with it.
        request.Parameters["replicas"] = "2";
        request.MutableParameters["replicas"] = "1";
        var created = (await Controller.CreateVolumeAsync(request)).Volume;
        Assert.That(created.VolumeContext["replicas"], Is.EqualTo("1"));

        // The count it has: nothing to do.
        await Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest { VolumeId = name, MutableParameters = { ["replicas"] = "1" } });

        Task<StatusCode> Modify(ControllerModifyVolumeRequest modify) => CsiHarness.CodeOf(() => Controller.ControllerModifyVolumeAsync(modify).ResponseAsync);
        Assert.Multiple(async () =>
        {
            Assert.That(await Modify(new() { VolumeId = name, MutableParameters = { ["replicas"] = "2" } }), Is.EqualTo(StatusCode.InvalidArgument), "one server, one replica");
            Assert.That(await Modify(new() { VolumeId = name, MutableParameters = { ["iops"] = "100" } }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Modify(new() { VolumeId = name, MutableParameters = { ["replicas"] = "4" } }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Modify(new() { VolumeId = name }), Is.EqualTo(StatusCode.InvalidArgument), "mutable_parameters is required");
            Assert.That(await Modify(new() { MutableParameters = { ["replicas"] = "1" } }), Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(await Modify(new() { VolumeId = Caps.UniqueName(), MutableParameters = { ["replicas"] = "1" } }), Is.EqualTo(StatusCode.NotFound));
        });
        var onServer = await _harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.That(onServer.ReplicaCount, Is.LessThanOrEqualTo(1));
    }
}
