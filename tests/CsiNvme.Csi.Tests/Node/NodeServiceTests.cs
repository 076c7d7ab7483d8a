using Csi.V1;
using CsiNvme.Csi.Node;
using Grpc.Core;
using NUnit.Framework;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>The node service's answers over the real Unix socket: argument checks, idempotency, NodeGetInfo.</summary>
[TestFixture]
public sealed class NodeServiceTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:0b9d";
    private const string Uuid = "5d0c2f6a9b7e4c1d8e3f2a1b0c9d8e7f";

    private NodeHarness _node = null!;

    [SetUp]
    public async Task SetUp() => _node = await NodeHarness.StartAsync();

    [TearDown]
    public async Task TearDown() => await _node.DisposeAsync();

    private static VolumeCapability BlockCapability(Mode mode = Mode.SingleNodeWriter) =>
        new() { Block = new(), AccessMode = new() { Mode = mode } };

    private static VolumeCapability MountCapability(string fsType = "ext4", Mode mode = Mode.SingleNodeWriter, params string[] flags)
    {
        var capability = new VolumeCapability { Mount = new() { FsType = fsType }, AccessMode = new() { Mode = mode } };
        capability.Mount.MountFlags.AddRange(flags);
        return capability;
    }

    private NodeStageVolumeRequest Stage(VolumeCapability? capability = null, string volumeId = "vol-1") => new()
    {
        VolumeId = volumeId,
        StagingTargetPath = Path.Combine(_node.Directory, "staging", volumeId),
        VolumeCapability = capability ?? BlockCapability(),
        PublishContext = { ["nqn"] = Nqn, ["targets"] = "127.0.0.1:4420", ["uuid"] = Uuid },
    };

    private static async Task<RpcException> Fails(Func<Task> call) => await CsiHarness.FailureOf(call);

    [Test]
    public async Task Node_info_reports_the_host_nqn_as_node_id_and_flag_topology()
    {
        var info = await _node.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.Multiple(() =>
        {
            Assert.That(info.NodeId, Is.EqualTo("nqn.2026-11.io.csinvme:node:unit-node"));
            Assert.That(info.MaxVolumesPerNode, Is.EqualTo(256));
            Assert.That(info.AccessibleTopology.Segments, Is.EquivalentTo(new Dictionary<string, string>
            {
                [NodeOptions.TopologyNodeKey] = "unit-node",
                ["topology.kubernetes.io/zone"] = "zone-a",
            }));
        });
    }

    private static IEnumerable<TestCaseData> InvalidStageRequests()
    {
        TestCaseData Case(string name, Action<NodeStageVolumeRequest> change, string detail) =>
            new TestCaseData(change, detail).SetName("Stage refuses: " + name);

        yield return Case("no volume id", r => r.VolumeId = "", "volume_id");
        yield return Case("no staging path", r => r.StagingTargetPath = "", "staging_target_path");
        yield return Case("relative staging path", r => r.StagingTargetPath = "staging/x", "absolute");
        yield return Case("no capability", r => r.VolumeCapability = null, "volume_capability");
        yield return Case("no access mode", r => r.VolumeCapability.AccessMode = null, "access_mode");
        yield return Case("no access type", r => r.VolumeCapability.ClearAccessType(), "access type");
        yield return Case("unsupported fs", r => r.VolumeCapability = MountCapability("btrfs"), "btrfs");
        yield return Case("multi-node writer filesystem", r => r.VolumeCapability = MountCapability(mode: Mode.MultiNodeMultiWriter), "block volumes");
        yield return Case("bind mount flag", r => r.VolumeCapability = MountCapability(flags: "bind"), "bind");
        yield return Case("no nqn", r => r.PublishContext.Remove("nqn"), "nqn");
        yield return Case("no targets", r => r.PublishContext.Remove("targets"), "targets");
        yield return Case("bad targets", r => r.PublishContext["targets"] = "storage:4420", "storage:4420");
        yield return Case("no uuid or nguid", r => r.PublishContext.Remove("uuid"), "uuid");
        yield return Case("bad StorageClass parameter", r => r.VolumeContext["ctrlLossTmo"] = "soon", "ctrlLossTmo");
    }

    [TestCaseSource(nameof(InvalidStageRequests))]
    public async Task Stage_refuses_invalid_arguments(Action<NodeStageVolumeRequest> change, string detail)
    {
        var request = Stage();
        change(request);
        var e = await Fails(async () => await _node.Node.NodeStageVolumeAsync(request));
        Assert.That(e.StatusCode, Is.EqualTo(StatusCode.InvalidArgument), e.Status.Detail);
        Assert.That(e.Status.Detail, Does.Contain(detail));
    }

    [Test]
    public async Task Stage_reports_a_failed_kernel_connect_as_internal_with_the_errno_message()
    {
        // The fake /dev has no nvme-fabrics: open(2) fails as it does without the nvme-fabrics module.
        var e = await Fails(async () => await _node.Node.NodeStageVolumeAsync(Stage()));
        Assert.That(e.StatusCode, Is.EqualTo(StatusCode.Internal));
        Assert.That(e.Status.Detail, Does.Contain("nvme-fabrics").And.Contain("No such file or directory"));
    }

    [Test]
    public async Task Stage_skips_connected_targets_and_reports_a_missing_namespace_as_not_found()
    {
        _node.Sys.AddController("nvme0", Nqn, "nqn.2026-11.io.csinvme:node:unit-node", "traddr=127.0.0.1,trsvcid=4420");
        var e = await Fails(async () => await _node.Node.NodeStageVolumeAsync(Stage()));
        Assert.That(e.StatusCode, Is.EqualTo(StatusCode.NotFound), e.Status.Detail);
        Assert.That(e.Status.Detail, Does.Contain(Uuid));
    }

    [Test]
    public async Task Stage_of_a_block_volume_finds_the_namespace_creates_its_device_node_and_is_idempotent()
    {
        if (Environment.UserName != "root")
        {
            Assert.Ignore("mknod needs root");
        }

        _node.Sys.AddController("nvme0", Nqn, "nqn.2026-11.io.csinvme:node:unit-node", "traddr=127.0.0.1,trsvcid=4420");
        _node.Sys.AddNamespace("nvme0n1", Uuid, null, 259, 42, 2048);
        var request = Stage();

        await _node.Node.NodeStageVolumeAsync(request);
        await _node.Node.NodeStageVolumeAsync(request);

        var platform = new LinuxNodePlatform(_node.Sys.SysRoot, _node.Sys.DevRoot);
        var node = platform.Stat(Path.Combine(_node.Sys.DevRoot, "nvme0n1"));
        var staged = _node.State.Load("vol-1");
        Assert.Multiple(() =>
        {
            Assert.That(node.Kind, Is.EqualTo(NodeFileKind.BlockDevice));
            Assert.That(node.DeviceNumber, Is.EqualTo(NvmeBlockDevice.MakeDev(259, 42)));
            Assert.That(staged?.SubsystemNqn, Is.EqualTo(Nqn));
            Assert.That(staged?.CreatedDeviceNodes, Is.EqualTo(new[] { Path.Combine(_node.Sys.DevRoot, "nvme0n1") }));
        });

        // Same volume, other capability: incompatible with what is staged.
        var other = Stage(MountCapability());
        Assert.That((await Fails(async () => await _node.Node.NodeStageVolumeAsync(other))).StatusCode, Is.EqualTo(StatusCode.AlreadyExists));

        // Stats of a path that is not the volume's: the condition says so.
        var stats = await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "vol-1", VolumePath = _node.Directory });
        Assert.That(stats.VolumeCondition.Abnormal, Is.True);
        Assert.That(stats.VolumeCondition.Message, Does.Contain("no longer a mount"));

        _node.Sys.AddController("nvme0", Nqn, "nqn.2026-11.io.csinvme:node:unit-node", "traddr=127.0.0.1,trsvcid=4420", state: "connecting");
        stats = await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "vol-1", VolumePath = _node.Directory });
        Assert.That(stats.VolumeCondition.Message, Does.Contain("0 live paths for 1 replica; not live: 127.0.0.1:4420 (nvme0 connecting)"));
    }

    [Test]
    public async Task Publish_checks_arguments_and_needs_a_staged_volume()
    {
        var target = Path.Combine(_node.Directory, "pods", "p", "disk");
        var request = new NodePublishVolumeRequest
        {
            VolumeId = "vol-1",
            StagingTargetPath = Path.Combine(_node.Directory, "staging", "vol-1"),
            TargetPath = target,
            VolumeCapability = BlockCapability(),
        };
        Assert.Multiple(async () =>
        {
            Assert.That((await Fails(async () => await _node.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(request) { VolumeId = "" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(request) { TargetPath = "" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(request) { StagingTargetPath = "" }))).StatusCode,
                Is.EqualTo(StatusCode.FailedPrecondition), "the spec's 'Staging target path not set'");
            Assert.That((await Fails(async () => await _node.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(request) { VolumeCapability = null }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodePublishVolumeAsync(request))).StatusCode,
                Is.EqualTo(StatusCode.FailedPrecondition));
        });
    }

    [Test]
    public async Task Unpublish_and_unstage_check_arguments_and_succeed_for_what_is_already_gone()
    {
        var target = Path.Combine(_node.Directory, "pods", "p", "gone");
        Assert.Multiple(async () =>
        {
            Assert.That((await Fails(async () => await _node.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { TargetPath = target }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = "v" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = "v" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { StagingTargetPath = target }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
        });

        // A target left as an empty directory or file (driver crashed after unmounting) is removed.
        Directory.CreateDirectory(target);
        await _node.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = "v", TargetPath = target });
        await _node.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = "v", TargetPath = target });
        await _node.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = "never-staged", StagingTargetPath = target });
        Assert.That(Directory.Exists(target), Is.False);
    }

    [Test]
    public async Task Stats_and_expand_check_arguments_and_report_missing_paths_as_not_found()
    {
        var missing = Path.Combine(_node.Directory, "nowhere");
        Assert.Multiple(async () =>
        {
            Assert.That((await Fails(async () => await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumePath = missing }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "v" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "v", VolumePath = missing }))).StatusCode,
                Is.EqualTo(StatusCode.NotFound));
            Assert.That((await Fails(async () => await _node.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumePath = missing }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = "v" }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
                {
                    VolumeId = "v", VolumePath = _node.Directory, CapacityRange = new CapacityRange { RequiredBytes = 10, LimitBytes = 5 },
                }))).StatusCode,
                Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That((await Fails(async () => await _node.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = "v", VolumePath = missing }))).StatusCode,
                Is.EqualTo(StatusCode.NotFound));
            Assert.That((await Fails(async () => await _node.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = "v", VolumePath = _node.Directory }))).StatusCode,
                Is.EqualTo(StatusCode.NotFound));
        });
    }
}
