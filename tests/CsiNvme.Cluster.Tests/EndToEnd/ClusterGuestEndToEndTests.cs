using System.Diagnostics;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.EndToEnd;

/// <summary>
/// The storage cluster against the real Linux host: three csinvme-server processes on a real etcd, a replicated volume,
/// and a guest whose kernel (nvme-tcp, native multipath) connects a path to every replica node and sees one device.
/// A guest boots slowly under TCG, so one guest runs the scenarios in sequence, fio with crc32c verification in the
/// guest throughout: the primary killed (SIGKILL), the killed node started again and rebuilt while fio runs, the new
/// primary's node drained, the primary frozen (SIGSTOP) past its lease while the guest sends a write down its path, a
/// replica that is not the primary killed and rebuilt; and a 2-replica volume through the loss of its primary.
/// Checks: no I/O error, no verify mismatch, the longest time without a completed I/O
/// (reported, at most 10 s), the paths' ANA states in the guest's sysfs, the rebuild and volume verify.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class ClusterGuestEndToEndTests
{
    // fio's runs: the kill at 8 s, the failover within the run; then the node's return, its rebuild and the drain.
    private const int KillFioSeconds = 25;
    private const int RebuildDrainFioSeconds = 35;
    private const int FreezeFioSeconds = 20;
    private const int ReplicaKillFioSeconds = 20;
    private static readonly TimeSpan FioBound = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan KillStallLimit = TimeSpan.FromSeconds(10);

    [OneTimeSetUp]
    public async Task RequireGuestAndEtcd()
    {
        EtcdServer.Require();
        await LinuxGuest.RequireAsync();
    }

    [Test]
    public async Task Killing_draining_and_freezing_the_primary_under_fio_cost_no_io_error_and_the_killed_node_is_rebuilt()
    {
        await using var s = await ClusterScenario.StartAsync("failover", replicas: 3);
        await RunAsync(s, async () =>
        {
            var primary = s.Volume.Primary;
            var nodes = s.Volume.Replicas.Select(r => r.Node).ToArray();
            await s.ExpectPathsAsync(primary, nodes, "at the start");

            // 1. kill -9 of the primary while fio writes and verifies.
            await KillThePrimaryUnderFioAsync(s, primary);

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

            // 4. The primary frozen (SIGSTOP) past its lease while fio runs: replaced, and a write the guest sends down its
            // path after the promotion is never completed nor on the volume once it runs again.
            await FreezeThePrimaryAsync(s, nodes);

            // 5. kill -9 of a replica that is not the primary: the primary records it out of sync and I/O goes on.
            await KillAReplicaAsync(s);
        });
    }

    [Test]
    public async Task A_two_replica_volume_loses_its_primary_under_fio_without_an_io_error_and_is_rebuilt()
    {
        await using var s = await ClusterScenario.StartAsync("two-replicas", replicas: 2);
        await RunAsync(s, async () =>
        {
            var primary = s.Volume.Primary;
            var nodes = s.Volume.Replicas.Select(r => r.Node).ToArray();
            Assert.That(nodes, Has.Length.EqualTo(2));
            await s.ExpectPathsAsync(primary, nodes, "at the start");

            var promoted = await KillThePrimaryUnderFioAsync(s, primary);
            Assert.That(promoted.Primary, Is.EqualTo(nodes.Single(n => n != primary)), "the one other replica is promoted");
            await s.RestartAndRebuildAsync(primary);
        });
    }

    /// <summary>
    /// kill -9 of the primary while fio writes and verifies: a new primary at a higher epoch, its path optimized in the
    /// guest, fio clean with its longest stall bounded. Returns the record after the promotion.
    /// </summary>
    private static async Task<Volume> KillThePrimaryUnderFioAsync(ClusterScenario s, string primary)
    {
        await s.Guest.StartFioAsync("kill", s.Device, KillFioSeconds);
        await Task.Delay(TimeSpan.FromSeconds(8));
        var killed = Stopwatch.StartNew();
        await s.Cluster[primary].KillAsync();
        s.Note($"killed the primary {primary} (SIGKILL) of {s.Volume.Replicas.Count} replicas");
        var promoted = await s.WaitForNewPrimaryAsync(primary, s.Volume.Epoch);
        s.Note($"record: {promoted.Primary} primary at epoch {promoted.Epoch}, {killed.Elapsed.TotalSeconds:F1} s after the kill; {string.Join(", ", promoted.Replicas.Select(r => $"{r.Node}={r.State}"))}");
        s.Note("promotion logged: " + s.Cluster[promoted.Primary].LogLines("promoted this node to primary").LastOrDefault());
        var moved = await s.Guest.WaitForPathsAsync(s.Nqn, $"{promoted.Primary}'s path optimized, {primary}'s not live",
            p => p.Is(s.PortOf(promoted.Primary), "live", "optimized") && p.OnPort(s.PortOf(primary))?.State != "live", TimeSpan.FromSeconds(60));
        s.Note($"guest paths {killed.Elapsed.TotalSeconds:F1} s after the kill:\n{moved.Text}");

        var fio = s.ExpectCleanFio(await s.Guest.WaitForFioAsync("kill", FioBound), $"kill -9 of the primary of {s.Volume.Replicas.Count} replicas");
        Assert.That(fio.StallSeconds, Is.LessThanOrEqualTo(KillStallLimit.TotalSeconds), fio.Summary);
        return promoted;
    }

    private static async Task KillAReplicaAsync(ClusterScenario s)
    {
        var current = await s.Cluster.GetVolumeAsync(s.Volume.Name);
        var replica = current.Replicas.Select(r => r.Node).First(n => n != current.Primary);
        await s.Guest.StartFioAsync("replica-kill", s.Device, ReplicaKillFioSeconds);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var killed = Stopwatch.StartNew();
        await s.Cluster[replica].KillAsync();
        s.Note($"killed the replica {replica} (SIGKILL); primary {current.Primary}");
        var dropped = await s.Cluster.WaitForVolumeAsync(s.Volume.Name, $"{replica} recorded out of sync",
            v => v.Replicas.Any(r => r.Node == replica && r.State != "in-sync"), TimeSpan.FromSeconds(60));
        s.Note($"record {killed.Elapsed.TotalSeconds:F1} s after the kill: primary {dropped.Primary} at epoch {dropped.Epoch}; {string.Join(", ", dropped.Replicas.Select(r => $"{r.Node}={r.State}"))}");
        Assert.That(dropped.Primary, Is.EqualTo(current.Primary), "a replica's loss moves no primary");

        var fio = s.ExpectCleanFio(await s.Guest.WaitForFioAsync("replica-kill", FioBound), "kill -9 of a replica");
        Assert.That(fio.StallSeconds, Is.LessThanOrEqualTo(KillStallLimit.TotalSeconds), fio.Summary);
        await s.RestartAndRebuildAsync(replica);
    }

    private static async Task FreezeThePrimaryAsync(ClusterScenario s, string[] nodes)
    {
        var current = await s.Cluster.GetVolumeAsync(s.Volume.Name);
        var frozenNode = current.Primary;
        var blockSize = (int)s.Volume.BlockSize;
        // A 4 KiB block past fio's 32 MiB: never written but by the late write below.
        const long LateOffset = 40L << 20;
        await s.Guest.StartFioAsync("freeze", s.Device, FreezeFioSeconds);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var frozen = Stopwatch.StartNew();
        s.Cluster[frozenNode].Pause();
        s.Note($"froze the primary {frozenNode} (SIGSTOP); lease TTL 2 s");
        var promoted = await s.WaitForNewPrimaryAsync(frozenNode, current.Epoch);
        s.Note($"record: {promoted.Primary} primary at epoch {promoted.Epoch}, {frozen.Elapsed.TotalSeconds:F1} s after the freeze");

        // Sent after the promotion down the frozen node's path: it sits in that node's socket until the node runs again
        // (or the guest gives up on the path). The node thaws 6 s after the freeze, and at least 3 s after the promotion
        // was seen, so the command waits for it.
        var promotedAt = frozen.Elapsed;
        var thawAt = TimeSpan.FromSeconds(Math.Max(6, promotedAt.TotalSeconds + 3));
        var thaw = Task.Run(async () =>
        {
            var remaining = thawAt - frozen.Elapsed;
            if (remaining > TimeSpan.Zero)
            {
                await Task.Delay(remaining);
            }

            s.Cluster[frozenNode].Resume();
            s.Note($"thawed {frozenNode} (SIGCONT) after {frozen.Elapsed.TotalSeconds:F1} s");
        });
        var late = await s.Guest.TryShellAsync($"""
            dd if=/dev/urandom of=/tmp/late bs=4096 count=1 2>/dev/null
            c=$(ctrl_of {s.Nqn} {s.PortOf(frozenNode)})
            echo "CTRL=$c STATE=$(cat /sys/class/nvme/$(basename $c)/state)"
            nvme io-passthru $c --opcode=0x01 --namespace-id=1 --data-len=4096 --write --input-file=/tmp/late \
                --cdw10={LateOffset / blockSize} --cdw11=0 --cdw12={4096 / blockSize - 1} --timeout=60000 2>&1
            echo "PASSTHRU_RC=$?"
            """, TimeSpan.FromMinutes(3));
        await thaw;
        s.Note("a write the guest sent down the frozen node's path after the promotion:\n" + late.Output.Trim());
        var rc = System.Text.RegularExpressions.Regex.Match(late.Output, @"PASSTHRU_RC=(\d+)");
        Assert.That(rc.Success, Is.True, late.Output);
        Assert.That(rc.Groups[1].Value, Is.Not.EqualTo("0"), "the old primary completed a write after the promotion");

        // The guest's commands in flight on the frozen path wait for the node (or for its keep-alive timeout, 5 s): the
        // stall lasts about as long as the freeze, not longer.
        var fio = s.ExpectCleanFio(await s.Guest.WaitForFioAsync("freeze", FioBound), $"SIGSTOP of the primary for {thawAt.TotalSeconds:F0} s");
        Assert.That(fio.StallSeconds, Is.LessThanOrEqualTo(thawAt.TotalSeconds + 4), fio.Summary);
        await s.WaitForAllInSyncAsync(TimeSpan.FromMinutes(2));
        await s.ExpectPathsAsync(promoted.Primary, nodes, $"after {frozenNode} ran again");
        var sums = (await s.Guest.ShellAsync($"dd if={s.Device} bs=4096 skip={LateOffset / 4096} count=1 iflag=direct 2>/dev/null | md5sum; md5sum /tmp/late"))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]).ToArray();
        s.Note("the late block on the volume and the late write's data: " + string.Join(" ", sums));
        Assert.That(sums[0], Is.Not.EqualTo(sums[1]), "the write sent to the old primary after the promotion is on the volume");
        await s.VerifyIdenticalAsync();
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
