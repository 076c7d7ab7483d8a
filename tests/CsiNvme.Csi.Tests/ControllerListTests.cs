using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>ListVolumes pagination and published nodes, GetCapacity; each test has its own server so the lists are known.</summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class ControllerListTests
{
    [Test]
    public async Task ListVolumes_pages_through_every_volume_in_name_order()
    {
        await using var harness = await CsiHarness.StartAsync();
        var names = Enumerable.Range(0, 5).Select(i => $"pvc-{i}").ToArray();
        foreach (var name in names.Reverse())
        {
            await harness.Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20));
        }

        var seen = new List<string>();
        var pages = 0;
        var token = string.Empty;
        do
        {
            var page = await harness.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = 2, StartingToken = token });
            Assert.That(page.Entries, Has.Count.LessThanOrEqualTo(2));
            seen.AddRange(page.Entries.Select(e => e.Volume.VolumeId));
            token = page.NextToken;
            pages++;
        }
        while (token.Length > 0 && pages < 10);

        var unpaged = await harness.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.Multiple(() =>
        {
            Assert.That(seen, Is.EqualTo(names));
            Assert.That(pages, Is.EqualTo(3));
            Assert.That(unpaged.Entries.Select(e => e.Volume.VolumeId), Is.EqualTo(names));
            Assert.That(unpaged.NextToken, Is.Empty);
            Assert.That(unpaged.Entries.All(e => e.Volume.CapacityBytes == 1 << 20 && e.Volume.VolumeContext.ContainsKey("nqn")), Is.True);
            Assert.That(unpaged.Entries.All(e => e.Status.VolumeCondition is { Abnormal: false }), Is.True);
        });
    }

    [Test]
    public async Task ListVolumes_continues_after_the_last_volume_of_a_page_was_deleted()
    {
        await using var harness = await CsiHarness.StartAsync();
        foreach (var name in new[] { "pvc-a", "pvc-b", "pvc-c", "pvc-d" })
        {
            await harness.Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20));
        }

        var first = await harness.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = 2 });
        await harness.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-b" });
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-e", requiredBytes: 1 << 20));
        var rest = await harness.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = first.NextToken });
        Assert.Multiple(() =>
        {
            Assert.That(first.Entries.Select(e => e.Volume.VolumeId), Is.EqualTo(new[] { "pvc-a", "pvc-b" }));
            Assert.That(rest.Entries.Select(e => e.Volume.VolumeId), Is.EqualTo(new[] { "pvc-c", "pvc-d", "pvc-e" }));
            Assert.That(rest.NextToken, Is.Empty);
        });
    }

    [Test]
    public async Task ListVolumes_refuses_a_foreign_token_with_ABORTED_and_a_negative_size_with_INVALID_ARGUMENT()
    {
        await using var harness = await CsiHarness.StartAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(
                await CsiHarness.CodeOf(() => harness.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = "invalid-token" }).ResponseAsync),
                Is.EqualTo(StatusCode.Aborted));
            Assert.That(
                await CsiHarness.CodeOf(() => harness.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = "next:Bad Name" }).ResponseAsync),
                Is.EqualTo(StatusCode.Aborted));
            Assert.That(
                await CsiHarness.CodeOf(() => harness.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = -1 }).ResponseAsync),
                Is.EqualTo(StatusCode.InvalidArgument));
        });
    }

    [Test]
    public async Task ListVolumes_reports_the_nodes_each_volume_is_published_to()
    {
        await using var harness = await CsiHarness.StartAsync();
        var rwx = Caps.Block(Mode.MultiNodeMultiWriter);
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-shared", capabilities: rwx));
        await harness.Controller.CreateVolumeAsync(Caps.Create("pvc-idle"));
        foreach (var node in new[] { "a", "b" })
        {
            await harness.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = "pvc-shared", NodeId = Caps.Node(node), VolumeCapability = rwx });
        }

        var list = await harness.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.Multiple(() =>
        {
            Assert.That(list.Entries.Single(e => e.Volume.VolumeId == "pvc-shared").Status.PublishedNodeIds, Is.EquivalentTo(new[] { Caps.Node("a"), Caps.Node("b") }));
            Assert.That(list.Entries.Single(e => e.Volume.VolumeId == "pvc-idle").Status.PublishedNodeIds, Is.Empty);
        });
    }

    [Test]
    public async Task GetCapacity_reports_the_free_space_of_the_pools_for_any_topology()
    {
        await using var harness = await CsiHarness.StartAsync();
        var pools = (await harness.ServerManagement.ListPoolsAsync(new Mgmt.ListPoolsRequest())).Pools;
        var all = await harness.Controller.GetCapacityAsync(new GetCapacityRequest { VolumeCapabilities = { Caps.Block() } });
        var inPool = new GetCapacityRequest();
        inPool.Parameters.Add("pool", "pool0");
        var pool0 = await harness.Controller.GetCapacityAsync(inPool);
        var topology = new GetCapacityRequest { AccessibleTopology = new Topology { Segments = { ["topology.nvme.csinvme.io/node"] = "worker-1" } } };
        var anywhere = await harness.Controller.GetCapacityAsync(topology);
        var unsupported = await harness.Controller.GetCapacityAsync(new GetCapacityRequest { VolumeCapabilities = { Caps.Mount("ext4", Mode.MultiNodeMultiWriter) } });
        var unknownPool = new GetCapacityRequest();
        unknownPool.Parameters.Add("pool", "nope");
        Assert.Multiple(async () =>
        {
            Assert.That(pools, Has.Count.EqualTo(1));
            Assert.That(all.AvailableCapacity, Is.EqualTo((long)pools[0].FreeBytes));
            Assert.That(all.AvailableCapacity, Is.GreaterThan(0).And.LessThanOrEqualTo(CsiHarness.PoolBytes));
            Assert.That(all.MaximumVolumeSize, Is.EqualTo(64L << 40));
            Assert.That(all.MinimumVolumeSize, Is.EqualTo(4096));
            Assert.That(pool0.AvailableCapacity, Is.EqualTo(all.AvailableCapacity));
            Assert.That(anywhere.AvailableCapacity, Is.EqualTo(all.AvailableCapacity));
            Assert.That(unsupported.AvailableCapacity, Is.Zero);
            Assert.That(await CsiHarness.CodeOf(() => harness.Controller.GetCapacityAsync(unknownPool).ResponseAsync), Is.EqualTo(StatusCode.InvalidArgument));
        });
    }

    [Test]
    public async Task CreateVolume_places_the_volume_in_the_pool_parameter()
    {
        await using var harness = await CsiHarness.StartAsync(configureServer: server =>
            server.Pools.Add(new CsiNvme.Volumes.Backends.PoolDefinition(Path.Combine(server.DataDirectory, "pool1.pool"), CsiHarness.PoolBytes)));
        var request = Caps.Create("pvc-placed");
        request.Parameters.Add("pool", "pool1");
        await harness.Controller.CreateVolumeAsync(request);
        var unknown = Caps.Create("pvc-nowhere");
        unknown.Parameters.Add("pool", "nope");
        var volume = await harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = "pvc-placed" });
        Assert.Multiple(async () =>
        {
            Assert.That(volume.Pool, Is.EqualTo("pool1"));
            Assert.That(await CsiHarness.CodeOf(() => harness.Controller.CreateVolumeAsync(unknown).ResponseAsync), Is.EqualTo(StatusCode.InvalidArgument));
        });
    }
}
