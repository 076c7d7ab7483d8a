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
/// The controller over a storage cluster of three in-process nodes on a real etcd: the StorageClass parameter
/// replicas, GetCapacity per replica count and pool, publish_context targets on every replica node, and the volume
/// condition while a node is down.
/// </summary>
[TestFixture]
[Category("Cluster")]
[CancelAfter(180_000)]
public sealed class ClusterControllerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private ClusterCsiHarness _cluster = null!;

    [OneTimeSetUp]
    public async Task StartAsync() => _cluster = await ClusterCsiHarness.StartAsync();

    [OneTimeTearDown]
    public async Task StopAsync() => await _cluster.DisposeAsync();

    private ControllerClient Controller => _cluster.Controller;

    internal static CreateVolumeRequest Create(string name, string? replicas, string? pool = null)
    {
        var request = Caps.Create(name, requiredBytes: 16 << 20, capabilities: Caps.Block(Mode.MultiNodeMultiWriter));
        if (replicas is not null)
        {
            request.Parameters["replicas"] = replicas;
        }

        if (pool is not null)
        {
            request.Parameters["pool"] = pool;
        }

        return request;
    }

    internal static GetCapacityRequest Capacity(int? replicas, string? pool = null)
    {
        var request = new GetCapacityRequest { VolumeCapabilities = { Caps.Block(Mode.MultiNodeMultiWriter) } };
        if (replicas is { } count)
        {
            request.Parameters["replicas"] = count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (pool is not null)
        {
            request.Parameters["pool"] = pool;
        }

        return request;
    }

    [Test]
    public async Task CreateVolume_with_replicas_3_keeps_a_copy_on_every_node_and_a_retry_must_ask_the_same()
    {
        var name = Caps.UniqueName();
        var request = Create(name, "3");
        var created = (await Controller.CreateVolumeAsync(request)).Volume;
        var onServer = await _cluster.Volumes("node-c").GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(onServer.ReplicaCount, Is.EqualTo(3));
            Assert.That(onServer.Replicas.Select(r => r.Node), Is.EquivalentTo(new[] { "node-a", "node-b", "node-c" }));
            Assert.That(onServer.Replicas.Select(r => r.State), Is.All.EqualTo("in-sync"));
            Assert.That(onServer.Replicas.Count(r => r.Primary), Is.EqualTo(1));
            Assert.That(created.VolumeContext["replicas"], Is.EqualTo("3"));
            Assert.That(created.AccessibleTopology, Is.Empty, "storage nodes are reached over the network from every node");
        });

        Assert.That((await Controller.CreateVolumeAsync(request)).Volume, Is.EqualTo(created), "the same request again");
        var fewer = request.Clone();
        fewer.Parameters["replicas"] = "2";
        var conflict = await CsiHarness.FailureOf(() => Controller.CreateVolumeAsync(fewer).ResponseAsync);
        Assert.That(conflict.StatusCode, Is.EqualTo(StatusCode.AlreadyExists), conflict.Status.Detail);
        Assert.That(conflict.Status.Detail, Does.Contain("replicas=3"));
    }

    [Test]
    public async Task CreateVolume_without_replicas_keeps_one_copy()
    {
        var name = Caps.UniqueName();
        var created = (await Controller.CreateVolumeAsync(Create(name, null))).Volume;
        var onServer = await _cluster.Volumes().GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(onServer.ReplicaCount, Is.EqualTo(1));
            Assert.That(onServer.Replicas, Has.Count.EqualTo(1));
            Assert.That(created.VolumeContext.ContainsKey("replicas"), Is.False, "the node's single-path defaults apply");
        });

        // The same name with 3 copies is another volume.
        Assert.That(await CsiHarness.CodeOf(() => Controller.CreateVolumeAsync(Create(name, "3")).ResponseAsync), Is.EqualTo(StatusCode.AlreadyExists));
    }

    [Test]
    public async Task CreateVolume_places_every_replica_in_the_pool_parameter()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Create(name, "2", pool: "fast"));
        var onServer = await _cluster.Volumes().GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.Multiple(() =>
        {
            Assert.That(onServer.Replicas.Select(r => r.Node), Is.EquivalentTo(new[] { "node-a", "node-b" }), "only they have a pool named fast");
            Assert.That(onServer.Replicas.Select(r => r.Pool), Is.All.EqualTo("fast"));
            Assert.That(onServer.Pool, Is.EqualTo("fast"));
        });

        // A retry compares the pool with the primary's: the same answer.
        await Controller.CreateVolumeAsync(Create(name, "2", pool: "fast"));
        var failure = await CsiHarness.FailureOf(() => Controller.CreateVolumeAsync(Create(Caps.UniqueName(), "3", pool: "fast")).ResponseAsync);
        Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.ResourceExhausted), failure.Status.Detail);
        Assert.That(failure.Status.Detail, Does.Contain("pool fast"));
    }

    [Test]
    public async Task GetCapacity_for_N_replicas_is_the_free_space_of_the_Nth_node_with_the_most()
    {
        // Node registrations follow their pools with a short delay after other tests' volumes: compare until both
        // views agree.
        long[] free = [];
        long[] fastFree = [];
        long[] answered = [];
        var agreed = await ClusterCsiHarness.WaitAsync(async () =>
        {
            var nodes = (await _cluster.NodeApi().ListNodesAsync(new Mgmt.ListNodesRequest())).Nodes;
            free = [.. nodes.Select(n => (long)n.FreeBytes).OrderDescending()];
            fastFree = [.. nodes.SelectMany(n => n.Pools).Where(p => p.Name == "fast").Select(p => (long)p.FreeBytes).OrderDescending()];
            answered =
            [
                .. await Task.WhenAll(new int?[] { null, 1, 2, 3 }.Select(async n => (await Controller.GetCapacityAsync(Capacity(n))).AvailableCapacity)),
                .. await Task.WhenAll(new int?[] { 1, 2, 3 }.Select(async n => (await Controller.GetCapacityAsync(Capacity(n, "fast"))).AvailableCapacity)),
            ];
            return free.Length == 3 && fastFree.Length == 2 &&
                   answered.SequenceEqual([free[0], free[0], free[1], free[2], fastFree[0], fastFree[1], 0]);
        }, Bound);
        Assert.That(agreed, Is.True, $"nodes' free space {string.Join(", ", free)} (fast {string.Join(", ", fastFree)}); GetCapacity answered {string.Join(", ", answered)}");
        Assert.That(free, Is.Unique, "the nodes' free spaces differ, so each replica count picks another node");
        Assert.That(fastFree, Is.Unique);

        // A draining node takes no new replicas: three copies fit nowhere meanwhile.
        var nodeApi = _cluster.NodeApi();
        await nodeApi.DrainNodeAsync(new Mgmt.NodeRequest { Name = "node-c" });
        try
        {
            Assert.That(
                await ClusterCsiHarness.WaitAsync(async () => (await Controller.GetCapacityAsync(Capacity(3))).AvailableCapacity == 0, Bound),
                Is.True,
                "GetCapacity for 3 replicas with a node draining");
        }
        finally
        {
            await nodeApi.UndrainNodeAsync(new Mgmt.NodeRequest { Name = "node-c" });
            // Placement sees the node's admin state through the cluster's watch, a moment after the call: the tests
            // after this one place three replicas at once.
            Assert.That(
                await ClusterCsiHarness.WaitAsync(async () => (await Controller.GetCapacityAsync(Capacity(3))).AvailableCapacity > 0, Bound),
                Is.True,
                "GetCapacity for 3 replicas once node-c is active again");
        }
    }

    [Test]
    public async Task ControllerPublishVolume_returns_a_path_on_every_replica_node_the_primary_first()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Create(name, "3"));
        var node = Caps.Node("worker-" + Guid.NewGuid().ToString("N")[..8]);
        var published = await Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = name,
            NodeId = node,
            VolumeCapability = Caps.Block(Mode.MultiNodeMultiWriter),
        });
        var onServer = await _cluster.Volumes("node-b").GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        var targets = published.PublishContext["targets"].Split(',');
        Assert.Multiple(() =>
        {
            Assert.That(targets, Is.EquivalentTo(_cluster.Nodes.Values.Select(s => s!.NvmeEndpoints[0].ToString())));
            Assert.That(targets[0], Is.EqualTo(_cluster.Node(onServer.Primary).NvmeEndpoints[0].ToString()), "the primary's (optimized) path first");
            Assert.That(published.PublishContext["nqn"], Is.EqualTo(onServer.SubsystemNqn));
        });

        // The published node may connect on every path: each replica node admits its host NQN. The first path
        // serves I/O.
        var hostId = Guid.NewGuid();
        foreach (var (target, index) in targets.Select((t, i) => (t, i)))
        {
            await using var controller = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = node, HostId = hostId })
                .ConnectAsync(IPEndPoint.Parse(target), onServer.SubsystemNqn);
            var written = await RetryPathStatusAsync(async () => await controller.IoQueues[0].WriteAsync(controller.FindNamespace(1)!, 0, new byte[4096]), index == 0);
            Assert.That(written.Status, Is.EqualTo(index == 0 ? NvmeStatus.Success : NvmeStatus.AsymmetricAccessInaccessible), target);
        }
    }

    /// <summary>
    /// When <paramref name="retry"/>, retries (bounded) a command refused with a path status, as a multipath host requeues
    /// it: a new primary's path may turn optimized a moment after the record names it.
    /// </summary>
    internal static async Task<NvmeCompletion> RetryPathStatusAsync(Func<Task<NvmeCompletion>> command, bool retry = true)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var completion = await command();
            if (!retry || completion.Status.Type != StatusCodeType.PathRelated || DateTime.UtcNow > deadline)
            {
                return completion;
            }

            await Task.Delay(50);
        }
    }

    [Test]
    public async Task Volume_condition_is_normal_with_every_replica_in_sync()
    {
        var name = Caps.UniqueName();
        await Controller.CreateVolumeAsync(Create(name, "3"));
        var condition = (await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name })).Status.VolumeCondition;
        Assert.That(condition.Abnormal, Is.False, condition.Message);
        Assert.That(condition.Message, Does.Contain("3 replica(s) in sync"));
    }

    [Test]
    public async Task ControllerModifyVolume_adds_and_removes_replicas_and_publish_context_says_the_count()
    {
        var name = Caps.UniqueName();
        var request = Create(name, "3");
        // The PVC's VolumeAttributesClass says 1 over the StorageClass's 3.
        request.MutableParameters["replicas"] = "1";
        var created = (await Controller.CreateVolumeAsync(request)).Volume;
        var api = _cluster.Volumes("node-b");
        Assert.That((await api.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name })).Replicas, Has.Count.EqualTo(1));
        Assert.That(created.VolumeContext["replicas"], Is.EqualTo("1"));

        async Task<bool> Holds(int replicas) => await ClusterCsiHarness.WaitAsync(async () =>
        {
            var volume = await api.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
            return volume.ReplicaCount == replicas && volume.Replicas.Count == replicas && volume.Replicas.All(r => r.State == "in-sync");
        }, Bound);

        await Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest { VolumeId = name, MutableParameters = { ["replicas"] = "3" } });
        Assert.That(await Holds(3), Is.True, "three replicas in sync after the change to 3");
        var described = await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = name });
        var published = await Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = name,
            NodeId = Caps.Node("worker-" + Guid.NewGuid().ToString("N")[..8]),
            VolumeCapability = Caps.Block(Mode.MultiNodeMultiWriter),
        });
        Assert.Multiple(() =>
        {
            Assert.That(described.Volume.VolumeContext["replicas"], Is.EqualTo("3"), "volume_context says the count now");
            Assert.That(described.Status.VolumeCondition.Abnormal, Is.False, described.Status.VolumeCondition.Message);
            Assert.That(published.PublishContext["replicas"], Is.EqualTo("3"));
            Assert.That(published.PublishContext["targets"].Split(','), Has.Length.EqualTo(3));
        });

        // The same again changes nothing; fewer removes the extra ones, never the primary.
        var primary = (await api.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name })).Primary;
        await Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest { VolumeId = name, MutableParameters = { ["replicas"] = "3" } });
        await Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest { VolumeId = name, MutableParameters = { ["replicas"] = "2" } });
        Assert.That(await Holds(2), Is.True, "two replicas after the change to 2");
        var after = await api.GetVolumeAsync(new Mgmt.GetVolumeRequest { Name = name });
        Assert.That(after.Replicas.Select(r => r.Node), Does.Contain(primary));
    }
}
