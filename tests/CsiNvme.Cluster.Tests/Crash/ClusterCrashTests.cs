using System.Diagnostics;
using System.Globalization;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.Crash;

/// <summary>
/// Storage nodes killed with SIGKILL at random moments while a host writes: three server processes on a real etcd, a
/// 3-replica volume, and a writer (<see cref="AckedWriter"/>) that sends every write and flush to the primary of the
/// moment and records what was acknowledged and what a flush covered. Each iteration kills the primary of the moment
/// at a random time, starts it again after a random time, sometimes kills another node (primary or replica) while the
/// first one is being rebuilt, waits until every replica is in sync, and then checks that the replicas are identical
/// (volume verify) and that the volume read through the new primary holds every acknowledged write whole.
/// CSINVME_CLUSTER_CRASH_ITERATIONS sets the number of iterations (3 by default, a short CI run; the long variant sets
/// more), CSINVME_CLUSTER_CRASH_SEED the random seed.
/// </summary>
[TestFixture]
[Category("Crash")]
[NonParallelizable]
public sealed class ClusterCrashTests
{
    [Test]
    public async Task Every_acknowledged_write_survives_storage_nodes_killed_at_random_moments()
    {
        EtcdServer.Require();
        var iterations = int.TryParse(Environment.GetEnvironmentVariable("CSINVME_CLUSTER_CRASH_ITERATIONS"), CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 3;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("CSINVME_CLUSTER_CRASH_SEED"), CultureInfo.InvariantCulture, out var s) ? s : Random.Shared.Next();
        TestContext.Out.WriteLine($"{iterations} iterations, seed {seed} (CSINVME_CLUSTER_CRASH_SEED={seed} repeats the choices)");
        var random = new Random(seed);
        var log = new List<string>();
        void Note(string line)
        {
            log.Add(line);
            TestContext.Progress.WriteLine("[crash] " + line);
        }

        await using var cluster = await ProcessCluster.StartAsync(3, new ProcessClusterOptions
        {
            OutputLine = line =>
            {
                // Only what matters for the story: roles, failures and rebuilds.
                if (line.Contains("warn:", StringComparison.Ordinal) || line.Contains("fail:", StringComparison.Ordinal) || line.Contains("=====", StringComparison.Ordinal)
                    || line.Contains("primary at epoch", StringComparison.Ordinal) || line.Contains("in sync again", StringComparison.Ordinal))
                {
                    TestContext.Progress.WriteLine(line);
                }
            },
        });
        var host = NvmeHostIdentity.Create();
        var volume = await cluster.Volumes().CreateVolumeAsync(new CreateVolumeRequest { Name = "crash", SizeBytes = 64UL << 20, Replicas = 3, AllowedHosts = { host.Nqn } });
        await using var writer = new AckedWriter(cluster, volume, host, random.Next());
        var stalls = new List<double>();
        var rebuilds = new List<double>();
        try
        {
            writer.Start(writers: 4);
            for (var iteration = 1; iteration <= iterations; iteration++)
            {
                var before = await cluster.GetVolumeAsync("crash");
                await Task.Delay(TimeSpan.FromMilliseconds(random.Next(300, 3000)));
                writer.TakeLongestGap();
                var victim = before.Primary;
                const string role = "primary";
                await cluster[victim].KillAsync();
                var downFor = TimeSpan.FromMilliseconds(random.Next(0, 6000));
                await Task.Delay(downFor);
                var restarted = Stopwatch.StartNew();
                await cluster[victim].StartAsync();
                var story = $"iteration {iteration}: killed {victim} ({role}), down {downFor.TotalSeconds:F1} s";

                if (random.Next(100) < 40)
                {
                    // A second failure while the first node is being rebuilt: another node, at a random moment of it.
                    await Task.Delay(TimeSpan.FromMilliseconds(random.Next(0, 1500)));
                    var now = await cluster.GetVolumeAsync("crash");
                    var second = cluster.Nodes.Where(x => x.Name != victim).ElementAt(random.Next(cluster.Nodes.Count - 1)).Name;
                    var secondRole = second == now.Primary ? "primary" : "replica";
                    var states = string.Join(",", now.Replicas.Select(r => $"{r.Node}={r.State}"));
                    await cluster[second].KillAsync();
                    var secondDown = TimeSpan.FromMilliseconds(random.Next(0, 4000));
                    await Task.Delay(secondDown);
                    await cluster[second].StartAsync();
                    restarted.Restart();
                    story += $"; then killed {second} ({secondRole}; replicas {states}), down {secondDown.TotalSeconds:F1} s";
                }

                var healed = await cluster.WaitForVolumeAsync("crash", "every replica in sync", v => v.Replicas.All(r => r.State == "in-sync"), TimeSpan.FromMinutes(3));
                var rebuild = restarted.Elapsed.TotalSeconds;
                writer.ThrowIfFailed();
                await writer.PauseAndFlushAsync();
                var stall = writer.TakeLongestGap().TotalSeconds;
                var verify = await cluster.Volumes().VerifyVolumeAsync(new VerifyVolumeRequest { Name = "crash" });
                var check = await writer.CheckAsync();
                stalls.Add(stall);
                rebuilds.Add(rebuild);
                Note($"{story}; primary now {healed.Primary} (epoch {healed.Epoch}); in sync {rebuild:F1} s after the (last) restart; " +
                     $"failover stall (longest time without an acknowledged write) {stall:F2} s; verify identical={verify.Identical} in-sync={verify.AllInSync}; " +
                     $"{check.Written} blocks hold their last acknowledged write, {check.Errors.Count} errors; " +
                     $"writes {writer.WritesAcked}, flushes {writer.FlushesAcked}, path retries {writer.PathRetries}");
                Assert.That(verify.AllInSync && verify.Identical, Is.True, $"iteration {iteration}: the replicas differ: {verify}");
                Assert.That(check.Errors, Is.Empty, $"iteration {iteration}: acknowledged writes missing:\n{string.Join("\n", check.Errors.Take(20))}");
                writer.Resume();
            }

            writer.ThrowIfFailed();
            Assert.That(writer.WritesAcked, Is.GreaterThan(0));
            Note($"done: {iterations} iterations; failover stall per iteration (s): median {Median(stalls):F2}, max {stalls.Max():F2} [{string.Join(", ", stalls.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))}]; " +
                 $"in sync after the restart (s): median {Median(rebuilds):F1}, max {rebuilds.Max():F1}");
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(string.Join("\n", log));
            TestContext.Out.WriteLine(cluster.Describe(150));
            throw;
        }

        TestContext.Out.WriteLine(string.Join("\n", log));
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
