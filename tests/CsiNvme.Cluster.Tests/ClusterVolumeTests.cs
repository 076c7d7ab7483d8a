using System.Net;
using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests;

/// <summary>Three storage servers on one etcd: a replicated volume's life through the management API of any node.</summary>
[Category("Cluster")]
public sealed class ClusterVolumeTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Test]
    public async Task A_three_replica_volume_is_written_through_its_primary_and_identical_everywhere()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-b").CreateVolumeAsync(new CreateVolumeRequest { Name = "vm-disk", SizeBytes = 64 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        Assert.That(volume.Replicas, Has.Count.EqualTo(3));
        Assert.That(volume.Replicas.Select(r => r.Node), Is.Unique);
        Assert.That(volume.Replicas.Count(r => r.Primary), Is.EqualTo(1));
        Assert.That(volume.Replicas.Select(r => r.State), Is.All.EqualTo("in-sync"));
        Assert.That(volume.ListenAddresses, Has.Count.EqualTo(3));

        var nodes = await cluster.NodeApi("node-c").ListNodesAsync(new ListNodesRequest());
        Assert.That(nodes.Nodes.Select(n => n.Name), Is.EqualTo(new[] { "node-a", "node-b", "node-c" }));
        Assert.That(nodes.Nodes.Select(n => n.State), Is.All.EqualTo("up"));
        Assert.That(nodes.Nodes.Sum(n => n.PrimaryCount), Is.EqualTo(1));

        // A host connects to the primary's path and writes.
        var primary = cluster.Node(volume.Primary);
        await using var controller = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, IoQueueCount = 2 })
            .ConnectAsync(primary.NvmeEndpoints[0], volume.SubsystemNqn);
        var ns = controller.FindNamespace(1)!;
        for (var i = 0; i < 64; i++)
        {
            var completion = await controller.IoQueues[i % 2].WriteAsync(ns, (ulong)(i * 2048), Pattern(i % 4 == 0 ? 128 * 1024 : 4096, i), forceUnitAccess: i % 8 == 0);
            Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That((await controller.IoQueues[0].FlushAsync(ns)).Status, Is.EqualTo(NvmeStatus.Success));

        // Another node's path is inaccessible: I/O there gets the ANA path status.
        var other = cluster.Node(volume.Replicas.First(r => !r.Primary).Node);
        await using var secondary = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id })
            .ConnectAsync(other.NvmeEndpoints[0], volume.SubsystemNqn);
        var refused = await secondary.IoQueues[0].WriteAsync(secondary.FindNamespace(1)!, 0, new byte[512]);
        Assert.That(refused.Status, Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));
        Assert.That(secondary.ControllerId, Is.Not.EqualTo(controller.ControllerId), "controller ids are unique across the nodes");

        var verify = await cluster.Volumes("node-a").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "vm-disk" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
        Assert.That(verify.Nodes, Has.Count.EqualTo(3));
        Assert.That(verify.RegionsCompared, Is.EqualTo(64));
    }
}
