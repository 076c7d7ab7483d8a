using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests;

/// <summary>Failover, rebuild, drain and the coordinated operations of a replicated volume, with in-process nodes.</summary>
[Category("Cluster")]
public sealed class ClusterFailoverTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task<NvmeController> ConnectAsync(InProcessCluster cluster, string node, Volume volume, NvmeHostIdentity host) =>
        await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, Reconnect = false })
            .ConnectAsync(cluster.Node(node).NvmeEndpoints[0], volume.SubsystemNqn);

    private static async Task WriteAsync(NvmeController controller, int seed, int count, int firstBlock = 0)
    {
        var ns = controller.FindNamespace(1)!;
        for (var i = 0; i < count; i++)
        {
            // One write per 1 MiB region (2048 blocks of 512 bytes).
            var data = Pattern(8192, seed + i);
            var lba = (ulong)(firstBlock + i * 2048);
            var completion = await RetryPathErrorsAsync(() => controller.IoQueues[0].WriteAsync(ns, lba, data).AsTask());
            Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success), $"write {i}");
        }

        Assert.That((await RetryPathErrorsAsync(() => controller.IoQueues[0].FlushAsync(ns).AsTask())).Status, Is.EqualTo(NvmeStatus.Success));
    }

    /// <summary>
    /// Retries a command the path refused with a path status (its ANA state is still changing), as a multipath host
    /// requeues it: a node the record names primary turns its path optimized a moment later.
    /// </summary>
    private static async Task<NvmeCompletion> RetryPathErrorsAsync(Func<Task<NvmeCompletion>> command)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var completion = await command();
            if (completion.Status.Type != StatusCodeType.PathRelated || DateTime.UtcNow > deadline)
            {
                return completion;
            }

            await Task.Delay(50);
        }
    }

    private static async Task<Volume> WaitForAsync(InProcessCluster cluster, string asking, string name, Func<Volume, bool> condition)
    {
        Volume? last = null;
        var reached = await InProcessCluster.WaitAsync(async () =>
        {
            last = await cluster.Volumes(asking).GetVolumeAsync(new GetVolumeRequest { Name = name });
            return condition(last);
        }, Bound);
        Assert.That(reached, Is.True, $"volume {name} never reached the expected state; last: {last}");
        return last!;
    }

    [Test]
    public async Task The_primary_stops_an_in_sync_replica_takes_over_and_the_old_primary_is_rebuilt_when_it_returns()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "fo", SizeBytes = 32 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        var oldPrimary = volume.Primary;
        await using (var first = await ConnectAsync(cluster, oldPrimary, volume, host))
        {
            await WriteAsync(first, seed: 1, count: 32);
        }

        await cluster.StopNodeAsync(oldPrimary);
        var asking = cluster.Nodes.Keys.First(n => n != oldPrimary);
        var failedOver = await WaitForAsync(cluster, asking, "fo", v => v.Primary != oldPrimary && v.Primary.Length > 0 && v.Epoch == 2);
        Assert.That(failedOver.Replicas.Single(r => r.Node == oldPrimary).State, Is.EqualTo("out-of-sync"));

        await using (var second = await ConnectAsync(cluster, failedOver.Primary, failedOver, host))
        {
            var ns = second.FindNamespace(1)!;
            var read = new byte[8192];
            Assert.That((await RetryPathErrorsAsync(() => second.IoQueues[0].ReadAsync(ns, 4096, read).AsTask())).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(8192, 3)), "what the old primary completed is on the new one");
            await WriteAsync(second, seed: 100, count: 16, firstBlock: 32768);
        }

        await cluster.StartNodeAsync(oldPrimary);
        var healed = await WaitForAsync(cluster, asking, "fo", v => v.Replicas.All(r => r.State == "in-sync"));
        Assert.That(healed.Primary, Is.EqualTo(failedOver.Primary), "the returning node comes back as a replica");
        var verify = await cluster.Volumes(asking).VerifyVolumeAsync(new VerifyVolumeRequest { Name = "fo" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
    }

    [Test]
    public async Task A_replica_that_was_down_gets_a_delta_rebuild_of_what_was_written_meanwhile()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "delta", SizeBytes = 64 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        await using var writer = await ConnectAsync(cluster, volume.Primary, volume, host);
        await WriteAsync(writer, seed: 1, count: 64);
        var replica = volume.Replicas.First(r => !r.Primary).Node;

        await cluster.StopNodeAsync(replica);
        // Two 1 MiB regions written while it is away.
        await WriteAsync(writer, seed: 500, count: 1, firstBlock: 10 * 2048);
        await WriteAsync(writer, seed: 600, count: 1, firstBlock: 40 * 2048);
        var degraded = await WaitForAsync(cluster, volume.Primary, "delta", v => v.Replicas.Single(r => r.Node == replica).State == "out-of-sync");
        Assert.That(degraded.Replicas.Single(r => r.Node == replica).DirtyRegions, Is.EqualTo(2ul));

        await cluster.StartNodeAsync(replica);
        await WaitForAsync(cluster, volume.Primary, "delta", v => v.Replicas.All(r => r.State == "in-sync"));
        var verify = await cluster.Volumes("node-c").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "delta" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
    }

    [Test]
    public async Task Drain_hands_the_primary_over_and_undrain_takes_the_node_back()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "drained", SizeBytes = 16 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        var primary = volume.Primary;
        await using (var writer = await ConnectAsync(cluster, primary, volume, host))
        {
            await WriteAsync(writer, seed: 7, count: 8);
        }

        var drained = await cluster.NodeApi("node-a").DrainNodeAsync(new NodeRequest { Name = primary });
        Assert.That(drained.AdminState, Is.EqualTo("draining"));
        var moved = await WaitForAsync(cluster, "node-a", "drained", v => v.Primary != primary && v.Epoch == 2);
        Assert.That(moved.Replicas.All(r => r.State == "in-sync"), Is.True, "a clean handover leaves every replica in sync");
        var list = await cluster.NodeApi("node-b").ListNodesAsync(new ListNodesRequest());
        var node = list.Nodes.Single(n => n.Name == primary);
        Assert.That(node.PrimaryCount, Is.Zero);
        Assert.That(node.DrainStatus, Does.StartWith("drained"), "every node already holds a replica: nothing can move, the node is drained of primaries");

        await using (var writer = await ConnectAsync(cluster, moved.Primary, moved, host))
        {
            await WriteAsync(writer, seed: 9, count: 8, firstBlock: 8192);
        }

        Assert.That((await cluster.NodeApi("node-c").UndrainNodeAsync(new NodeRequest { Name = primary })).AdminState, Is.EqualTo("active"));
        var verify = await cluster.Volumes("node-b").VerifyVolumeAsync(new VerifyVolumeRequest { Name = "drained" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
    }

    [Test]
    public async Task A_drained_primary_whose_other_replica_is_on_a_drained_node_hands_over_to_a_new_replica()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "pair", SizeBytes = 16 << 20, Replicas = 2, AllowedHosts = { host.Nqn } });
        var primary = volume.Primary;
        var replica = volume.Replicas.Single(r => !r.Primary).Node;
        var spare = new[] { "node-a", "node-b", "node-c" }.Single(n => n != primary && n != replica);
        await using (var writer = await ConnectAsync(cluster, primary, volume, host))
        {
            await WriteAsync(writer, seed: 21, count: 8);
        }

        // The replica's node goes down and is drained (to be replaced); the primary's node is drained too. No replica
        // can take the role, so the primary first moves the drained node's replica to the spare node.
        await cluster.StopNodeAsync(replica);
        await WaitForAsync(cluster, spare, "pair", v => v.Replicas.Single(r => r.Node == replica).State == "out-of-sync");
        await cluster.NodeApi(spare).DrainNodeAsync(new NodeRequest { Name = primary });
        await cluster.NodeApi(spare).DrainNodeAsync(new NodeRequest { Name = replica });
        var moved = await WaitForAsync(cluster, spare, "pair", v => v.Primary == spare);
        Assert.That(moved.Replicas.Single(r => r.Node == spare).State, Is.EqualTo("in-sync"));
        Assert.That(moved.Replicas.Single(r => r.Node == primary).State, Is.EqualTo("in-sync"), "a handover is clean");

        await using (var reader = await ConnectAsync(cluster, spare, moved, host))
        {
            var read = new byte[8192];
            Assert.That((await RetryPathErrorsAsync(() => reader.IoQueues[0].ReadAsync(reader.FindNamespace(1)!, 2048 * 5, read).AsTask())).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(8192, 26)), "the new replica holds what was written before the drains");
        }
    }

    [Test]
    public async Task A_drain_moves_a_volume_with_one_replica_to_an_active_node_with_its_data()
    {
        await using var cluster = await InProcessCluster.StartAsync(2);
        var host = NvmeHostIdentity.Create();
        var single = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "single", SizeBytes = 16 << 20, Replicas = 1, AllowedHosts = { host.Nqn } });
        var other = single.Primary == "node-a" ? "node-b" : "node-a";
        await using (var writer = await ConnectAsync(cluster, single.Primary, single, host))
        {
            await WriteAsync(writer, seed: 31, count: 8);
            await WriteAsync(writer, seed: 41, count: 4, firstBlock: 12 << 11);
        }

        // The one replica has no peer to hand over to: the drain first adds one on the active node and rebuilds it
        // there; that replica takes the role, and the drained node's copy leaves the record.
        await cluster.NodeApi(other).DrainNodeAsync(new NodeRequest { Name = single.Primary });
        var moved = await WaitForAsync(cluster, other, "single", v => v.Primary == other && v.Replicas.Count == 1);
        Assert.That(moved.Replicas.Single().State, Is.EqualTo("in-sync"));
        var node = (await cluster.NodeApi(other).ListNodesAsync(new ListNodesRequest())).Nodes.Single(n => n.Name == single.Primary);
        Assert.That((node.PrimaryCount, node.VolumeCount, node.DrainStatus), Is.EqualTo((0u, 0u, "drained")));

        await using (var reader = await ConnectAsync(cluster, other, moved, host))
        {
            var read = new byte[8192];
            Assert.That((await RetryPathErrorsAsync(() => reader.IoQueues[0].ReadAsync(reader.FindNamespace(1)!, 0, read).AsTask())).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(read.Length, 31)), "the moved volume holds what was written before the drain");
            Assert.That((await reader.IoQueues[0].ReadAsync(reader.FindNamespace(1)!, 12 << 11, read)).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(read.Length, 41)));
        }

        var verify = await cluster.Volumes(other).VerifyVolumeAsync(new VerifyVolumeRequest { Name = "single" });
        Assert.That(verify.Identical, Is.True, verify.ToString());
    }

    [Test]
    public async Task A_handover_waits_until_the_hosts_of_the_primary_are_connected_to_the_new_one()
    {
        await using var cluster = await InProcessCluster.StartAsync(2);
        var host = NvmeHostIdentity.Create();
        var single = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "held", SizeBytes = 16 << 20, Replicas = 1, AllowedHosts = { host.Nqn } });
        var other = single.Primary == "node-a" ? "node-b" : "node-a";
        await using var first = await ConnectAsync(cluster, single.Primary, single, host);
        await WriteAsync(first, seed: 51, count: 4);

        await cluster.NodeApi(other).DrainNodeAsync(new NodeRequest { Name = single.Primary });
        await WaitForAsync(cluster, other, "held", v => v.Replicas.Count == 2 && v.Replicas.All(r => r.State == "in-sync"));
        // The host has a path to the old primary only: moving the role now would leave it without a usable path.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.That((await cluster.Volumes(other).GetVolumeAsync(new GetVolumeRequest { Name = "held" })).Primary, Is.EqualTo(single.Primary));

        // What the host's node plugin does once the discovery log lists the new replica: connect it.
        await using var second = await ConnectAsync(cluster, other, single, host);
        var moved = await WaitForAsync(cluster, other, "held", v => v.Primary == other && v.Replicas.Count == 1);
        await WriteAsync(second, seed: 61, count: 1, firstBlock: 4 * 2048);
        var read = new byte[8192];
        Assert.That((await second.IoQueues[0].ReadAsync(second.FindNamespace(1)!, 2048, read)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(read, Is.EqualTo(Pattern(8192, 52)));
        Assert.That(moved.Epoch, Is.GreaterThan(single.Epoch));
    }

    [Test]
    public async Task A_host_that_never_connects_to_the_new_replica_holds_the_handover_only_for_the_configured_wait()
    {
        await using var cluster = await InProcessCluster.StartAsync(0);
        cluster.HandoverHostWait = TimeSpan.FromSeconds(2);
        await cluster.StartNodeAsync("node-a");
        await cluster.StartNodeAsync("node-b");
        var host = NvmeHostIdentity.Create();
        var single = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "bounded", SizeBytes = 16 << 20, Replicas = 1, AllowedHosts = { host.Nqn } });
        var other = single.Primary == "node-a" ? "node-b" : "node-a";
        await using var stubborn = await ConnectAsync(cluster, single.Primary, single, host);

        await cluster.NodeApi(other).DrainNodeAsync(new NodeRequest { Name = single.Primary });
        var moved = await WaitForAsync(cluster, other, "bounded", v => v.Primary == other && v.Replicas.Count == 1);
        Assert.That(moved.Replicas.Single().Node, Is.EqualTo(other));
    }

    [Test]
    public async Task Snapshots_clones_and_resizes_happen_on_every_replica_at_one_point_of_the_write_order()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-b").CreateVolumeAsync(new CreateVolumeRequest { Name = "src", SizeBytes = 16 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        await using var writer = await ConnectAsync(cluster, volume.Primary, volume, host);
        await WriteAsync(writer, seed: 11, count: 16);

        var snapshot = await cluster.Volumes("node-c").CreateSnapshotAsync(new CreateSnapshotRequest { Volume = "src", Name = "snap" });
        Assert.That(snapshot.SizeBytes, Is.EqualTo((ulong)(16 << 20)));
        await WriteAsync(writer, seed: 12, count: 16);

        var clone = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "clone", SourceSnapshot = "snap", Replicas = 3, AllowedHosts = { host.Nqn } });
        Assert.That(clone.Replicas.Select(r => r.State), Is.All.EqualTo("in-sync"), "every node holds the snapshot, so every replica starts from it");
        await using (var reader = await ConnectAsync(cluster, clone.Primary, clone, host))
        {
            var read = new byte[8192];
            Assert.That((await RetryPathErrorsAsync(() => reader.IoQueues[0].ReadAsync(reader.FindNamespace(1)!, 4096, read).AsTask())).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(read, Is.EqualTo(Pattern(8192, 13)), "the clone holds the snapshot's data, not the later writes");
        }

        var grown = await cluster.Volumes("node-a").ResizeVolumeAsync(new ResizeVolumeRequest { Name = "src", SizeBytes = 24 << 20 });
        Assert.That(grown.SizeBytes, Is.EqualTo((ulong)(24 << 20)));
        await WriteAsync(writer, seed: 30, count: 4, firstBlock: (20 << 20) / 512);
        foreach (var name in new[] { "src", "clone" })
        {
            var verify = await cluster.Volumes("node-c").VerifyVolumeAsync(new VerifyVolumeRequest { Name = name });
            Assert.That(verify.Identical, Is.True, $"{name}: {verify}");
        }
    }

    [Test]
    public async Task A_two_replica_volume_keeps_serving_with_one_node_down_and_a_denied_host_loses_every_path()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "two", SizeBytes = 16 << 20, Replicas = 2, AllowedHosts = { host.Nqn } });
        Assert.That(volume.Replicas, Has.Count.EqualTo(2));
        var replica = volume.Replicas.Single(r => !r.Primary).Node;
        await using (var writer = await ConnectAsync(cluster, volume.Primary, volume, host))
        {
            await cluster.StopNodeAsync(replica);
            await WriteAsync(writer, seed: 21, count: 16);
        }

        await cluster.StartNodeAsync(replica);
        await WaitForAsync(cluster, volume.Primary, "two", v => v.Replicas.All(r => r.State == "in-sync"));

        var paths = new List<NvmeController>();
        foreach (var node in volume.Replicas.Select(r => r.Node))
        {
            paths.Add(await ConnectAsync(cluster, node, volume, host));
        }

        var denied = await cluster.Volumes("node-a").DenyHostAsync(new HostAccessRequest { Name = "two", HostNqn = host.Nqn });
        Assert.That(denied.ConnectedHosts, Is.Empty, "no node keeps a controller of the denied host once the call returned");
        foreach (var path in paths)
        {
            Assert.That(() => path.State, Is.Not.EqualTo(ControllerState.Live).After(10000, 50));
            await path.DisposeAsync();
        }
    }
}
