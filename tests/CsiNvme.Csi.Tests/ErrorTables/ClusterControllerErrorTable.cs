using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Row = CsiNvme.Csi.Tests.ErrorTables.ErrorRow<CsiNvme.Csi.Tests.ErrorTables.ClusterControllerErrorTable>;

namespace CsiNvme.Csi.Tests.ErrorTables;

/// <summary>
/// The rows of the Controller RPCs' error tables that a storage cluster changes, against the driver over a cluster of
/// two in-process nodes on a real etcd (node-a with pools "pool0" and "fast", node-b with "pool0" only): the StorageClass
/// parameter replicas asks for more copies than there are usable nodes (RESOURCE_EXHAUSTED, the spec's "Unable to
/// provision", whose recovery is to fix what prevents it and retry with backoff: a node comes back or is undrained),
/// or other copies than an existing volume of that name has (ALREADY_EXISTS); ControllerModifyVolume's replicas more than
/// the cluster has nodes (INVALID_ARGUMENT: no retry helps) or than its active nodes can hold now (RESOURCE_EXHAUSTED). The rows every install shares are in
/// <see cref="ControllerErrorTable"/>.
/// </summary>
[TestFixture]
[Category("Cluster")]
[CancelAfter(120_000)]
public sealed class ClusterControllerErrorTable
{
    private ClusterCsiHarness _cluster = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _cluster = await ClusterCsiHarness.StartAsync(
    [
        new ClusterCsiHarness.NodePools("node-a", ("pool0", 256L << 20), ("fast", 128L << 20)),
        new ClusterCsiHarness.NodePools("node-b", ("pool0", 256L << 20)),
    ]);

    [OneTimeTearDown]
    public async Task StopAsync() => await _cluster.DisposeAsync();

    internal ControllerClient Controller => _cluster.Controller;

    internal async Task DrainAsync(string node)
    {
        await _cluster.NodeApi().DrainNodeAsync(new Mgmt.NodeRequest { Name = node });
        // Placement sees the node's admin state through the cluster's watch, a moment after the call.
        Assert.That(await ClusterCsiHarness.WaitAsync(async () => (await Controller.GetCapacityAsync(ClusterControllerTests.Capacity(2))).AvailableCapacity == 0,
            TimeSpan.FromSeconds(60)), Is.True, $"{node} draining");
    }

    internal async Task UndrainAsync(string node)
    {
        await _cluster.NodeApi().UndrainNodeAsync(new Mgmt.NodeRequest { Name = node });
        Assert.That(await ClusterCsiHarness.WaitAsync(async () => (await Controller.GetCapacityAsync(ClusterControllerTests.Capacity(2))).AvailableCapacity > 0,
            TimeSpan.FromSeconds(60)), Is.True, $"{node} active again");
    }

    [TestCaseSource(nameof(Rows))]
    public Task Walk(Row row) => row.VerifyAsync(this);

    private static CreateVolumeRequest Create(string? replicas, string? pool = null) =>
        ClusterControllerTests.Create(Caps.UniqueName(), replicas, pool);

    private static IEnumerable<TestCaseData> Rows() =>
        CreateVolume().Concat(GetCapacity()).Concat(ControllerPublishVolume()).Concat(ControllerModifyVolume()).Select(row => row.ToTestCase());

    private static IEnumerable<Row> CreateVolume()
    {
        const string Rpc = "CreateVolume";
        yield return new(Rpc, "Unable to provision", "replicas 3 on a cluster of 2 nodes", StatusCode.ResourceExhausted,
            t => t.Controller.CreateVolumeAsync(Create("3")).ResponseAsync);
        yield return new(Rpc, "Unable to provision", "replicas 2 in a pool only one node has", StatusCode.ResourceExhausted,
            t => t.Controller.CreateVolumeAsync(Create("2", pool: "fast")).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "a pool no node has", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(Create("2", pool: "pool9")).ResponseAsync);
        yield return new(Rpc, Row.InvalidField, "replicas 4", StatusCode.InvalidArgument,
            t => t.Controller.CreateVolumeAsync(Create("4")).ResponseAsync);
        yield return new(Rpc, "Volume already exists but is incompatible", "other replicas", StatusCode.AlreadyExists, async t =>
        {
            var first = Create("2");
            await t.Controller.CreateVolumeAsync(first);
            var other = first.Clone();
            other.Parameters["replicas"] = "1";
            await t.Controller.CreateVolumeAsync(other);
        });
        yield return new(Rpc, "A volume of that name already exists and is compatible", "replicas 2 again", StatusCode.OK, async t =>
        {
            var request = Create("2");
            var first = await t.Controller.CreateVolumeAsync(request);
            Assert.That(await t.Controller.CreateVolumeAsync(request), Is.EqualTo(first));
        });
    }

    private static IEnumerable<Row> GetCapacity()
    {
        const string Rpc = "GetCapacity";
        yield return new(Rpc, "More replicas than usable nodes", "no capacity: 0", StatusCode.OK, async t =>
            Assert.That((await t.Controller.GetCapacityAsync(ClusterControllerTests.Capacity(3))).AvailableCapacity, Is.Zero));
        yield return new(Rpc, "A pool on fewer nodes than replicas", "no capacity: 0", StatusCode.OK, async t =>
            Assert.That((await t.Controller.GetCapacityAsync(ClusterControllerTests.Capacity(2, "fast"))).AvailableCapacity, Is.Zero));
        yield return new(Rpc, Row.InvalidField, "a pool no node has", StatusCode.InvalidArgument,
            t => t.Controller.GetCapacityAsync(ClusterControllerTests.Capacity(1, "pool9")).ResponseAsync);
    }

    private static IEnumerable<Row> ControllerPublishVolume()
    {
        yield return new("ControllerPublishVolume", "Already published to the node", "the same request again: every path both times", StatusCode.OK, async t =>
        {
            var volume = (await t.Controller.CreateVolumeAsync(Create("2"))).Volume.VolumeId;
            var request = new ControllerPublishVolumeRequest
            {
                VolumeId = volume,
                NodeId = ControllerErrorTable.NewNode(),
                VolumeCapability = Caps.Block(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter),
            };
            var first = await t.Controller.ControllerPublishVolumeAsync(request);
            var again = await t.Controller.ControllerPublishVolumeAsync(request);
            Assert.That(first.PublishContext["targets"].Split(','), Has.Length.EqualTo(2));
            Assert.That(again.PublishContext, Is.EquivalentTo(first.PublishContext));
        });
    }

    private static IEnumerable<Row> ControllerModifyVolume()
    {
        const string Rpc = "ControllerModifyVolume";
        static ControllerModifyVolumeRequest Modify(string volume, int replicas) =>
            new() { VolumeId = volume, MutableParameters = { ["replicas"] = replicas.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
        yield return new(Rpc, "Parameters not supported", "replicas 3 on a cluster of 2 nodes", StatusCode.InvalidArgument, async t =>
            await t.Controller.ControllerModifyVolumeAsync(Modify((await t.Controller.CreateVolumeAsync(Create("1"))).Volume.VolumeId, 3)));
        yield return new(Rpc, "Unable to provision", "replicas 2 while the other node drains: retried until it is back", StatusCode.ResourceExhausted, async t =>
        {
            var volume = (await t.Controller.CreateVolumeAsync(Create("1"))).Volume.VolumeId;
            await t.DrainAsync("node-b");
            try
            {
                await t.Controller.ControllerModifyVolumeAsync(Modify(volume, 2));
            }
            finally
            {
                await t.UndrainAsync("node-b");
            }
        });
    }
}
