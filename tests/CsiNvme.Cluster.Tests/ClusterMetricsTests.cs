using System.Globalization;
using System.Text.RegularExpressions;
using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests;

/// <summary>The cluster's Prometheus series, scraped from real nodes through a write load, a failover and a rebuild.</summary>
[Category("Cluster")]
public sealed partial class ClusterMetricsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [GeneratedRegex(@"^(?<name>[a-z_]+)(\{(?<labels>[^}]*)\})? (?<value>\S+)$", RegexOptions.Multiline)]
    private static partial Regex Sample();

    /// <summary>The value of the series whose name is <paramref name="name"/> and whose labels include every one given; null when absent.</summary>
    private static async Task<double?> ScrapeAsync(InProcessCluster cluster, string node, string name, params string[] labels)
    {
        var text = await Http.GetStringAsync($"http://{cluster.Node(node).MetricsEndpoint}/metrics");
        foreach (Match match in Sample().Matches(text))
        {
            if (match.Groups["name"].Value == name && labels.All(l => match.Groups["labels"].Value.Split(',').Contains(l)))
            {
                return double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    private static async Task ExpectAsync(InProcessCluster cluster, string node, string name, double expected, params string[] labels)
    {
        double? last = null;
        var reached = await InProcessCluster.WaitAsync(async () => (last = await ScrapeAsync(cluster, node, name, labels)) == expected, Bound);
        Assert.That(reached, Is.True, $"{node}: {name}{{{string.Join(',', labels)}}} = {last?.ToString(CultureInfo.InvariantCulture) ?? "absent"}, expected {expected}");
    }

    [Test]
    public async Task Lease_replica_states_replication_latency_promotion_and_rebuild_show_in_the_nodes_metrics()
    {
        await using var cluster = await InProcessCluster.StartAsync(3);
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes("node-a").CreateVolumeAsync(new CreateVolumeRequest { Name = "m", SizeBytes = 16 << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        var primary = volume.Primary;
        var replica = volume.Replicas.First(r => !r.Primary).Node;
        await ExpectAsync(cluster, primary, "csinvme_node_lease_valid", 1);
        await ExpectAsync(cluster, primary, "csinvme_cluster_nodes", 3, "state=\"up\"");
        await ExpectAsync(cluster, primary, "csinvme_volume_primary", 1, "volume=\"m\"");
        await ExpectAsync(cluster, replica, "csinvme_volume_primary", 0, "volume=\"m\"");
        await ExpectAsync(cluster, primary, "csinvme_volume_replicas", 3, "volume=\"m\"", "state=\"in-sync\"");

        const int writes = 20;
        await using (var controller = await new NvmeTcpHost(new NvmeTcpHostOptions { HostNqn = host.Nqn, HostId = host.Id, Reconnect = false })
            .ConnectAsync(cluster.Node(primary).NvmeEndpoints[0], volume.SubsystemNqn))
        {
            var ns = controller.FindNamespace(1)!;
            for (var i = 0; i < writes; i++)
            {
                var completion = await controller.IoQueues[0].WriteAsync(ns, (ulong)(i * 8), new byte[4096]);
                Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
            }

            Assert.That((await controller.IoQueues[0].FlushAsync(ns)).Status, Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(await ScrapeAsync(cluster, primary, "csinvme_volume_replication_latency_seconds_count", "volume=\"m\"", "op=\"write\""), Is.EqualTo(writes));
        Assert.That(await ScrapeAsync(cluster, primary, "csinvme_volume_replication_latency_seconds_count", "volume=\"m\"", "op=\"flush\""), Is.GreaterThanOrEqualTo(1));
        Assert.That(await ScrapeAsync(cluster, primary, "csinvme_volume_replication_latency_seconds_sum", "volume=\"m\"", "op=\"write\""), Is.GreaterThan(0));

        // The primary stops: the node that takes over counts a promotion and the time the volume went without a primary.
        await cluster.StopNodeAsync(primary);
        var asking = cluster.Nodes.Keys.First(n => n != primary);
        Volume? failedOver = null;
        Assert.That(await InProcessCluster.WaitAsync(async () =>
        {
            failedOver = await cluster.Volumes(asking).GetVolumeAsync(new GetVolumeRequest { Name = "m" });
            return failedOver.Primary.Length > 0 && failedOver.Primary != primary;
        }, Bound), Is.True, "no promotion");
        var promoted = failedOver!.Primary;
        await ExpectAsync(cluster, promoted, "csinvme_volume_primary_changes_total", 1, "volume=\"m\"", "reason=\"promotion\"");
        await ExpectAsync(cluster, promoted, "csinvme_volume_without_primary_seconds_count", 1);
        await ExpectAsync(cluster, promoted, "csinvme_cluster_nodes", 1, "state=\"down\"");
        await ExpectAsync(cluster, promoted, "csinvme_volume_replicas", 1, "volume=\"m\"", "state=\"out-of-sync\"");

        // It returns and is rebuilt: one finished rebuild on the new primary, every replica in sync again.
        await cluster.StartNodeAsync(primary);
        await ExpectAsync(cluster, promoted, "csinvme_volume_replicas", 3, "volume=\"m\"", "state=\"in-sync\"");
        await ExpectAsync(cluster, promoted, "csinvme_volume_rebuilds_total", 1, "volume=\"m\"");
        await ExpectAsync(cluster, promoted, "csinvme_cluster_nodes", 3, "state=\"up\"");
    }
}
