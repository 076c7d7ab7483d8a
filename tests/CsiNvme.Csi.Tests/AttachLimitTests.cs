using Csi.V1;
using Grpc.Core;
using NUnit.Framework;
using Mgmt = CsiNvme.Api.V1;
using NodeClient = Csi.V1.Node.NodeClient;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// The attach limit: one setting (--max-volumes-per-node) that the node reports in NodeGetInfo and the
/// controller enforces in ControllerPublishVolume, counting the volumes whose allowed hosts on the storage
/// server name the node.
/// </summary>
[TestFixture]
[CancelAfter(300_000)]
public sealed class AttachLimitTests
{
    private static async Task<string[]> VolumesAsync(CsiHarness harness, int count)
    {
        var names = Enumerable.Range(0, count).Select(_ => Caps.UniqueName()).ToArray();
        foreach (var name in names)
        {
            await harness.Controller.CreateVolumeAsync(Caps.Create(name, requiredBytes: 1 << 20));
        }

        return names;
    }

    private static Task<ControllerPublishVolumeResponse> PublishAsync(CsiHarness harness, string volume, string node) =>
        harness.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = volume, NodeId = node, VolumeCapability = Caps.Block() }).ResponseAsync;

    [Test]
    public async Task The_node_reports_the_limit_the_controller_enforces()
    {
        await using var harness = await CsiHarness.StartAsync(configureDriver: driver =>
        {
            driver.Mode = DriverMode.All;
            driver.MaxVolumesPerNode = 3;
        });
        var info = await new NodeClient(harness.Channel).NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.That(info.MaxVolumesPerNode, Is.EqualTo(3));

        var node = info.NodeId;
        var volumes = await VolumesAsync(harness, 5);
        for (var i = 0; i < 3; i++)
        {
            await PublishAsync(harness, volumes[i], node);
        }

        var refused = await CsiHarness.FailureOf(() => PublishAsync(harness, volumes[3], node));
        Assert.Multiple(async () =>
        {
            Assert.That(refused.StatusCode, Is.EqualTo(StatusCode.ResourceExhausted));
            Assert.That(refused.Status.Detail, Does.Contain(node).And.Contain("3"));
            Assert.That((await harness.Management.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = volumes[3] })).AllowedHosts, Is.Empty);
        });

        // A retry of a publication the node already has is no new attachment, at the limit too.
        await PublishAsync(harness, volumes[0], node);
        // The limit is per node.
        await PublishAsync(harness, volumes[3], Caps.Node("other"));

        await harness.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volumes[0], NodeId = node });
        await PublishAsync(harness, volumes[4], node);
        Assert.That(await CsiHarness.CodeOf(() => PublishAsync(harness, volumes[0], node)), Is.EqualTo(StatusCode.ResourceExhausted));
    }

    /// <summary>csi-sanity's "should fail when publishing more volumes than the node max attach limit".</summary>
    [Test]
    public async Task With_the_default_limit_the_257th_volume_published_to_a_node_is_refused()
    {
        await using var harness = await CsiHarness.StartAsync();
        var node = Caps.Node("full");
        var volumes = await VolumesAsync(harness, CsiDriverOptions.DefaultMaxVolumesPerNode + 1);
        foreach (var volume in volumes[..^1])
        {
            await PublishAsync(harness, volume, node);
        }

        Assert.That(await CsiHarness.CodeOf(() => PublishAsync(harness, volumes[^1], node)), Is.EqualTo(StatusCode.ResourceExhausted));
    }

    [Test]
    public async Task Concurrent_publishes_to_one_node_stop_at_the_limit()
    {
        await using var harness = await CsiHarness.StartAsync(configureDriver: driver => driver.MaxVolumesPerNode = 3);
        var node = Caps.Node("busy");
        var volumes = await VolumesAsync(harness, 8);
        var codes = await Task.WhenAll(volumes.Select(async volume =>
        {
            try
            {
                await PublishAsync(harness, volume, node);
                return StatusCode.OK;
            }
            catch (RpcException e)
            {
                return e.StatusCode;
            }
        }));
        var published = (await harness.Management.ListVolumesAsync(new Mgmt.ListVolumesRequest())).Volumes.Count(v => v.AllowedHosts.Contains(node));
        Assert.Multiple(() =>
        {
            Assert.That(codes.Count(c => c == StatusCode.OK), Is.EqualTo(3));
            Assert.That(codes.Count(c => c == StatusCode.ResourceExhausted), Is.EqualTo(5));
            Assert.That(published, Is.EqualTo(3));
        });
    }

    [Test]
    public async Task Zero_means_no_limit_on_either_side()
    {
        await using var harness = await CsiHarness.StartAsync(configureDriver: driver =>
        {
            driver.Mode = DriverMode.All;
            driver.MaxVolumesPerNode = 0;
        });
        var info = await new NodeClient(harness.Channel).NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.That(info.MaxVolumesPerNode, Is.Zero, "0: the CO decides");
        foreach (var volume in await VolumesAsync(harness, 4))
        {
            await PublishAsync(harness, volume, info.NodeId);
        }
    }
}
