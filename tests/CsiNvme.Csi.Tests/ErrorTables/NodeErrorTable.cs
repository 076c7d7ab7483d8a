using Csi.V1;
using CsiNvme.Csi.Node;
using CsiNvme.Csi.Tests.Node;
using Grpc.Core;
using NUnit.Framework;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;
using NodeClient = Csi.V1.Node.NodeClient;
using Row = CsiNvme.Csi.Tests.ErrorTables.ErrorRow<CsiNvme.Csi.Tests.ErrorTables.NodeErrorTable>;

namespace CsiNvme.Csi.Tests.ErrorTables;

/// <summary>
/// The CSI spec's error table of every Node RPC, row by row, against the node service on its Unix socket with
/// its platform rooted in a fake sysfs and /dev (<see cref="NodeHarness"/>): each RPC's own rows, the general
/// rows of "Error Scheme", the spec's "MUST reply 0 OK" cases, and what csi-sanity v5.3.1 checks. Volumes
/// "staged" here are records and fake sysfs entries, enough for every check made before a kernel action.
/// The rows that need a real block device or real mounts are walked in a Linux guest
/// (EndToEnd/NodeEndToEndTests, Node_error_table_rows_that_need_the_kernel): NodeStageVolume's "Exceeds
/// capabilities" (a volume holding another filesystem, a blank volume staged read-only) and NodePublishVolume's
/// "Volume published but is incompatible". Never met: NodeExpandVolume's "Volume in use" (ext4 and xfs grow
/// while mounted; FAILED_PRECONDITION is left for a device whose filesystem changed under the node),
/// PERMISSION_DENIED and UNAUTHENTICATED (no secrets), ABORTED (calls for one volume wait for each other).
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class NodeErrorTable
{
    internal const string SubsystemNqn = "nqn.2026-11.io.csinvme:volume:9f1c";
    internal const string Uuid = "7a1e2c3d4b5a69788796a5b4c3d2e1f0";
    internal const string HostNqn = "nqn.2026-11.io.csinvme:node:unit-node";

    private NodeHarness _node = null!;

    [SetUp]
    public async Task SetUp() => _node = await NodeHarness.StartAsync();

    [TearDown]
    public async Task TearDown() => await _node.DisposeAsync();

    internal NodeClient Node => _node.Node;

    internal FakeSysfs Sys => _node.Sys;

    [TestCaseSource(nameof(Rows))]
    public Task Walk(Row row) => row.VerifyAsync(this);

    /// <summary>A path under the harness' directory; <paramref name="create"/> makes it a directory.</summary>
    internal string PathOf(string name, bool create = false)
    {
        var path = Path.Combine(_node.Directory, name);
        if (create)
        {
            Directory.CreateDirectory(path);
        }

        return path;
    }

    /// <summary>Records <paramref name="volumeId"/> as staged at <paramref name="stagingPath"/>, as NodeStageVolume does first.</summary>
    internal void Staged(string volumeId, string stagingPath, bool block = true, string fsType = "ext4") => _node.State.Save(new StagedVolume
    {
        VolumeId = volumeId,
        StagingPath = stagingPath,
        SubsystemNqn = SubsystemNqn,
        Uuid = Uuid,
        Targets = ["127.0.0.1:4420"],
        IsBlock = block,
        FsType = block ? string.Empty : fsType,
    });

    /// <summary>The volume's namespace as the kernel shows it once connected: 1 MiB.</summary>
    internal void Attached() => Sys.AddNamespace("nvme0n1", Uuid, null, 259, 42, sectors: 2048);

    internal NodeStageVolumeRequest Stage(string volumeId, VolumeCapability? capability = null) => new()
    {
        VolumeId = volumeId,
        StagingTargetPath = PathOf("staging-" + volumeId),
        VolumeCapability = capability ?? Caps.Block(),
        PublishContext = { ["nqn"] = SubsystemNqn, ["targets"] = "127.0.0.1:4420", ["uuid"] = Uuid },
    };

    private static string NewVolume() => Caps.UniqueName();

    private static IEnumerable<TestCaseData> Rows() =>
        NodeStageVolume().Concat(NodeUnstageVolume()).Concat(NodePublishVolume()).Concat(NodeUnpublishVolume())
            .Concat(NodeGetVolumeStats()).Concat(NodeExpandVolume()).Concat(NodeGetCapabilities()).Concat(NodeGetInfo())
            .Select(row => row.ToTestCase());

    private static IEnumerable<Row> NodeStageVolume()
    {
        const string Rpc = "NodeStageVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest(t.Stage(NewVolume())) { VolumeId = "" }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no staging target path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest(t.Stage(NewVolume())) { StagingTargetPath = "" }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume capability, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest(t.Stage(NewVolume())) { VolumeCapability = null }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no access mode", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(t.Stage(NewVolume(), new VolumeCapability { Block = new() })).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "a publish_context without the subsystem NQN", StatusCode.InvalidArgument, t =>
        {
            var request = t.Stage(NewVolume());
            request.PublishContext.Remove("nqn");
            return t.Node.NodeStageVolumeAsync(request).ResponseAsync;
        });
        yield return new(Rpc, Row.InvalidField, "a relative staging target path", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest(t.Stage(NewVolume())) { StagingTargetPath = "staging/x" }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "fs_type btrfs", StatusCode.InvalidArgument,
            t => t.Node.NodeStageVolumeAsync(t.Stage(NewVolume(), Caps.Mount("btrfs"))).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a bind mount flag", StatusCode.InvalidArgument, t =>
        {
            var capability = Caps.Mount();
            capability.Mount.MountFlags.Add("bind");
            return t.Node.NodeStageVolumeAsync(t.Stage(NewVolume(), capability)).ResponseAsync;
        });
        yield return new(Rpc, "Volume does not exist", "connected, but no namespace with its uuid appears", StatusCode.NotFound, t =>
        {
            t.Sys.AddController("nvme0", SubsystemNqn, HostNqn, "traddr=127.0.0.1,trsvcid=4420");
            return t.Node.NodeStageVolumeAsync(t.Stage(NewVolume())).ResponseAsync;
        });
        yield return new(Rpc, "Volume published but is incompatible", "staged at another staging path", StatusCode.AlreadyExists, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("elsewhere"));
            return t.Node.NodeStageVolumeAsync(t.Stage(volume)).ResponseAsync;
        });
        yield return new(Rpc, "Volume published but is incompatible", "staged as block, asked for ext4", StatusCode.AlreadyExists, t =>
        {
            var volume = NewVolume();
            var request = t.Stage(volume, Caps.Mount("ext4"));
            t.Staged(volume, request.StagingTargetPath, block: true);
            return t.Node.NodeStageVolumeAsync(request).ResponseAsync;
        });
    }

    private static IEnumerable<Row> NodeUnstageVolume()
    {
        const string Rpc = "NodeUnstageVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { StagingTargetPath = t.PathOf("staging") }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no staging target path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = NewVolume() }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a relative staging target path", StatusCode.InvalidArgument,
            t => t.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = NewVolume(), StagingTargetPath = "staging/x" }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "not staged here: MUST reply OK, a node cannot tell it from a deleted volume", StatusCode.OK,
            t => t.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = NewVolume(), StagingTargetPath = t.PathOf("staging") }).ResponseAsync);
    }

    private static IEnumerable<Row> NodePublishVolume()
    {
        const string Rpc = "NodePublishVolume";
        NodePublishVolumeRequest Publish(NodeErrorTable t, string volume, VolumeCapability? capability = null) => new()
        {
            VolumeId = volume,
            StagingTargetPath = t.PathOf("staging-" + volume),
            TargetPath = t.PathOf("pods/" + volume),
            VolumeCapability = capability ?? Caps.Block(),
            PublishContext = { ["nqn"] = SubsystemNqn, ["targets"] = "127.0.0.1:4420", ["uuid"] = Uuid },
        };
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest()).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no target path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = NewVolume() }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume capability, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = NewVolume(), TargetPath = t.PathOf("target") }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a relative target path", StatusCode.InvalidArgument,
            t => t.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(Publish(t, NewVolume())) { TargetPath = "pods/x" }).ResponseAsync);
        yield return new(Rpc, "Staging target path not set", "while STAGE_UNSTAGE_VOLUME is offered", StatusCode.FailedPrecondition,
            t => t.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest(Publish(t, NewVolume())) { StagingTargetPath = "" }).ResponseAsync);
        yield return new(Rpc, "Staging target path not set", "the volume was never staged here", StatusCode.FailedPrecondition,
            t => t.Node.NodePublishVolumeAsync(Publish(t, NewVolume())).ResponseAsync);
        yield return new(Rpc, "Staging target path not set", "the volume is staged at another path", StatusCode.FailedPrecondition, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("elsewhere"));
            return t.Node.NodePublishVolumeAsync(Publish(t, volume)).ResponseAsync;
        });
        yield return new(Rpc, "Volume does not exist", "staged, but its namespace is gone", StatusCode.NotFound, t =>
        {
            var volume = NewVolume();
            var request = Publish(t, volume);
            t.Staged(volume, request.StagingTargetPath);
            return t.Node.NodePublishVolumeAsync(request).ResponseAsync;
        });
        yield return new(Rpc, "Exceeds capabilities", "staged as block, published as ext4", StatusCode.FailedPrecondition, t =>
        {
            var volume = NewVolume();
            var request = Publish(t, volume, Caps.Mount("ext4"));
            t.Staged(volume, request.StagingTargetPath, block: true);
            return t.Node.NodePublishVolumeAsync(request).ResponseAsync;
        });
    }

    private static IEnumerable<Row> NodeUnpublishVolume()
    {
        const string Rpc = "NodeUnpublishVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest()).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no target path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = NewVolume() }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "nothing at the target: idempotent", StatusCode.OK,
            t => t.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = NewVolume(), TargetPath = t.PathOf("pods/gone") }).ResponseAsync);
    }

    private static IEnumerable<Row> NodeGetVolumeStats()
    {
        const string Rpc = "NodeGetVolumeStats";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumePath = "some/path" }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = NewVolume() }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "an unknown volume on a relative path, csi-sanity: volume is not found", StatusCode.NotFound,
            t => t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = NewVolume(), VolumePath = "some/path" }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "a staged volume on a relative path, csi-sanity: does not exist on the specified path", StatusCode.NotFound, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            return t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume, VolumePath = "some/path" }).ResponseAsync;
        });
        yield return new(Rpc, "Volume does not exist", "an absolute path that does not exist", StatusCode.NotFound, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            return t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume, VolumePath = t.PathOf("nowhere") }).ResponseAsync;
        });
        yield return new(Rpc, "Volume does not exist", "not staged here and nothing mounted at the path", StatusCode.NotFound,
            t => t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = NewVolume(), VolumePath = t.PathOf("empty", create: true) }).ResponseAsync);
        yield return new(Rpc, "Volume condition", "a staged volume whose path lost its mount is abnormal, not an error", StatusCode.OK, async t =>
        {
            var volume = NewVolume();
            var staging = t.PathOf("staging-" + volume, create: true);
            t.Staged(volume, staging);
            var stats = await t.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume, VolumePath = staging });
            Assert.That(stats.VolumeCondition.Abnormal, Is.True);
            Assert.That(stats.VolumeCondition.Message, Does.Contain("no longer attached").And.Contain("no longer a mount"));
        });
    }

    private static IEnumerable<Row> NodeExpandVolume()
    {
        const string Rpc = "NodeExpandVolume";
        NodeExpandVolumeRequest Expand(string volume, string path, long required = 0, long limit = 0, VolumeCapability? capability = null) => new()
        {
            VolumeId = volume,
            VolumePath = path,
            CapacityRange = required == 0 && limit == 0 ? null : new CapacityRange { RequiredBytes = required, LimitBytes = limit },
            VolumeCapability = capability,
        };
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeExpandVolumeAsync(Expand("", t.PathOf("target", create: true), capability: Caps.Mount())).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume path, csi-sanity", StatusCode.InvalidArgument,
            t => t.Node.NodeExpandVolumeAsync(Expand(NewVolume(), "", capability: Caps.Mount())).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "required_bytes above limit_bytes", StatusCode.InvalidArgument,
            t => t.Node.NodeExpandVolumeAsync(Expand(NewVolume(), t.PathOf("target", create: true), required: 8192, limit: 4096)).ResponseAsync);
        yield return new(Rpc, "Exceeds capabilities", "fs_type btrfs", StatusCode.InvalidArgument,
            t => t.Node.NodeExpandVolumeAsync(Expand(NewVolume(), t.PathOf("target", create: true), capability: Caps.Mount("btrfs"))).ResponseAsync);
        yield return new(Rpc, "Exceeds capabilities", "staged as block, expanded as ext4", StatusCode.InvalidArgument, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            t.Attached();
            return t.Node.NodeExpandVolumeAsync(Expand(volume, t.PathOf("staging-" + volume), capability: Caps.Mount("ext4"))).ResponseAsync;
        });
        yield return new(Rpc, "Volume does not exist", "an unknown volume on a relative path, csi-sanity: volume is not found", StatusCode.NotFound,
            t => t.Node.NodeExpandVolumeAsync(Expand(NewVolume(), "some/path")).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "not staged here", StatusCode.NotFound,
            t => t.Node.NodeExpandVolumeAsync(Expand(NewVolume(), t.PathOf("target", create: true))).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "staged, but its namespace is gone", StatusCode.NotFound, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            return t.Node.NodeExpandVolumeAsync(Expand(volume, t.PathOf("staging-" + volume))).ResponseAsync;
        });
        yield return new(Rpc, "Unsupported capacity_range", "a limit below the volume's size: volumes do not shrink", StatusCode.OutOfRange, t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            t.Attached();
            return t.Node.NodeExpandVolumeAsync(Expand(volume, t.PathOf("staging-" + volume), limit: 4096)).ResponseAsync;
        });
        yield return new(Rpc, "Already as large as asked", "a block volume reports its size", StatusCode.OK, async t =>
        {
            var volume = NewVolume();
            t.Staged(volume, t.PathOf("staging-" + volume, create: true));
            t.Attached();
            var response = await t.Node.NodeExpandVolumeAsync(Expand(volume, t.PathOf("staging-" + volume), required: 1 << 20, capability: Caps.Block(Mode.SingleNodeMultiWriter)));
            Assert.That(response.CapacityBytes, Is.EqualTo(1 << 20));
        });
    }

    private static IEnumerable<Row> NodeGetCapabilities()
    {
        yield return new("NodeGetCapabilities", "No table", "csi-sanity", StatusCode.OK,
            t => t.Node.NodeGetCapabilitiesAsync(new NodeGetCapabilitiesRequest()).ResponseAsync);
    }

    private static IEnumerable<Row> NodeGetInfo()
    {
        yield return new("NodeGetInfo", "No table", "the host NQN as node id and the attach limit, csi-sanity", StatusCode.OK, async t =>
        {
            var info = await t.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
            Assert.That(info.NodeId, Is.EqualTo(HostNqn));
            Assert.That(info.MaxVolumesPerNode, Is.EqualTo(CsiDriverOptions.DefaultMaxVolumesPerNode));
        });
    }
}
