using System.Diagnostics;
using System.Globalization;
using System.Net;
using Csi.V1;
using CsiNvme.Protocol.Logs;
using CsiNvme.Storage;
using CsiNvme.TestSupport;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// The node plugin in a Linux guest against a volume exported by two (then three) storage nodes the way the cluster
/// exports it (<see cref="ReplicaTarget"/>: one subsystem, disjoint controller ids, an ANA group per node, each node's
/// discovery log listing the others), with the kernel's native NVMe multipath: one device with a path per node, a node
/// lost and back (the kernel drops the path, the path keeper connects it again), a node added later (found in the
/// discovery log, and from then on a replica the volume should have a live path to), and a failover to the other node's path under fio.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class NodeMultipathEndToEndTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:e2e-multipath";
    private const string VolumeId = "e2e-multipath";
    private const string Staging = "/csi-e2e/staging/" + VolumeId;
    private const string Target = "/csi-e2e/pods/pod-mp/volumeDevices/" + VolumeId;
    private const int KeeperPeriodSeconds = 5;
    private const int CtrlLossTmoSeconds = 10;
    private const string Metrics = "wget -q -O - http://127.0.0.1:9101/metrics";

    // Controllers of the volume's subsystem with their state, listener and ANA state, one line each.
    private const string PathsCommand = """
        for c in /sys/class/nvme/nvme*; do
            [ -e "$c/subsysnqn" ] || continue
            [ "$(cat $c/subsysnqn)" = "nqn.2026-11.io.csinvme:volume:e2e-multipath" ] || continue
            echo "PATH ${c##*/} $(cat $c/state) port=$(sed -n 's/.*trsvcid=\([0-9]*\).*/\1/p' $c/address) ana=$(cat $c/nvme*c*n*/ana_state 2>/dev/null || echo none)"
        done
        echo "HEADS=$(ls /sys/block | grep -cE '^nvme[0-9]+n[0-9]+$')"
        """;

    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [OneTimeTearDown]
    public void RemovePublishedBinary() => GuestCsiBinary.Cleanup();

    [Test]
    public async Task A_volume_on_two_nodes_is_one_device_whose_paths_the_node_keeps_whole()
    {
        var volumeId = Guid.NewGuid();
        using var volume = new MemoryBlockVolume(64L << 20, 512);
        var a = ReplicaTarget.Start(0, Nqn, volumeId, volume, AnaState.Optimized);
        var b = ReplicaTarget.Start(1, Nqn, volumeId, volume, AnaState.Inaccessible);
        ReplicaTarget? c = null;
        var guestHost = IPAddress.Parse(LinuxGuest.HostAddress);
        a.SetPeers(guestHost, b);
        b.SetPeers(guestHost, a);
        var log = new List<string>();
        await using var guest = await GuestNode.StartAsync("guest-mp", TimeSpan.FromMinutes(15),
            $"--metrics-listen=127.0.0.1:9101 --path-keeper-period={KeeperPeriodSeconds} " +
            $"--multipath-ctrl-loss-tmo={CtrlLossTmoSeconds} --multipath-reconnect-delay=2");
        try
        {
            // ---- Stage: one device, a path per node ----
            var capability = Block(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter);
            var publishContext = new Dictionary<string, string>
            {
                ["nqn"] = Nqn,
                ["targets"] = $"{LinuxGuest.HostAddress}:{a.Port},{LinuxGuest.HostAddress}:{b.Port}",
                ["uuid"] = volumeId.ToString(),
            };
            var volumeContext = new Dictionary<string, string> { ["replicas"] = "2" };
            await guest.ShellAsync($"mkdir -p {Staging} {Path.GetDirectoryName(Target)}");
            await guest.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest
            {
                VolumeId = VolumeId, StagingTargetPath = Staging, VolumeCapability = capability,
                PublishContext = { publishContext }, VolumeContext = { volumeContext },
            });
            await guest.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
            {
                VolumeId = VolumeId, StagingTargetPath = Staging, TargetPath = Target, VolumeCapability = capability,
                PublishContext = { publishContext }, VolumeContext = { volumeContext },
            });

            var staged = await guest.ShellAsync(PathsCommand + "\n" + """
                nvme list-subsys
                c=$(ls -d /sys/class/nvme/nvme* | head -1)
                echo "CTRL_LOSS_TMO=$(cat $c/ctrl_loss_tmo) FAST_IO_FAIL_TMO=$(cat $c/fast_io_fail_tmo)"
                """);
            log.Add("staged:\n" + staged);
            Assert.Multiple(() =>
            {
                Assert.That(Value(staged, "HEADS"), Is.EqualTo("1"), "one multipath device:\n" + staged);
                Assert.That(staged, Does.Contain($"live port={a.Port} ana=optimized"));
                Assert.That(staged, Does.Contain($"live port={b.Port} ana=inaccessible"));
                Assert.That(staged, Does.Contain(Nqn), "nvme list-subsys names the subsystem");
                Assert.That(CountLines(staged, "PATH "), Is.EqualTo(2));
                Assert.That(Value(staged, "CTRL_LOSS_TMO"), Does.StartWith(CtrlLossTmoSeconds.ToString(CultureInfo.InvariantCulture)), "the multipath flag");
                Assert.That(staged, Does.Contain("FAST_IO_FAIL_TMO=off"), "multipath default -1: I/O waits for a path");
            });
            await ExpectConditionAsync(guest, abnormal: false, "2 live paths for 2 replicas");

            var fio = await Fio(guest, "first");
            log.Add(fio);

            // ---- A node is lost: the kernel drops its path after ctrl_loss_tmo ----
            var bPort = b.Port;
            await b.DisposeAsync();
            await WaitForAsync(guest, $"path to port {bPort} given up", PathsCommand, output => !output.Contains($"port={bPort}", StringComparison.Ordinal), TimeSpan.FromSeconds(120));
            var lost = await ExpectConditionAsync(guest, abnormal: true, "1 live path for 2 replicas");
            Assert.That(lost.Message, Does.Contain($"{LinuxGuest.HostAddress}:{bPort} (not connected)"), lost.Message);
            Assert.That(await guest.ShellAsync(Metrics), Does.Contain($"csinvme_node_volume_degraded{{volume=\"{VolumeId}\"}} 1"));
            log.Add(await Fio(guest, "one path"));

            // ---- It comes back on the same port: the keeper connects it within its period ----
            b = ReplicaTarget.Start(1, Nqn, volumeId, volume, AnaState.Inaccessible, bPort);
            b.SetPeers(guestHost, a);
            var back = Stopwatch.StartNew();
            await WaitForAsync(guest, "path reconnected by the keeper", PathsCommand, output => output.Contains($"live port={bPort} ana=inaccessible", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
            var reconnectSeconds = back.Elapsed.TotalSeconds;
            log.Add($"keeper reconnected the path {reconnectSeconds:F1} s after the node was back (period {KeeperPeriodSeconds} s)");
            await ExpectConditionAsync(guest, abnormal: false, "2 live paths for 2 replicas");
            var metrics = await guest.ShellAsync(Metrics);
            Assert.Multiple(() =>
            {
                Assert.That(metrics, Does.Contain($"csinvme_node_path_reconnects_total{{volume=\"{VolumeId}\"}} 1"));
                Assert.That(metrics, Does.Contain($"csinvme_node_volume_paths{{volume=\"{VolumeId}\",state=\"live\",ana_state=\"inaccessible\"}} 1"));
                Assert.That(metrics, Does.Contain($"csinvme_node_volume_degraded{{volume=\"{VolumeId}\"}} 0"));
            });

            // ---- A third node: listed by the others' discovery logs, connected without restaging ----
            c = ReplicaTarget.Start(2, Nqn, volumeId, volume, AnaState.Inaccessible);
            a.SetPeers(guestHost, b, c);
            b.SetPeers(guestHost, a, c);
            c.SetPeers(guestHost, a, b);
            var third = await WaitForAsync(guest, "third path from the discovery log", PathsCommand, output => output.Contains($"live port={c.Port} ana=inaccessible", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
            log.Add("three paths:\n" + third);
            Assert.That(CountLines(third, "PATH "), Is.EqualTo(3), third);
            Assert.That(Value(third, "HEADS"), Is.EqualTo("1"));
            // Staged with two replicas; the logs list three now (a replica added, as ControllerModifyVolume does): three expected.
            await ExpectConditionAsync(guest, abnormal: false, "3 live paths for 3 replicas");
            Assert.That(await guest.ShellAsync(Metrics), Does.Contain($"csinvme_node_volume_replicas{{volume=\"{VolumeId}\"}} 3"));

            // ---- Failover under I/O: A goes, B becomes optimized, fio sees no error ----
            await guest.ShellAsync($"""
                rm -f /tmp/fo.out /tmp/fo.rc /tmp/fo_iops*
                (fio --name=failover --filename={Target} --ioengine=libaio --direct=1 --iodepth=4 --rw=randwrite --bs=4k \
                     --offset=32M --size=8M --time_based --runtime=25 --verify=crc32c --verify_backlog=128 --verify_fatal=1 \
                     --write_iops_log=/tmp/fo --log_avg_msec=1000 --output=/tmp/fo.out; echo "FIO_RC=$?" > /tmp/fo.rc) >/dev/null 2>&1 &
                echo started
                """);
            await Task.Delay(TimeSpan.FromSeconds(6));
            await a.DisposeAsync();
            await Task.Delay(TimeSpan.FromSeconds(2));
            b.Subsystem.SetAnaState(AnaState.Optimized);
            var failover = await WaitForAsync(guest, "fio under failover", "cat /tmp/fo.rc 2>/dev/null; cat /tmp/fo.out 2>/dev/null | grep -E 'err=|WRITE:|verify' ; awk -F, '{ t=$1+0; if (p != \"\" && t - p > g) g = t - p; p = t } END { print \"LONGEST_GAP_MS=\" g }' /tmp/fo_iops.1.log 2>/dev/null",
                output => output.Contains("FIO_RC=", StringComparison.Ordinal), TimeSpan.FromSeconds(120));
            log.Add("failover:\n" + failover);
            Assert.Multiple(() =>
            {
                Assert.That(Value(failover, "FIO_RC"), Is.EqualTo("0"), failover);
                Assert.That(failover, Does.Contain("err= 0"), failover);
            });
            var afterFailover = await guest.ShellAsync(PathsCommand);
            log.Add("after failover:\n" + afterFailover);
            Assert.That(afterFailover, Does.Contain($"live port={b.Port} ana=optimized"));

            // ---- Unstage: nothing left ----
            await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = VolumeId, TargetPath = Target });
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = VolumeId, StagingTargetPath = Staging });
            Assert.That(await guest.ShellAsync(LeftoversCommand), Does.Contain(NothingLeft));
            Assert.That(await guest.ShellAsync(Metrics), Does.Not.Contain($"volume=\"{VolumeId}\""), "an unstaged volume's series are gone");
            TestContext.Out.WriteLine(string.Join("\n", log));
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(string.Join("\n", log));
            await guest.StopAsync();
            TestContext.Out.WriteLine(guest.Describe());
            throw;
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            if (c is not null)
            {
                await c.DisposeAsync();
            }
        }

        async Task<VolumeCondition> ExpectConditionAsync(GuestNode node, bool abnormal, string says)
        {
            var stats = await node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = VolumeId, VolumePath = Target, StagingTargetPath = Staging });
            Assert.That(stats.VolumeCondition.Abnormal, Is.EqualTo(abnormal), stats.VolumeCondition.Message);
            Assert.That(stats.VolumeCondition.Message, Does.Contain(says));
            log.Add($"condition: abnormal={stats.VolumeCondition.Abnormal} {stats.VolumeCondition.Message}");
            return stats.VolumeCondition;
        }
    }

    /// <summary>A short random-write run whose every block fio verifies by its crc32c; fails on any error.</summary>
    private static async Task<string> Fio(GuestNode guest, string name)
    {
        var output = await guest.ShellAsync($"""
            fio --name={name.Replace(' ', '-')} --filename={Target} --ioengine=libaio --direct=1 --iodepth=8 --rw=randwrite --bs=4k \
                --offset=0 --size=8M --verify=crc32c --verify_fatal=1 --output=/tmp/fio.out
            grep -E 'err=|WRITE:' /tmp/fio.out
            """, TimeSpan.FromMinutes(4));
        Assert.That(output, Does.Contain("err= 0"), output);
        return $"fio ({name}): {output.Trim()}";
    }

    /// <summary>Runs <paramref name="command"/> in the guest every 2 s until <paramref name="done"/> holds for its output (bounded).</summary>
    private static async Task<string> WaitForAsync(GuestNode guest, string what, string command, Func<string, bool> done, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        var output = string.Empty;
        while (DateTime.UtcNow < deadline)
        {
            // The exit code says nothing here (a file not written yet): the output decides.
            output = (await guest.TryShellAsync(command)).Output;
            if (done(output))
            {
                return output;
            }

            await Task.Delay(TimeSpan.FromSeconds(2));
        }

        throw new TimeoutException($"{what}: not within {within.TotalSeconds:F0} s; last output:\n{output}");
    }

    private static int CountLines(string output, string prefix) => output.Split('\n').Count(l => l.StartsWith(prefix, StringComparison.Ordinal));
}
