using Csi.V1;
using CsiNvme.Host;
using CsiNvme.Server;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;
using Row = CsiNvme.Csi.Tests.ErrorTables.ErrorRow<CsiNvme.Csi.Tests.ErrorTables.ControllerErrorTable>;

namespace CsiNvme.Csi.Tests.ErrorTables;

/// <summary>
/// The CSI spec's error table of every Controller RPC, row by row, against the driver on its Unix socket and a
/// real storage server: each RPC's own rows, the general rows of "Error Scheme" (missing or invalid fields),
/// the spec's "MUST reply 0 OK" cases, and what csi-sanity v5.3.1 checks. Rows this driver never meets, and
/// why: PERMISSION_DENIED and UNAUTHENTICATED (it takes no secrets), ABORTED for a pending operation (calls
/// for one volume, snapshot or node wait for each other instead), CreateVolume's RESOURCE_EXHAUSTED for a
/// topology (every node reaches every volume; a cluster answers it for too few usable storage nodes, see
/// <see cref="ClusterControllerErrorTable"/>), DeleteSnapshot's "part of a group" (no group snapshots) and
/// "in use" (clones do not depend on the snapshot), ControllerExpandVolume's "Volume in use" (ONLINE
/// expansion), and CreateSnapshot's "Not enough space" (a snapshot takes no space when it is taken).
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerErrorTable
{
    /// <summary>Small, so the "Max volumes attached" row needs few volumes; rows use nodes of their own.</summary>
    public const int MaxVolumesPerNode = 2;

    private CsiHarness _harness = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _harness = await CsiHarness.StartAsync(
        configureServer: server => server.Pools.Add(new PoolDefinition(Path.Combine(server.DataDirectory, "pool1.pool"), CsiHarness.PoolBytes)),
        configureDriver: driver => driver.MaxVolumesPerNode = MaxVolumesPerNode);

    [OneTimeTearDown]
    public async Task StopAsync() => await _harness.DisposeAsync();

    internal ControllerClient Controller => _harness.Controller;

    internal Grpc.Net.Client.GrpcChannel Channel => _harness.Channel;

    [TestCaseSource(nameof(Rows))]
    public Task Walk(Row row) => row.VerifyAsync(this);

    /// <summary>A new 1 MiB volume with the given capabilities (block single-node writer by default).</summary>
    internal async Task<string> VolumeAsync(params VolumeCapability[] capabilities)
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20, capabilities: capabilities));
        return name;
    }

    internal async Task<string> SnapshotAsync(string volume)
    {
        var name = Caps.UniqueName("snapshot");
        await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = volume, Name = name });
        return name;
    }

    /// <summary>A node id of its own for a row, as NodeGetInfo reports node ids: a host NQN.</summary>
    internal static string NewNode() => Caps.Node(Guid.NewGuid().ToString("N"));

    internal Task<ControllerPublishVolumeResponse> PublishAsync(string volume, string node, VolumeCapability? capability = null) =>
        Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = volume, NodeId = node, VolumeCapability = capability ?? Caps.Block() }).ResponseAsync;

    /// <summary>Connects a user-space NVMe/TCP host as <paramref name="node"/> to a published volume.</summary>
    internal async Task<IAsyncDisposable> ConnectAsync(string node, ControllerPublishVolumeResponse published)
    {
        var host = new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = node, HostId = Guid.NewGuid() });
        return await host.ConnectAsync(_harness.StorageServer!.NvmeEndpoints[0], published.PublishContext["nqn"]);
    }

    private static CreateVolumeRequest CreateRequest(long required = 0, long limit = 0, VolumeCapability? capability = null) =>
        Caps.Create(Caps.UniqueName(), required, limit, capability ?? Caps.Block());

    private static CreateVolumeRequest With(CreateVolumeRequest request, Action<CreateVolumeRequest> change)
    {
        change(request);
        return request;
    }

    private static IEnumerable<TestCaseData> Rows() =>
        CreateVolume().Concat(DeleteVolume()).Concat(ControllerPublishVolume()).Concat(ControllerUnpublishVolume())
            .Concat(ValidateVolumeCapabilities()).Concat(ListVolumes()).Concat(GetCapacity()).Concat(ControllerGetCapabilities())
            .Concat(CreateSnapshot()).Concat(DeleteSnapshot()).Concat(ListSnapshots()).Concat(ControllerExpandVolume())
            .Concat(ControllerGetVolume()).Concat(ControllerModifyVolume()).Concat(NotImplemented())
            .Select(row => row.ToTestCase());

    private static IEnumerable<Row> CreateVolume()
    {
        const string Rpc = "CreateVolume";
        yield return new(Rpc, Row.MissingField, "no name, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(new CreateVolumeRequest { VolumeCapabilities = { Caps.Block() } }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume capabilities, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(new CreateVolumeRequest { Name = Caps.UniqueName() }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "a capability without access mode", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(CreateRequest(capability: new VolumeCapability { Block = new() })).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "a capability without access type", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(CreateRequest(capability: new VolumeCapability { AccessMode = new() { Mode = Mode.SingleNodeWriter } })).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "fs_type btrfs", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(CreateRequest(capability: Caps.Mount("btrfs"))).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "ext4 written from several nodes", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(CreateRequest(capability: Caps.Mount("ext4", Mode.MultiNodeMultiWriter))).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a control character in the name", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(Caps.Create("pvc\u0007bell")).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "negative required_bytes", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(CreateRequest(required: -4096)).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "an unknown parameter", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.Parameters["compression"] = "lz4")).ResponseAsync);
        foreach (var replicas in new[] { "0", "4", "x" })
        {
            yield return new(Rpc, Row.InvalidField, $"replicas {replicas}", StatusCode.InvalidArgument,
                t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.Parameters["replicas"] = replicas)).ResponseAsync);
        }

        yield return new(Rpc, Row.InvalidField, "replicas 2 on a single storage server: no retry helps", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.Parameters["replicas"] = "2")).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a mutable parameter other than replicas", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.MutableParameters["iops"] = "1000")).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "mutable replicas 2 on a single storage server, over the class's 1", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.MutableParameters["replicas"] = "2")).ResponseAsync);
        yield return new(Rpc, "Source incompatible or not supported", "a content source naming neither snapshot nor volume", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new VolumeContentSource())).ResponseAsync);
        yield return new(Rpc, "Source incompatible or not supported", "a clone asked for in another pool than its source", StatusCode.InvalidArgument, async t =>
        {
            var source = Caps.UniqueName();
            await t.Controller.CreateVolumeAsync(With(Caps.Create(source, requiredBytes: 1 << 20), r => r.Parameters["pool"] = "pool0"));
            await t.Controller.CreateVolumeAsync(With(CreateRequest(), r =>
            {
                r.Parameters["pool"] = "pool1";
                r.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = source } };
            }));
        });
        yield return new(Rpc, "Source does not exist", "snapshot, csi-sanity", StatusCode.NotFound,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = Caps.UniqueName("snapshot") } })).ResponseAsync);
        yield return new(Rpc, "Source does not exist", "volume, csi-sanity", StatusCode.NotFound,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new() { Volume = new() { VolumeId = Caps.UniqueName() } })).ResponseAsync);
        yield return new(Rpc, "Source does not exist", "a snapshot id this driver never issues", StatusCode.NotFound,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = "Not An Id!" } })).ResponseAsync);
        yield return new(Rpc, "Volume already exists but is incompatible", "a larger capacity_range, csi-sanity", StatusCode.AlreadyExists, async t =>
        {
            var first = CreateRequest(required: 1 << 20);
            await t.Controller.CreateVolumeAsync(first);
            await t.Controller.CreateVolumeAsync(With(first.Clone(), r => r.CapacityRange.RequiredBytes = 2 << 20));
        });
        yield return new(Rpc, "Volume already exists but is incompatible", "other volume_capabilities", StatusCode.AlreadyExists, async t =>
        {
            var first = CreateRequest(capability: Caps.Block());
            await t.Controller.CreateVolumeAsync(first);
            await t.Controller.CreateVolumeAsync(With(first.Clone(), r => r.VolumeCapabilities[0] = Caps.Mount("xfs")));
        });
        yield return new(Rpc, "Volume already exists but is incompatible", "other parameters", StatusCode.AlreadyExists, async t =>
        {
            var first = CreateRequest();
            await t.Controller.CreateVolumeAsync(first);
            await t.Controller.CreateVolumeAsync(With(first.Clone(), r => r.Parameters["blockSize"] = "4096"));
        });
        yield return new(Rpc, "Volume already exists but is incompatible", "another volume_content_source", StatusCode.AlreadyExists, async t =>
        {
            var snapshot = await t.SnapshotAsync(await t.VolumeAsync());
            var first = CreateRequest();
            await t.Controller.CreateVolumeAsync(first);
            await t.Controller.CreateVolumeAsync(With(first.Clone(), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = snapshot } }));
        });
        yield return new(Rpc, "Unable to provision in accessible_topology", "never: every node reaches every volume", StatusCode.OK,
            t => t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.AccessibilityRequirements = new TopologyRequirement
            {
                Requisite = { new Topology { Segments = { ["topology.kubernetes.io/zone"] = "zone-9" } } },
            })).ResponseAsync);
        yield return new(Rpc, "Unsupported capacity_range", "above the 64 TiB maximum", StatusCode.OutOfRange,
            t => t.Controller.CreateVolumeAsync(CreateRequest(required: (64L << 40) + 4096)).ResponseAsync);
        yield return new(Rpc, "Unsupported capacity_range", "no multiple of 4 KiB within the range", StatusCode.OutOfRange,
            t => t.Controller.CreateVolumeAsync(CreateRequest(required: 5000, limit: 6000)).ResponseAsync);
        yield return new(Rpc, "Unsupported capacity_range", "a limit below the source snapshot's size", StatusCode.OutOfRange, async t =>
        {
            var snapshot = await t.SnapshotAsync(await t.VolumeAsync());
            await t.Controller.CreateVolumeAsync(With(CreateRequest(limit: 1 << 19), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = snapshot } }));
        });
        yield return new(Rpc, "A volume of that name already exists and is compatible", "the same request again", StatusCode.OK, async t =>
        {
            var request = CreateRequest(required: 1 << 20);
            var first = await t.Controller.CreateVolumeAsync(request);
            var again = await t.Controller.CreateVolumeAsync(request);
            Assert.That(again, Is.EqualTo(first));
        });
    }

    private static IEnumerable<Row> DeleteVolume()
    {
        const string Rpc = "DeleteVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.DeleteVolumeAsync(new DeleteVolumeRequest()).ResponseAsync);
        yield return new(Rpc, "Volume in use", "a host is connected to it", StatusCode.FailedPrecondition, async t =>
        {
            var volume = await t.VolumeAsync();
            var node = NewNode();
            await using var connected = await t.ConnectAsync(node, await t.PublishAsync(volume, node));
            await t.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume });
        });
        yield return new(Rpc, "Volume does not exist", "never created", StatusCode.OK,
            t => t.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = Caps.UniqueName() }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "an id this driver never issues, csi-sanity", StatusCode.OK,
            t => t.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "Not An Id!" }).ResponseAsync);
        yield return new(Rpc, "Volume with snapshots", "snapshots are independent and stay usable", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync();
            var snapshot = await t.SnapshotAsync(volume);
            await t.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume });
            await t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = snapshot } }));
        });
    }

    private static IEnumerable<Row> ControllerPublishVolume()
    {
        const string Rpc = "ControllerPublishVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest()).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no node id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = Caps.UniqueName() }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume capability, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = Caps.UniqueName(), NodeId = "fake-node-" + Guid.NewGuid() }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a capability without access mode", StatusCode.InvalidArgument, async t =>
            await t.PublishAsync(await t.VolumeAsync(), NewNode(), new VolumeCapability { Block = new() }));
        yield return new(Rpc, Row.InvalidField, "readonly without PUBLISH_READONLY", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = await t.VolumeAsync(), NodeId = NewNode(), VolumeCapability = Caps.Block(), Readonly = true,
            }));
        yield return new(Rpc, "Volume does not exist", "and the node id is no NQN either, csi-sanity", StatusCode.NotFound,
            t => t.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = Caps.UniqueName(), NodeId = "fake-node-" + Guid.NewGuid(), VolumeCapability = Caps.Mount(),
            }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "an id this driver never issues", StatusCode.NotFound,
            t => t.PublishAsync("Not An Id!", NewNode()));
        yield return new(Rpc, "Node does not exist", "the node id is no host NQN, csi-sanity", StatusCode.NotFound, async t =>
            await t.PublishAsync(await t.VolumeAsync(Caps.Mount()), "fake-node-" + Guid.NewGuid(), Caps.Mount()));
        yield return new(Rpc, "Node does not exist", "an NQN with month 13", StatusCode.NotFound, async t =>
            await t.PublishAsync(await t.VolumeAsync(), "nqn.2026-13.io.csinvme:node:x"));
        yield return new(Rpc, "Volume published but is incompatible", "never: a publication is the node's host NQN, the same for every capability of the volume", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync(Caps.Block(Mode.MultiNodeMultiWriter), Caps.Block(Mode.MultiNodeReaderOnly));
            var node = NewNode();
            var first = await t.PublishAsync(volume, node, Caps.Block(Mode.MultiNodeMultiWriter));
            var again = await t.PublishAsync(volume, node, Caps.Block(Mode.MultiNodeReaderOnly));
            Assert.That(again.PublishContext, Is.EquivalentTo(first.PublishContext));
        });
        yield return new(Rpc, "Volume published to another node", "a single-node access mode", StatusCode.FailedPrecondition, async t =>
        {
            var volume = await t.VolumeAsync();
            await t.PublishAsync(volume, NewNode());
            await t.PublishAsync(volume, NewNode());
        });
        yield return new(Rpc, "Max volumes attached", $"a node with {MaxVolumesPerNode} volumes published, csi-sanity with testnodevolumeattachlimit", StatusCode.ResourceExhausted, async t =>
        {
            var node = NewNode();
            for (var i = 0; i < MaxVolumesPerNode; i++)
            {
                await t.PublishAsync(await t.VolumeAsync(), node);
            }

            await t.PublishAsync(await t.VolumeAsync(), node);
        });
        yield return new(Rpc, "Max volumes attached", "a volume already published to the node at the limit, again", StatusCode.OK, async t =>
        {
            var node = NewNode();
            var volumes = new List<string>();
            for (var i = 0; i < MaxVolumesPerNode; i++)
            {
                volumes.Add(await t.VolumeAsync());
                await t.PublishAsync(volumes[^1], node);
            }

            await t.PublishAsync(volumes[0], node);
        });
        yield return new(Rpc, "A capability the volume was not created for", "as NodeStageVolume's Exceeds capabilities", StatusCode.FailedPrecondition, async t =>
            await t.PublishAsync(await t.VolumeAsync(Caps.Block()), NewNode(), Caps.Mount("xfs")));
        yield return new(Rpc, "Already published to the node", "the same request again", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync();
            var node = NewNode();
            var first = await t.PublishAsync(volume, node);
            var again = await t.PublishAsync(volume, node);
            Assert.That(again.PublishContext, Is.EquivalentTo(first.PublishContext));
        });
    }

    private static IEnumerable<Row> ControllerUnpublishVolume()
    {
        const string Rpc = "ControllerUnpublishVolume";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { NodeId = NewNode() }).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "assumed unpublished", StatusCode.OK,
            t => t.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = Caps.UniqueName(), NodeId = NewNode() }).ResponseAsync);
        yield return new(Rpc, "Node does not exist", "the node id is no host NQN: assumed unpublished", StatusCode.OK, async t =>
            await t.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = await t.VolumeAsync(), NodeId = "fake-node" }));
        yield return new(Rpc, "Volume not published to the node", "unpublishing succeeds", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync();
            await t.PublishAsync(volume, NewNode());
            await t.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume, NodeId = NewNode() });
        });
    }

    private static IEnumerable<Row> ValidateVolumeCapabilities()
    {
        const string Rpc = "ValidateVolumeCapabilities";
        yield return new(Rpc, Row.MissingField, "no volume id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeCapabilities = { Caps.Block() } }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no volume capabilities, csi-sanity", StatusCode.InvalidArgument, async t =>
            await t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = await t.VolumeAsync() }));
        yield return new(Rpc, "Volume does not exist", "csi-sanity", StatusCode.NotFound,
            t => t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = Caps.UniqueName(), VolumeCapabilities = { Caps.Block() } }).ResponseAsync);
        yield return new(Rpc, "Capability not supported", "answered with a message, not an error", StatusCode.OK, async t =>
        {
            var response = await t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
            {
                VolumeId = await t.VolumeAsync(), VolumeCapabilities = { Caps.Mount("ext4", Mode.MultiNodeMultiWriter) },
            });
            Assert.That(response.Confirmed, Is.Null);
            Assert.That(response.Message, Is.Not.Empty);
        });
        yield return new(Rpc, "Capability not supported", "a mutable parameter other than replicas: a message, not an error", StatusCode.OK, async t =>
        {
            var response = await t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
            {
                VolumeId = await t.VolumeAsync(), VolumeCapabilities = { Caps.Block() }, MutableParameters = { ["iops"] = "1000" },
            });
            Assert.That(response.Confirmed, Is.Null);
            Assert.That(response.Message, Does.Contain("iops"));
        });
        yield return new(Rpc, "Capabilities confirmed", "with the mutable parameter replicas, echoed back", StatusCode.OK, async t =>
        {
            var response = await t.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
            {
                VolumeId = await t.VolumeAsync(), VolumeCapabilities = { Caps.Block() }, MutableParameters = { ["replicas"] = "1" },
            });
            Assert.That(response.Message, Is.Empty);
            Assert.That(response.Confirmed.MutableParameters, Is.EquivalentTo(new Dictionary<string, string> { ["replicas"] = "1" }));
        });
    }

    private static IEnumerable<Row> ListVolumes()
    {
        const string Rpc = "ListVolumes";
        yield return new(Rpc, "Invalid starting_token", "csi-sanity", StatusCode.Aborted,
            t => t.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = "invalid-token" }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "negative max_entries", StatusCode.InvalidArgument,
            t => t.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = -1 }).ResponseAsync);
    }

    private static IEnumerable<Row> GetCapacity()
    {
        const string Rpc = "GetCapacity";
        yield return new(Rpc, Row.InvalidField, "an unknown parameter", StatusCode.InvalidArgument,
            t => t.Controller.GetCapacityAsync(new GetCapacityRequest { Parameters = { ["compression"] = "lz4" } }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a pool that does not exist", StatusCode.InvalidArgument,
            t => t.Controller.GetCapacityAsync(new GetCapacityRequest { Parameters = { ["pool"] = "pool9" } }).ResponseAsync);
        yield return new(Rpc, "No optional values, csi-sanity", "the free space of every pool", StatusCode.OK,
            t => t.Controller.GetCapacityAsync(new GetCapacityRequest()).ResponseAsync);
        yield return new(Rpc, "More replicas than storage nodes", "replicas 2 on a single storage server: 0", StatusCode.OK, async t =>
            Assert.That((await t.Controller.GetCapacityAsync(new GetCapacityRequest { Parameters = { ["replicas"] = "2" } })).AvailableCapacity, Is.Zero));
        yield return new(Rpc, Row.InvalidField, "replicas 4", StatusCode.InvalidArgument,
            t => t.Controller.GetCapacityAsync(new GetCapacityRequest { Parameters = { ["replicas"] = "4" } }).ResponseAsync);
    }

    private static IEnumerable<Row> ControllerGetCapabilities()
    {
        yield return new("ControllerGetCapabilities", "No table", "csi-sanity", StatusCode.OK,
            t => t.Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest()).ResponseAsync);
    }

    private static IEnumerable<Row> CreateSnapshot()
    {
        const string Rpc = "CreateSnapshot";
        yield return new(Rpc, Row.MissingField, "no source volume id", StatusCode.InvalidArgument,
            t => t.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = Caps.UniqueName("snapshot") }).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no name, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = "testId" }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "an unknown parameter", StatusCode.InvalidArgument, async t =>
            await t.Controller.CreateSnapshotAsync(new CreateSnapshotRequest
            {
                SourceVolumeId = await t.VolumeAsync(), Name = Caps.UniqueName("snapshot"), Parameters = { ["retention"] = "7d" },
            }));
        yield return new(Rpc, "Source volume does not exist", "as the other RPCs' Volume does not exist", StatusCode.NotFound,
            t => t.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = Caps.UniqueName(), Name = Caps.UniqueName("snapshot") }).ResponseAsync);
        yield return new(Rpc, "Snapshot already exists but is incompatible", "another source volume, csi-sanity", StatusCode.AlreadyExists, async t =>
        {
            var snapshot = await t.SnapshotAsync(await t.VolumeAsync());
            await t.Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = await t.VolumeAsync(), Name = snapshot });
        });
        yield return new(Rpc, "Operation pending for snapshot", "concurrent calls wait for each other instead of ABORTED", StatusCode.OK, async t =>
        {
            var request = new CreateSnapshotRequest { SourceVolumeId = await t.VolumeAsync(), Name = Caps.UniqueName("snapshot") };
            var snapshots = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => t.Controller.CreateSnapshotAsync(request).ResponseAsync));
            Assert.That(snapshots.Select(s => s.Snapshot).Distinct().Count(), Is.EqualTo(1));
        });
        yield return new(Rpc, "Snapshot already exists and is compatible", "the same request again", StatusCode.OK, async t =>
        {
            var request = new CreateSnapshotRequest { SourceVolumeId = await t.VolumeAsync(), Name = Caps.UniqueName("snapshot") };
            var first = await t.Controller.CreateSnapshotAsync(request);
            Assert.That(await t.Controller.CreateSnapshotAsync(request), Is.EqualTo(first));
        });
    }

    private static IEnumerable<Row> DeleteSnapshot()
    {
        const string Rpc = "DeleteSnapshot";
        yield return new(Rpc, Row.MissingField, "no snapshot id, csi-sanity", StatusCode.InvalidArgument,
            t => t.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest()).ResponseAsync);
        yield return new(Rpc, "Snapshot does not exist", "an id this driver never issues, csi-sanity", StatusCode.OK,
            t => t.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = "reallyfakesnapshotid" }).ResponseAsync);
        yield return new(Rpc, "Snapshot in use", "never: a clone keeps its data without the snapshot", StatusCode.OK, async t =>
        {
            var snapshot = await t.SnapshotAsync(await t.VolumeAsync());
            await t.Controller.CreateVolumeAsync(With(CreateRequest(), r => r.VolumeContentSource = new() { Snapshot = new() { SnapshotId = snapshot } }));
            await t.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot });
        });
    }

    private static IEnumerable<Row> ListSnapshots()
    {
        const string Rpc = "ListSnapshots";
        yield return new(Rpc, "Invalid starting_token", "csi-sanity", StatusCode.Aborted,
            t => t.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { StartingToken = "invalid-token" }).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "negative max_entries", StatusCode.InvalidArgument,
            t => t.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { MaxEntries = -1 }).ResponseAsync);
        yield return new(Rpc, "Snapshot id does not exist", "an empty list, csi-sanity", StatusCode.OK, async t =>
            Assert.That((await t.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = "none-exist-id" })).Entries, Is.Empty));
        yield return new(Rpc, "Source volume does not exist", "an empty list, csi-sanity", StatusCode.OK, async t =>
            Assert.That((await t.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = Caps.UniqueName() })).Entries, Is.Empty));
    }

    private static IEnumerable<Row> ControllerExpandVolume()
    {
        const string Rpc = "ControllerExpandVolume";
        ControllerExpandVolumeRequest Expand(string volume, long required, long limit = 0, VolumeCapability? capability = null) => new()
        {
            VolumeId = volume, CapacityRange = new CapacityRange { RequiredBytes = required, LimitBytes = limit }, VolumeCapability = capability,
        };
        yield return new(Rpc, Row.MissingField, "no volume id", StatusCode.InvalidArgument,
            t => t.Controller.ControllerExpandVolumeAsync(Expand("", 2 << 20)).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no capacity_range", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = await t.VolumeAsync() }));
        yield return new(Rpc, Row.InvalidField, "negative required_bytes", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerExpandVolumeAsync(Expand(await t.VolumeAsync(), -4096)));
        yield return new(Rpc, "Exceeds capabilities", "a filesystem capability for a block volume", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerExpandVolumeAsync(Expand(await t.VolumeAsync(Caps.Block()), 2 << 20, capability: Caps.Mount())));
        yield return new(Rpc, "Volume does not exist", "never created", StatusCode.NotFound,
            t => t.Controller.ControllerExpandVolumeAsync(Expand(Caps.UniqueName(), 2 << 20)).ResponseAsync);
        yield return new(Rpc, "Volume in use", "never: expansion is ONLINE, a published volume grows", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync();
            await t.PublishAsync(volume, NewNode());
            var response = await t.Controller.ControllerExpandVolumeAsync(Expand(volume, 2 << 20, capability: Caps.Block()));
            Assert.That(response.CapacityBytes, Is.EqualTo(2 << 20));
        });
        yield return new(Rpc, "Unsupported capacity_range", "above the 64 TiB maximum", StatusCode.OutOfRange, async t =>
            await t.Controller.ControllerExpandVolumeAsync(Expand(await t.VolumeAsync(), (64L << 40) + 4096)));
        yield return new(Rpc, "Unsupported capacity_range", "a limit below the current size: volumes do not shrink", StatusCode.OutOfRange, async t =>
            await t.Controller.ControllerExpandVolumeAsync(Expand(await t.VolumeAsync(), 0, limit: 4096)));
    }

    private static IEnumerable<Row> ControllerGetVolume()
    {
        const string Rpc = "ControllerGetVolume";
        yield return new(Rpc, Row.MissingField, "no volume id", StatusCode.InvalidArgument,
            t => t.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest()).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "never created", StatusCode.NotFound,
            t => t.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = Caps.UniqueName() }).ResponseAsync);
    }

    private static IEnumerable<Row> ControllerModifyVolume()
    {
        const string Rpc = "ControllerModifyVolume";
        static ControllerModifyVolumeRequest Modify(string volume, string key, string value) => new() { VolumeId = volume, MutableParameters = { [key] = value } };
        yield return new(Rpc, Row.MissingField, "no volume id", StatusCode.InvalidArgument,
            t => t.Controller.ControllerModifyVolumeAsync(Modify("", "replicas", "1")).ResponseAsync);
        yield return new(Rpc, Row.MissingField, "no mutable_parameters", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest { VolumeId = await t.VolumeAsync() }));
        yield return new(Rpc, "Parameters not supported", "a key other than replicas", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerModifyVolumeAsync(Modify(await t.VolumeAsync(), "iops", "1000")));
        yield return new(Rpc, "Parameters not supported", "replicas 4", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerModifyVolumeAsync(Modify(await t.VolumeAsync(), "replicas", "4")));
        yield return new(Rpc, "Parameters not supported", "replicas 2 on a single storage server", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerModifyVolumeAsync(Modify(await t.VolumeAsync(), "replicas", "2")));
        yield return new(Rpc, "Volume does not exist", "never created", StatusCode.NotFound,
            t => t.Controller.ControllerModifyVolumeAsync(Modify(Caps.UniqueName(), "replicas", "1")).ResponseAsync);
        yield return new(Rpc, "Volume does not exist", "an id this driver never issues", StatusCode.NotFound,
            t => t.Controller.ControllerModifyVolumeAsync(Modify("Not An Id!", "replicas", "1")).ResponseAsync);
        yield return new(Rpc, "Idempotent", "the replica count the volume has, twice", StatusCode.OK, async t =>
        {
            var volume = await t.VolumeAsync();
            await t.Controller.ControllerModifyVolumeAsync(Modify(volume, "replicas", "1"));
            await t.Controller.ControllerModifyVolumeAsync(Modify(volume, "replicas", "1"));
        });
    }

    private static IEnumerable<Row> NotImplemented()
    {
        yield return new("GroupControllerGetCapabilities", Row.NotImplemented, "no GroupController service", StatusCode.Unimplemented,
            t => new GroupController.GroupControllerClient(t.Channel).GroupControllerGetCapabilitiesAsync(new GroupControllerGetCapabilitiesRequest()).ResponseAsync);
        yield return new("CreateVolumeGroupSnapshot", Row.NotImplemented, "no GroupController service", StatusCode.Unimplemented,
            t => new GroupController.GroupControllerClient(t.Channel).CreateVolumeGroupSnapshotAsync(new CreateVolumeGroupSnapshotRequest { Name = "group" }).ResponseAsync);
        yield return new("GetMetadataAllocated", Row.NotImplemented, "no SnapshotMetadata service", StatusCode.Unimplemented, async t =>
        {
            using var call = new SnapshotMetadata.SnapshotMetadataClient(t.Channel).GetMetadataAllocated(new GetMetadataAllocatedRequest { SnapshotId = "s" });
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
    }
}
