using System.Diagnostics;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.EndToEnd;

/// <summary>
/// The storage cluster against the real Linux host: three csinvme-server processes on a real etcd, a replicated volume,
/// and a guest whose kernel (nvme-tcp, native multipath) connects a path to every replica node and sees one device.
/// A guest boots slowly under TCG, so one guest runs the scenarios in sequence, fio with crc32c verification in the
/// guest throughout: the primary killed (SIGKILL), the killed node started again and rebuilt while fio runs, the new
/// primary's node drained. Checks: no I/O error, no verify mismatch, the longest time without a completed I/O
/// (reported, at most 10 s), the paths' ANA states in the guest's sysfs, the rebuild and volume verify.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class ClusterGuestEndToEndTests
{
    // fio's runs: the kill at 8 s, the failover within the run; then the node's return, its rebuild and the drain.
    private const int KillFioSeconds = 25;
    private const int RebuildDrainFioSeconds = 40;
    private static readonly TimeSpan FioBound = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan KillStallLimit = TimeSpan.FromSeconds(10);

    [OneTimeSetUp]
    public async Task RequireGuestAndEtcd()
    {
        EtcdServer.Require();
        await LinuxGuest.RequireAsync();
    }

    [Test]
    public async Task Killing_the_primary_under_fio_then_draining_the_new_one_costs_no_io_error_and_the_killed_node_is_rebuilt()
    {
        await using var s = await ClusterScenario.StartAsync("failover", replicas: 3);
        await RunAsync(s, async () =>
        {
            var primary = s.Volume.Primary;
            var nodes = s.Volume.Replicas.Select(r => r.Node).ToArray();
            await s.ExpectPathsAsync(primary, nodes, "at the start");

            // 1. kill -9 of the primary while fio writes and verifies.
            await s.Guest.StartFioAsync("kill", s.Device, KillFioSeconds);
            await Task.Delay(TimeSpan.FromSeconds(8));
            var killed = Stopwatch.StartNew();
            await s.Cluster[primary].KillAsync();
            s.Note($"killed the primary {primary} (SIGKILL)");
            var promoted = await s.WaitForNewPrimaryAsync(primary, s.Volume.Epoch);
            s.Note($"record: {promoted.Primary} primary at epoch {promoted.Epoch}, {killed.Elapsed.TotalSeconds:F1} s after the kill; {string.Join(", ", promoted.Replicas.Select(r => $"{r.Node}={r.State}"))}");
            s.Note("promotion logged: " + s.Cluster[promoted.Primary].LogLines("promoted this node to primary").LastOrDefault());
            var moved = await s.Guest.WaitForPathsAsync(s.Nqn, $"{promoted.Primary}'s path optimized, {primary}'s not live",
                p => p.Is(s.PortOf(promoted.Primary), "live", "optimized") && p.OnPort(s.PortOf(primary))?.State != "live", TimeSpan.FromSeconds(60));
            s.Note($"guest paths {killed.Elapsed.TotalSeconds:F1} s after the kill:\n{moved.Text}");

            var fio = s.ExpectCleanFio(await s.Guest.WaitForFioAsync("kill", FioBound), "kill -9 of the primary");
            Assert.That(fio.StallSeconds, Is.LessThanOrEqualTo(KillStallLimit.TotalSeconds), fio.Summary);

            // 2. The killed node returns while fio runs again: rebuilt back in sync under I/O.
            await s.Guest.StartFioAsync("rebuild-drain", s.Device, RebuildDrainFioSeconds);
            await Task.Delay(TimeSpan.FromSeconds(3));
            await s.RestartAndRebuildAsync(primary, verify: false);
            await s.ExpectFioRunningAsync("rebuild-drain", "the rebuild");

            // 3. node drain of the new primary's node, fio still running.
            var before = await s.Cluster.GetVolumeAsync(s.Volume.Name);
            var drained = Stopwatch.StartNew();
            var state = await s.Cluster.NodeApi().DrainNodeAsync(new NodeRequest { Name = before.Primary });
            s.Note($"node drain {before.Primary}: {state.AdminState}");
            var handedOver = await s.WaitForNewPrimaryAsync(before.Primary, before.Epoch);
            s.Note($"record: {handedOver.Primary} primary at epoch {handedOver.Epoch}, {drained.Elapsed.TotalSeconds:F1} s after the drain; {string.Join(", ", handedOver.Replicas.Select(r => $"{r.Node}={r.State}"))}");
            s.Note("handover logged: " + s.Cluster[before.Primary].LogLines("handed over").LastOrDefault());
            await s.ExpectPathsAsync(handedOver.Primary, nodes, $"after the drain of {before.Primary}");
            await s.ExpectFioRunningAsync("rebuild-drain", "the drain");

            var drainFio = s.ExpectCleanFio(await s.Guest.WaitForFioAsync("rebuild-drain", FioBound), "rebuild and node drain of the primary's node");
            Assert.That(drainFio.StallSeconds, Is.LessThanOrEqualTo(KillStallLimit.TotalSeconds), drainFio.Summary);
            var list = await s.Cluster.NodeApi().ListNodesAsync(new ListNodesRequest());
            var node = list.Nodes.Single(n => n.Name == before.Primary);
            s.Note($"node list: {before.Primary} {node.AdminState}, primaries {node.PrimaryCount}, {node.DrainStatus}");
            Assert.That(node.PrimaryCount, Is.Zero);
            Assert.That((await s.Cluster.NodeApi().UndrainNodeAsync(new NodeRequest { Name = before.Primary })).AdminState, Is.EqualTo("active"));
            await s.WaitForAllInSyncAsync(TimeSpan.FromMinutes(2));
            await s.VerifyIdenticalAsync();
        });
    }

    /// <summary>Runs the scenario's body; on failure prints its report, the guest's state and every node's log.</summary>
    private static async Task RunAsync(ClusterScenario s, Func<Task> body)
    {
        try
        {
            await body();
        }
        catch (Exception e) when (e is not SuccessException and not IgnoreException)
        {
            TestContext.Out.WriteLine(await s.DescribeFailureAsync());
            throw;
        }
    }
}
