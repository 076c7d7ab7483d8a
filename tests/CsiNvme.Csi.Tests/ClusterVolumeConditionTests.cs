using System.Net;
using Csi.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using Grpc.Core;
using NUnit.Framework;
using ControllerClient = Csi.V1.Controller.ControllerClient;
using Mgmt = CsiNvme.Api.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// A storage node stops under a three-replica volume that a host writes to: the controller reports the volume
/// abnormal and names the replica (down, then out of sync), GetCapacity and CreateVolume see two usable nodes, and
/// once the node is back and rebuilt the volume is normal again. Its own cluster, as it stops a node.
/// </summary>
[TestFixture]
[Category("Cluster")]
[CancelAfter(240_000)]
public sealed class ClusterVolumeConditionTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    [Test]
    public async Task A_stopped_node_makes_the_volume_abnormal_until_its_replica_is_rebuilt()
    {
        await using var cluster = await ClusterCsiHarness.StartAsync();
        var controller = cluster.Controller;
        var name = Caps.UniqueName();
        await controller.CreateVolumeAsync(ClusterControllerTests.Create(name, "3"));
        var host = Caps.Node("worker-1");
        var published = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = name,
            NodeId = host,
            VolumeCapability = Caps.Block(Mode.MultiNodeMultiWriter),
        });
        var volume = await cluster.Volumes().GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });

        // A replica that is neither the primary nor the node the driver talks to.
        var victim = volume.Replicas.First(r => !r.Primary && r.Node != ClusterCsiHarness.ControllerNode).Node;
        await using var writer = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host, HostId = Guid.NewGuid() })
            .ConnectAsync(IPEndPoint.Parse(published.PublishContext["targets"].Split(',')[0]), volume.SubsystemNqn);
        var ns = writer.FindNamespace(1)!;
        Assert.That((await ClusterControllerTests.RetryPathStatusAsync(async () => await writer.IoQueues[0].WriteAsync(ns, 0, new byte[4096]))).Status, Is.EqualTo(NvmeStatus.Success));

        await cluster.StopNodeAsync(victim);
        // In sync or already out of sync (the primary records a lost link at once when it had sent it unflushed
        // writes), but down.
        var down = await WaitForConditionAsync(controller, name, c => c.Abnormal && c.Message.Contains($"replica on {victim}: ", StringComparison.Ordinal) && c.Message.EndsWith("node down", StringComparison.Ordinal));
        TestContext.Out.WriteLine(down.Message);

        // A write while it is away puts it out of sync (the primary records that before it completes the write).
        Assert.That((await ClusterControllerTests.RetryPathStatusAsync(async () => await writer.IoQueues[0].WriteAsync(ns, 4096, new byte[4096]))).Status, Is.EqualTo(NvmeStatus.Success));
        var outOfSync = await WaitForConditionAsync(controller, name, c => c.Abnormal && c.Message.Contains($"replica on {victim}: out of sync", StringComparison.Ordinal));
        TestContext.Out.WriteLine(outOfSync.Message);
        Assert.That(outOfSync.Message, Does.Contain("still serving I/O from primary " + volume.Primary));
        var listed = (await controller.ListVolumesAsync(new ListVolumesRequest())).Entries.Single(e => e.Volume.VolumeId == name);
        Assert.That(listed.Status.VolumeCondition.Abnormal, Is.True, "ListVolumes reports the same condition");

        // Two usable nodes: nowhere for three copies.
        Assert.That(
            await ClusterCsiHarness.WaitAsync(async () => (await controller.GetCapacityAsync(ClusterControllerTests.Capacity(3))).AvailableCapacity == 0, Bound),
            Is.True,
            "GetCapacity for 3 replicas with a node down");
        Assert.That((await controller.GetCapacityAsync(ClusterControllerTests.Capacity(2))).AvailableCapacity, Is.GreaterThan(0));
        var exhausted = await CsiHarness.FailureOf(() => controller.CreateVolumeAsync(ClusterControllerTests.Create(Caps.UniqueName(), "3")).ResponseAsync);
        Assert.That(exhausted.StatusCode, Is.EqualTo(StatusCode.ResourceExhausted), exhausted.Status.Detail);
        TestContext.Out.WriteLine(exhausted.Status.Detail);
        await controller.CreateVolumeAsync(ClusterControllerTests.Create(Caps.UniqueName(), "2"));

        await cluster.StartNodeAsync(victim);
        var healed = await WaitForConditionAsync(controller, name, c => !c.Abnormal);
        TestContext.Out.WriteLine(healed.Message);
        var rebuilt = await cluster.Volumes().GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.That(rebuilt.Replicas.Select(r => r.State), Is.All.EqualTo("in-sync"));
    }

    private static async Task<VolumeCondition> WaitForConditionAsync(ControllerClient controller, string name, Func<VolumeCondition, bool> condition)
    {
        VolumeCondition last = new();
        var reached = await ClusterCsiHarness.WaitAsync(async () =>
        {
            last = (await controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name })).Status.VolumeCondition;
            return condition(last);
        }, Bound);
        Assert.That(reached, Is.True, $"volume condition still: abnormal={last.Abnormal} {last.Message}");
        return last;
    }
}
