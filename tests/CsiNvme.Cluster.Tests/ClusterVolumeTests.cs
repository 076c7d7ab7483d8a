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

    [Test]
    public async Task A_volume_grows_from_one_replica_to_three_and_back_to_two_with_its_data()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "grows", SizeBytes = 32 << 20, Replicas = 1, AllowedHosts = { host.Nqn } });
        await using (var writer = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, Reconnect = false })
            .ConnectAsync(cluster.Node(volume.Primary).NvmeEndpoints[0], volume.SubsystemNqn))
        {
            for (var i = 0; i < 16; i++)
            {
                Assert.That((await writer.IoQueues[0].WriteAsync(writer.FindNamespace(1)!, (ulong)(i * 4096), Pattern(8192, 70 + i))).Status, Is.EqualTo(NvmeStatus.Success));
            }

            Assert.That((await writer.IoQueues[0].FlushAsync(writer.FindNamespace(1)!)).Status, Is.EqualTo(NvmeStatus.Success));
        }

        var raised = await cluster.Volumes("node-c").SetReplicaCountAsync(new SetReplicaCountRequest { Name = "grows", Replicas = 3 });
        Assert.That(raised.ReplicaCount, Is.EqualTo(3u));
        var three = await WaitForAsync(cluster, "grows", v => v.Replicas.Count == 3 && v.Replicas.All(r => r.State == "in-sync"));
        Assert.That(three.Replicas.Select(r => r.Node), Is.Unique);
        Assert.That(three.Primary, Is.EqualTo(volume.Primary), "a new replica does not move the primary");
        var verify = await cluster.Volumes("node-b").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "grows" });
        Assert.That((verify.Identical, verify.Nodes.Count), Is.EqualTo((true, 3)), verify.ToString());

        await cluster.Volumes("node-b").SetReplicaCountAsync(new SetReplicaCountRequest { Name = "grows", Replicas = 2 });
        var two = await WaitForAsync(cluster, "grows", v => v.Replicas.Count == 2);
        Assert.That(two.Primary, Is.EqualTo(volume.Primary), "the primary is never the one removed");
        verify = await cluster.Volumes("node-a").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "grows" });
        Assert.That((verify.Identical, verify.Nodes.Count), Is.EqualTo((true, 2)), verify.ToString());
        await using (var reader = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, Reconnect = false })
            .ConnectAsync(cluster.Node(two.Primary).NvmeEndpoints[0], volume.SubsystemNqn))
        {
            var read = new byte[8192];
            Assert.That((await reader.IoQueues[0].ReadAsync(reader.FindNamespace(1)!, 15 * 4096, read)).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(8192, 85)));
        }

        // Three replicas again need three active nodes: with the spare node draining, the change is refused.
        var spare = new[] { "node-a", "node-b", "node-c" }.Single(n => two.Replicas.All(r => r.Node != n));
        await cluster.NodeApi("node-a").DrainNodeAsync(new NodeRequest { Name = spare });
        var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
            await cluster.Volumes("node-a").SetReplicaCountAsync(new SetReplicaCountRequest { Name = "grows", Replicas = 3 }));
        Assert.That(refused!.StatusCode, Is.EqualTo(Grpc.Core.StatusCode.FailedPrecondition));
        Assert.That(refused.Status.Detail, Is.EqualTo("volume grows: 3 replicas need 3 active nodes; it has 2 on active nodes and 0 more nodes are up, active and without one"));
        Assert.That((await cluster.Volumes("node-a").GetVolumeAsync(new GetVolumeRequest { Name = "grows" })).ReplicaCount, Is.EqualTo(2u));

        // Undrained, the node whose copy was just removed takes a new one.
        await cluster.NodeApi("node-a").UndrainNodeAsync(new NodeRequest { Name = spare });
        await cluster.Volumes("node-a").SetReplicaCountAsync(new SetReplicaCountRequest { Name = "grows", Replicas = 3 });
        await WaitForAsync(cluster, "grows", v => v.Replicas.Count == 3 && v.Replicas.All(r => r.State == "in-sync"));
        verify = await cluster.Volumes("node-c").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "grows" });
        Assert.That((verify.Identical, verify.Nodes.Count), Is.EqualTo((true, 3)), verify.ToString());
    }

    private static async Task<Volume> WaitForAsync(InProcessCluster cluster, string name, Func<Volume, bool> condition)
    {
        Volume? last = null;
        var reached = await InProcessCluster.WaitAsync(async () =>
        {
            last = await cluster.Volumes("node-a").GetVolumeAsync(new GetVolumeRequest { Name = name });
            return condition(last);
        }, Bound);
        Assert.That(reached, Is.True, $"volume {name} never reached the expected state; last: {last}");
        return last!;
    }

    [Test]
    public async Task A_node_with_a_host_address_is_reported_at_it_to_hosts_and_replicated_to_at_its_listener()
    {
        // node-b's hosts reach it at 127.0.0.2 (as through NAT); the other nodes keep using its listener on 127.0.0.1.
        await using var cluster = await InProcessCluster.StartAsync(0);
        cluster.HostAddresses["node-b"] = [IPAddress.Parse("127.0.0.2")];
        await cluster.StartNodeAsync("node-a");
        await cluster.StartNodeAsync("node-b");
        var aPort = cluster.Node("node-a").NvmeEndpoints[0].Port;
        var bPort = cluster.Node("node-b").NvmeEndpoints[0].Port;
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "nat", SizeBytes = 16 << 20, Replicas = 2, AllowedHosts = { host.Nqn } });

        var nodes = (await cluster.NodeApi("node-a").ListNodesAsync(new ListNodesRequest())).Nodes.ToDictionary(n => n.Name);
        Assert.Multiple(() =>
        {
            Assert.That(volume.ListenAddresses, Is.EquivalentTo(new[] { $"127.0.0.1:{aPort}", $"127.0.0.2:{bPort}" }));
            Assert.That(volume.Replicas.Single(r => r.Node == "node-b").NvmeListenAddresses, Is.EqualTo(new[] { $"127.0.0.2:{bPort}" }));
            Assert.That(nodes["node-b"].NvmeListenAddresses, Is.EqualTo(new[] { $"127.0.0.2:{bPort}" }));
            Assert.That(nodes["node-a"].NvmeListenAddresses, Is.EqualTo(new[] { $"127.0.0.1:{aPort}" }));
        });

        // node-a's discovery log gives hosts node-b's path at the host address.
        var log = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id }).DiscoverAsync(new IPEndPoint(IPAddress.Loopback, aPort));
        var peers = log.Entries.Where(e => e.SubsystemNqn == volume.SubsystemNqn).Select(e => $"{e.TransportAddress.Trim()}:{e.ServiceId.Trim()}").ToList();
        Assert.That(peers, Does.Contain($"127.0.0.2:{bPort}"), string.Join(", ", peers));
        Assert.That(peers, Does.Not.Contain($"127.0.0.1:{bPort}"));

        // Writes through the primary reach node-b's copy over the listener the nodes use.
        var primary = cluster.Node(volume.Primary);
        await using (var controller = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id })
                         .ConnectAsync(primary.NvmeEndpoints[0], volume.SubsystemNqn))
        {
            var ns = controller.FindNamespace(1)!;
            for (var i = 0; i < 16; i++)
            {
                Assert.That((await controller.IoQueues[0].WriteAsync(ns, (ulong)(i * 8), Pattern(4096, i))).Status, Is.EqualTo(NvmeStatus.Success));
            }
        }

        var verify = await cluster.Volumes("node-b").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "nat" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
        Assert.That(verify.Nodes, Has.Count.EqualTo(2));
    }
}
