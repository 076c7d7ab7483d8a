using System.Diagnostics;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.EndToEnd;

/// <summary>The cluster as separate server processes (killed with SIGKILL, started again on the same ports), without a guest.</summary>
[TestFixture]
[Category("Cluster")]
[NonParallelizable]
public sealed class ClusterProcessTests
{
    [Test]
    public async Task A_killed_node_that_returns_on_its_ports_is_rebuilt_at_once_though_calls_to_it_failed_while_it_was_away()
    {
        EtcdServer.Require();
        await using var cluster = await ProcessCluster.StartAsync(3, new ProcessClusterOptions { OutputLine = TestContext.Progress.WriteLine });
        var volume = await cluster.Volumes().CreateVolumeAsync(new CreateVolumeRequest { Name = "returning", SizeBytes = 16 << 20, Replicas = 3, AllowAnyHost = true });
        var primary = volume.Primary;
        try
        {
            await cluster[primary].KillAsync();
            // `volume get` asks every replica node a node thinks is up for its status: until the killed node's lease runs
            // out, those calls find nothing listening on its management port.
            var others = cluster.Nodes.Where(n => n.Name != primary).ToArray();
            var down = Stopwatch.StartNew();
            Volume seen = volume;
            while (down.Elapsed < TimeSpan.FromSeconds(30) && (seen.Primary == primary || seen.Primary.Length == 0))
            {
                foreach (var node in others)
                {
                    seen = await node.Volumes.GetVolumeAsync(new GetVolumeRequest { Name = "returning" });
                }

                await Task.Delay(100);
            }

            Assert.That(seen.Primary, Is.Not.EqualTo(primary), "a replica was promoted");
            // Away long enough for the connections to it to be in a reconnect backoff of several seconds. The new primary
            // does not know what the old one missed, so the rebuild starts by comparing checksums through its agent.
            await Task.Delay(TimeSpan.FromSeconds(15));
            var since = cluster[seen.Primary].Log.Length;
            var back = Stopwatch.StartNew();
            await cluster[primary].StartAsync();
            await cluster.WaitForVolumeAsync("returning", "every replica in sync", v => v.Replicas.All(r => r.State == "in-sync"), TimeSpan.FromMinutes(2));
            var failures = cluster[seen.Primary].Log[since..].Split('\n').Where(l => l.Contains($"rebuild of the replica on {primary} failed", StringComparison.Ordinal)).ToArray();
            TestContext.Out.WriteLine($"{primary} in sync {back.Elapsed.TotalSeconds:F1} s after it started again");
            Assert.That(failures, Is.Empty, "the returning node's rebuild failed on a stale connection to its previous process");
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(cluster.Describe(150));
            throw;
        }
    }
}
