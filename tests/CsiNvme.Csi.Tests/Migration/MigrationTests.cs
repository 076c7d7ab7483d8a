using System.Diagnostics;
using Csi.V1;
using CsiNvme.Api.V1;
using CsiNvme.Csi.Tests.EndToEnd;
using CsiNvme.TestSupport;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;
using CsiVolume = Csi.V1.Volume;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>
/// Live migration with two Linux guests as the source and destination node (one boot for the fixture): the fencing
/// of the source by ControllerUnpublishVolume, and the migration harness (<see cref="MigrationExperiment"/>) on a
/// single server, short, in CI, and a drain that moves a volume with one replica on a three-node cluster while the
/// source guest writes. The migration on the cluster, and under storage events (a node killed, the primary drained),
/// run when CSINVME_MIGRATION_CLUSTER=1 (each adds a few minutes of QEMU time), as tools/migration/run.sh does;
/// CSINVME_MIGRATION_PLAN=full|short, CSINVME_MIGRATION_OUT=DIR.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class MigrationTests
{
    private const string Devices = "/csi-e2e/pods/vm/volumeDevices";
    private static readonly VolumeCapability _capability = Block(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter);
    private GuestNode? _source;
    private GuestNode? _destination;

    private GuestNode Source => _source!;

    private GuestNode Destination => _destination!;

    /// <summary>Where reports go: CSINVME_MIGRATION_OUT, or the test run's work directory.</summary>
    private static string OutputDirectory =>
        Environment.GetEnvironmentVariable("CSINVME_MIGRATION_OUT") is { Length: > 0 } dir
            ? Path.GetFullPath(dir)
            : Path.Combine(TestContext.CurrentContext.WorkDirectory, "migration-results");

    [OneTimeSetUp]
    public async Task BootGuests()
    {
        await LinuxGuest.RequireAsync();
        var nodeArguments = "--path-keeper-period=5 --multipath-reconnect-delay=2 --multipath-ctrl-loss-tmo=60";
        // CSINVME_MIGRATION_PIN=1 (tools/migration/run.sh, which runs the test, and so the storage, on CPU 1): the
        // source guest gets CPU 0 to itself, so the destination's staging takes no CPU from it (two nodes of a real
        // cluster share no CPU); the destination guest shares CPU 1 with the storage, so what it costs the storage counts.
        // (Not Environment.ProcessorCount: it counts the CPUs this process may use, one under run.sh's taskset.)
        var pin = Environment.GetEnvironmentVariable("CSINVME_MIGRATION_PIN") == "1";
        var source = GuestNode.StartAsync("mig-source", TimeSpan.FromMinutes(120), nodeArguments, hostCpu: pin ? 0 : null);
        var destination = GuestNode.StartAsync("mig-destination", TimeSpan.FromMinutes(120), nodeArguments, hostCpu: pin ? 1 : null);
        try
        {
            _source = await source;
        }
        finally
        {
            _destination = await destination;
        }
    }

    [OneTimeTearDown]
    public async Task StopGuests()
    {
        foreach (var guest in new[] { _source, _destination })
        {
            if (guest is not null)
            {
                await guest.DisposeAsync();
            }
        }

        GuestCsiBinary.Cleanup();
    }

    [TestCase("single")]
    [TestCase("cluster")]
    public async Task ControllerUnpublish_fences_the_source_nothing_it_writes_lands_after_the_call_returned(string setup)
    {
        RequireClusterRunsFor(setup);
        await using var storage = setup == "single" ? await MigrationStorage.SingleServerAsync() : await MigrationStorage.ClusterAsync();
        var sourceId = (await Source.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var destinationId = (await Destination.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var request = Create($"fence-{setup}", 16 * MiB, _capability);
        request.Parameters.Clear();
        request.Parameters.Add(storage.VolumeParameters);
        // A cluster volume's default (fast_io_fail_tmo off) has the fenced source's writes wait for a path until
        // ctrl_loss_tmo instead of failing, and its blocked writers keep the device busy at NodeUnpublish: here its
        // writes are to fail, as on a single server.
        request.Parameters["fastIoFailTmo"] = "5";
        var volume = (await storage.Controller.CreateVolumeAsync(request)).Volume;
        const string target = Devices + "/fence";
        try
        {
            foreach (var (guest, nodeId) in new[] { (Source, sourceId), (Destination, destinationId) })
            {
                await AttachAsync(storage, guest, nodeId, volume, target);
            }

            // Four writers on the source, each rewriting its own 256 blocks with sequence-numbered 4 KiB blocks
            // (O_DIRECT), and one on the destination in a range of its own.
            await Source.ShellAsync(string.Join("\n", Enumerable.Range(0, 4).Select(w => WriterCommand(w, w * 256, 256, target))));
            await Destination.ShellAsync(WriterCommand(9, 2048, 256, target));
            await WaitForOksAsync(Source, 4, 40);
            await WaitForOksAsync(Destination, 1, 10);

            var watch = Stopwatch.StartNew();
            await storage.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = sourceId });
            var unpublishSeconds = watch.Elapsed.TotalSeconds;
            var atReturn = await Destination.ShellAsync(SourceBlocksCommand(target));
            await Task.Delay(TimeSpan.FromSeconds(1));
            var sourceAtReturn = await Source.ShellAsync(WriterCountsCommand);
            var destinationAtReturn = await Destination.ShellAsync(WriterCountsCommand);
            // Past the source's fast_io_fail_tmo (5 s): the writes it had queued have failed by now.
            await Task.Delay(TimeSpan.FromSeconds(9));
            var later = await Destination.ShellAsync(SourceBlocksCommand(target));
            var sourceLater = await Source.ShellAsync(WriterCountsCommand);
            var destinationLater = await Destination.ShellAsync(WriterCountsCommand + "\n" + $"""
                dd if=/dev/urandom of=/tmp/fence-pattern bs=1M count=1 2>/dev/null
                dd if=/tmp/fence-pattern of={target} bs=1M seek=12 oflag=direct conv=fsync 2>/dev/null
                echo "WROTE=$(md5sum < /tmp/fence-pattern | cut -d' ' -f1)"
                echo "READ=$(dd if={target} bs=1M skip=12 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
                """);
            var connected = (await storage.Management.GetVolumeAsync(new GetVolumeRequest { Name = volume.VolumeId })).ConnectedHosts;
            TestContext.Out.WriteLine($"ControllerUnpublish took {unpublishSeconds:F2} s\nsource blocks at return:\n{Summary(atReturn)}\nsource writers at +1 s: {sourceAtReturn}" +
                $"source writers at +10 s: {sourceLater}destination writer at +1 s: {destinationAtReturn}destination at +10 s: {destinationLater}");

            Assert.Multiple(() =>
            {
                Assert.That(Lines(atReturn), Has.Count.GreaterThan(40), "the source's blocks are on the volume");
                Assert.That(Lines(later), Is.EqualTo(Lines(atReturn)), "no block of the source changed after ControllerUnpublish returned");
                foreach (var w in Enumerable.Range(0, 4))
                {
                    Assert.That(Count(sourceLater, $"W{w}_OK"), Is.EqualTo(Count(sourceAtReturn, $"W{w}_OK")), $"source writer {w} completed no write after the call");
                    Assert.That(Count(sourceLater, $"W{w}_FAIL"), Is.GreaterThan(0), $"source writer {w}'s later writes fail");
                }

                Assert.That(Count(destinationLater, "W9_FAIL"), Is.Zero, "the destination's writes never failed");
                Assert.That(Count(destinationLater, "W9_OK"), Is.GreaterThan(Count(destinationAtReturn, "W9_OK")), "the destination kept writing");
                Assert.That(Value(destinationLater, "READ"), Is.EqualTo(Value(destinationLater, "WROTE")), "the destination reads what it wrote");
                Assert.That(connected, Is.EqualTo(new[] { destinationId }), "only the destination is connected");
            });
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(Source.Describe() + "\n" + Destination.Describe() + "\n" + storage.OutputTail());
            throw;
        }
        finally
        {
            foreach (var guest in new[] { Source, Destination })
            {
                await guest.TryShellAsync("touch /tmp/fence/stop; sleep 1");
            }

            foreach (var (guest, nodeId) in new[] { (Source, sourceId), (Destination, destinationId) })
            {
                await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
                await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = Staging(volume) });
                await storage.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId });
                await guest.TryShellAsync("rm -rf /tmp/fence");
            }

            await storage.Controller.DeleteVolumeAsync(new global::Csi.V1.DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }
    }

    [Test]
    public Task A_migration_on_a_single_server_keeps_every_disk_serving_without_errors() =>
        MigrateAsync("single", Plan("mig-single"), () => MigrationStorage.SingleServerAsync());

    [Test]
    public Task A_migration_on_a_three_node_cluster_keeps_every_disk_serving_without_errors()
    {
        RequireClusterRunsFor("cluster");
        return MigrateAsync("cluster", Plan("mig-cluster"), () => MigrationStorage.ClusterAsync());
    }

    [Test]
    public Task A_migration_with_a_storage_node_killed_during_pre_copy_loses_nothing()
    {
        RequireClusterRunsFor("cluster");
        return MigrateAsync("cluster-kill", Plan("mig-kill", StorageEvent.KillNodeDuringPrecopy), () => MigrationStorage.ClusterAsync());
    }

    [Test]
    public Task A_migration_with_the_primary_drained_during_pre_copy_loses_nothing()
    {
        RequireClusterRunsFor("cluster");
        return MigrateAsync("cluster-drain", Plan("mig-drain", StorageEvent.DrainPrimaryDuringPrecopy), () => MigrationStorage.ClusterAsync());
    }

    /// <summary>The cluster variants run only when asked (CSINVME_MIGRATION_CLUSTER=1): the CI runs the single server's.</summary>
    [Test]
    public async Task A_drain_moves_a_volume_with_one_replica_while_the_host_writes_without_an_error()
    {
        // In CI too (about a minute of guest time): the only kernel-host check of a volume with one replica moving.
        await using var storage = await MigrationStorage.ClusterAsync();
        var sourceId = (await Source.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var request = Create("drain-single", 64 * MiB, _capability);
        request.Parameters.Clear();
        request.Parameters.Add(storage.VolumeParameters);
        request.Parameters["replicas"] = "1";
        var volume = (await storage.Controller.CreateVolumeAsync(request)).Volume;
        const string target = Devices + "/drain-single";
        var primary = await storage.PrimaryOfAsync(volume.VolumeId);
        try
        {
            await AttachAsync(storage, Source, sourceId, volume, target);
            await StartVerifiedWritesAsync(Source, "drain", target, runtimeSeconds: 60);
            await Task.Delay(TimeSpan.FromSeconds(8));

            // The drain gives the volume a second replica on an active node and rebuilds it while fio writes; the
            // handover waits until the guest has a path to it.
            var watch = Stopwatch.StartNew();
            await storage.NodeApi.DrainNodeAsync(new NodeRequest { Name = primary });
            var added = await WaitForVolumeAsync(storage, volume.VolumeId, v => v.Replicas.Count == 2);
            var newNode = added.Replicas.Single(r => r.Node != primary).Node;
            var listener = (await storage.NodeApi.ListNodesAsync(new ListNodesRequest())).Nodes.Single(n => n.Name == newNode).NvmeListenAddresses[0];

            // The guest's path keeper finds the new replica's listener in the discovery log and connects it; the
            // handover waits for that.
            Assert.That(listener, Does.StartWith(LinuxGuest.HostAddress + ":"), "the node list names the address hosts use");
            var port = listener[(listener.LastIndexOf(':') + 1)..];
            var moved = await WaitForVolumeAsync(storage, volume.VolumeId, v => v.Primary == newNode && v.Replicas.Count == 1);
            var movedSeconds = watch.Elapsed.TotalSeconds;

            var fio = await VerifiedWritesResultAsync(Source, "drain", TimeSpan.FromMinutes(3));

            var paths = await Source.ShellAsync("for c in /sys/class/nvme/nvme*; do [ -e $c/subsysnqn ] && echo \"PATH $(cat $c/state) $(cat $c/address) ana=$(cat $c/nvme*c*n*/ana_state 2>/dev/null || echo none)\"; done; true");
            TestContext.Out.WriteLine($"moved from {primary} to {moved.Primary} in {movedSeconds:F1} s\n{fio}\n{paths}");
            Assert.Multiple(() =>
            {
                Assert.That(Value(fio, "FIO_RC"), Is.EqualTo("0"), fio);
                Assert.That(fio, Does.Contain("err= 0"), fio);
                Assert.That(paths, Does.Contain($"live traddr={LinuxGuest.HostAddress},trsvcid={port}").And.Contain("ana=optimized"), "the guest's path to the new primary");
                Assert.That(storage.Nodes[primary].Output, Does.Not.Contain("though hosts"), "the handover found the guest's path there, connected by its keeper");
            });
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(Source.Describe() + "\n" + storage.OutputTail());
            throw;
        }
        finally
        {
            await storage.NodeApi.UndrainNodeAsync(new NodeRequest { Name = primary });
            await DetachAndDeleteAsync(storage, Source, sourceId, volume, target);
        }
    }

    [Test]
    public async Task ControllerModifyVolume_adds_and_removes_replicas_while_the_host_writes_and_the_host_follows_the_paths()
    {
        // In CI too: the kernel host's side of a VolumeAttributesClass change (its node plugin connects and drops paths).
        await using var storage = await MigrationStorage.ClusterAsync();
        var sourceId = (await Source.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var request = Create("modify-replicas", 64 * MiB, _capability);
        request.Parameters.Clear();
        request.Parameters.Add(storage.VolumeParameters);
        request.MutableParameters["replicas"] = "1";
        var volume = (await storage.Controller.CreateVolumeAsync(request)).Volume;
        const string target = Devices + "/modify-replicas";
        var nqn = volume.VolumeContext["nqn"];
        var pathsCommand = $"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn 2>/dev/null)\" = \"{nqn}\" ] && " +
                           "echo \"PATH $(cat $c/state) $(cat $c/address) ana=$(cat $c/nvme*c*n*/ana_state 2>/dev/null || echo none)\"; done; true";
        var log = new List<string>();
        try
        {
            await AttachAsync(storage, Source, sourceId, volume, target);
            await StartVerifiedWritesAsync(Source, "modify", target, runtimeSeconds: 45);
            await Task.Delay(TimeSpan.FromSeconds(5));

            async Task FollowAsync(int replicas)
            {
                await storage.Controller.ControllerModifyVolumeAsync(new ControllerModifyVolumeRequest
                {
                    VolumeId = volume.VolumeId, MutableParameters = { ["replicas"] = replicas.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                });
                var watch = Stopwatch.StartNew();
                await WaitForVolumeAsync(storage, volume.VolumeId, v => v.Replicas.Count == replicas && v.Replicas.All(r => r.State == "in-sync"));
                var inSync = watch.Elapsed.TotalSeconds;
                var paths = "";
                var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
                while (DateTime.UtcNow < deadline)
                {
                    paths = (await Source.TryShellAsync(pathsCommand)).Output;
                    var lines = paths.Split('\n').Where(l => l.StartsWith("PATH ", StringComparison.Ordinal)).ToList();
                    if (lines.Count == replicas && lines.All(l => l.StartsWith("PATH live", StringComparison.Ordinal)))
                    {
                        break;
                    }

                    await Task.Delay(2000);
                }

                var stats = await Source.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target, StagingTargetPath = Staging(volume) });
                log.Add($"replicas {replicas}: in sync after {inSync:F1} s, host paths after {watch.Elapsed.TotalSeconds:F1} s\n{paths.Trim()}\ncondition: {stats.VolumeCondition.Message}");
                Assert.That(paths.Split('\n').Count(l => l.StartsWith("PATH live", StringComparison.Ordinal)), Is.EqualTo(replicas), paths);
                Assert.That(paths.Split('\n').Count(l => l.StartsWith("PATH ", StringComparison.Ordinal)), Is.EqualTo(replicas), "no path left to a removed replica:\n" + paths);
                Assert.That(paths, Does.Contain("ana=optimized"));
                Assert.That(stats.VolumeCondition.Abnormal, Is.False, stats.VolumeCondition.Message);
                Assert.That(stats.VolumeCondition.Message, Does.Contain($"{replicas} live paths for {replicas} replicas"));
            }

            await FollowAsync(3);
            await FollowAsync(2);

            // fio writes on for its 45 s (the changes above take seconds here; on a busy machine it may end before them).
            var fio = await VerifiedWritesResultAsync(Source, "modify", TimeSpan.FromMinutes(4));

            log.Add(fio);
            TestContext.Out.WriteLine(string.Join("\n", log));
            Assert.That(Value(fio, "FIO_RC"), Is.EqualTo("0"), fio);
            Assert.That(fio, Does.Contain("err= 0"), fio);
            var verify = await storage.Management.VerifyVolumeAsync(new VerifyVolumeRequest { Name = volume.VolumeId });
            Assert.That(verify.Identical, Is.True, verify.ToString());
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(string.Join("\n", log) + "\n" + Source.Describe() + "\n" + storage.OutputTail());
            throw;
        }
        finally
        {
            await DetachAndDeleteAsync(storage, Source, sourceId, volume, target);
        }
    }

    /// <summary>
    /// Starts fio in the background on <paramref name="target"/>: 4 KiB random writes at QD4 over 16 MiB, every block read
    /// back against its crc32c (verify_backlog), IOPS logged each second; files /tmp/NAME*.
    /// </summary>
    private static Task StartVerifiedWritesAsync(GuestNode guest, string name, string target, int runtimeSeconds) => guest.ShellAsync($"""
        rm -f /tmp/{name}.out /tmp/{name}.rc /tmp/{name}_iops*
        (fio --name={name} --filename={target} --ioengine=libaio --direct=1 --iodepth=4 --rw=randwrite --bs=4k \
             --size=16M --time_based --runtime={runtimeSeconds} --verify=crc32c --verify_backlog=128 --verify_fatal=1 \
             --write_iops_log=/tmp/{name} --log_avg_msec=1000 --output=/tmp/{name}.out; echo "FIO_RC=$?" > /tmp/{name}.rc) >/dev/null 2>&1 &
        echo started
        """);

    /// <summary>fio's exit code (FIO_RC=), its err= and WRITE: lines and the longest gap between IOPS samples, once it ended (bounded).</summary>
    private static async Task<string> VerifiedWritesResultAsync(GuestNode guest, string name, TimeSpan within)
    {
        var fio = "";
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline && !fio.Contains("FIO_RC=", StringComparison.Ordinal))
        {
            await Task.Delay(2000);
            fio = (await guest.TryShellAsync($"cat /tmp/{name}.rc 2>/dev/null; grep -E 'err=|WRITE:|verify' /tmp/{name}.out 2>/dev/null; " +
                "awk -F, '{ t=$1+0; if (p != \"\" && t - p > g) g = t - p; p = t } END { print \"LONGEST_GAP_MS=\" g }' " + $"/tmp/{name}_iops.1.log 2>/dev/null")).Output;
        }

        return fio;
    }

    /// <summary>Stops the guest's fio, unpublishes and unstages the volume there, unpublishes it from the node and deletes it.</summary>
    private static async Task DetachAndDeleteAsync(MigrationStorage storage, GuestNode guest, string nodeId, CsiVolume volume, string target)
    {
        await guest.TryShellAsync("pkill fio; sleep 1");
        await guest.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
        await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = Staging(volume) });
        await storage.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId });
        await storage.Controller.DeleteVolumeAsync(new global::Csi.V1.DeleteVolumeRequest { VolumeId = volume.VolumeId });
    }

    private static async Task<global::CsiNvme.Api.V1.Volume> WaitForVolumeAsync(MigrationStorage storage, string name, Func<global::CsiNvme.Api.V1.Volume, bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        var volume = await storage.Management.GetVolumeAsync(new GetVolumeRequest { Name = name });
        while (!condition(volume) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(1000);
            volume = await storage.Management.GetVolumeAsync(new GetVolumeRequest { Name = name });
        }

        Assert.That(condition(volume), Is.True, $"volume {name} never reached the expected state: {volume}");
        return volume;
    }

    private static void RequireClusterRunsFor(string setup)
    {
        if (setup != "single" && Environment.GetEnvironmentVariable("CSINVME_MIGRATION_CLUSTER") != "1")
        {
            Assert.Ignore("the cluster variants of the migration run with CSINVME_MIGRATION_CLUSTER=1 (tools/migration/run.sh)");
        }
    }

    private static MigrationPlan Plan(string name, StorageEvent storageEvent = StorageEvent.None) =>
        Environment.GetEnvironmentVariable("CSINVME_MIGRATION_PLAN") == "full" ? MigrationPlan.Full(name, storageEvent) : MigrationPlan.Short(name, storageEvent);

    private async Task MigrateAsync(string reportName, MigrationPlan plan, Func<Task<MigrationStorage>> start)
    {
        await using var storage = await start();
        MigrationReport report;
        var watch = Stopwatch.StartNew();
        try
        {
            report = await new MigrationExperiment(storage, Source, Destination, plan).RunAsync();
        }
        catch (Exception e) when (e is not SuccessException)
        {
            TestContext.Out.WriteLine(Source.Describe() + "\n" + Destination.Describe() + "\n" + storage.OutputTail());
            throw;
        }

        report.Write(OutputDirectory, reportName);
        // The storage servers' logs next to the test's own output (not with the results): what a stall was.
        var logs = Path.Combine(TestContext.CurrentContext.WorkDirectory, "migration-logs");
        Directory.CreateDirectory(logs);
        await File.WriteAllTextAsync(Path.Combine(logs, reportName + ".storage.log"),
            string.Concat(storage.Nodes.Select(n => $"----- {n.Key} -----\n{n.Value.Output}\n")));
        TestContext.Out.WriteLine($"{reportName}: {watch.Elapsed.TotalSeconds:F0} s; results in {OutputDirectory}\n{report.MarkdownTable()}");
        Assert.Multiple(() =>
        {
            Assert.That(report.IoErrors, Is.Zero, "I/O errors");
            Assert.That(report.VerifyFailures, Is.Zero, "verify mismatches (fio verify reads and handover checksums)");
            foreach (var disk in report.Disks)
            {
                Assert.That(disk.HandoverMatches, Is.True, $"{disk.Disk}: the destination read what the source left");
                Assert.That(disk.Before.Ios, Is.GreaterThan(0), $"{disk.Disk}: I/O before");
                Assert.That(disk.Precopy.Ios, Is.GreaterThan(0), $"{disk.Disk}: I/O during pre-copy");
                Assert.That(disk.After.Ios, Is.GreaterThan(0), $"{disk.Disk}: I/O after");
            }

            Assert.That(report.SwitchoverGapMs, Is.GreaterThan(0), "the switchover gap is measured");
            // File times are the guest kernel's coarse clock (a tick, a few ms): a flush shorter than that reads 0.
            Assert.That(report.SourceFlushMs, Is.GreaterThanOrEqualTo(0), "the source's final flush is measured");
            Assert.That(report.DestinationFirstIoMs, Is.GreaterThan(0), "the destination's workload waited for its go");
        });
    }

    private static async Task AttachAsync(MigrationStorage storage, GuestNode guest, string nodeId, CsiVolume volume, string target)
    {
        var published = await storage.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = _capability, VolumeContext = { volume.VolumeContext },
        });
        var context = ForGuest(published.PublishContext);
        await guest.ShellAsync($"mkdir -p {Devices} /csi-e2e/staging /tmp/fence && rm -f /tmp/fence/*");
        await guest.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest
        {
            VolumeId = volume.VolumeId, PublishContext = { context }, StagingTargetPath = Staging(volume), VolumeCapability = _capability, VolumeContext = { volume.VolumeContext },
        });
        await guest.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = volume.VolumeId, PublishContext = { context }, StagingTargetPath = Staging(volume), TargetPath = target,
            VolumeCapability = _capability, VolumeContext = { volume.VolumeContext },
        });
    }

    private static string Staging(CsiVolume volume) => $"/csi-e2e/staging/{volume.VolumeId}";

    /// <summary>A background loop writing "W{w} SEQ{n}" blocks round-robin over <paramref name="count"/> blocks from <paramref name="first"/>.</summary>
    private static string WriterCommand(int writer, int first, int count, string target) => $$"""
        mkdir -p /tmp/fence
        (
            i=0
            while [ ! -e /tmp/fence/stop ]; do
                i=$((i + 1))
                { printf 'W{{writer}} SEQ%010d\n' $i; dd if=/dev/zero bs=4096 count=1 2>/dev/null; } | head -c 4096 > /tmp/fence/block{{writer}}
                if dd if=/tmp/fence/block{{writer}} of={{target}} bs=4096 seek=$(({{first}} + i % {{count}})) count=1 oflag=direct conv=notrunc 2>/dev/null; then
                    echo "OK $i" >> /tmp/fence/w{{writer}}.log
                else
                    echo "FAIL $i" >> /tmp/fence/w{{writer}}.log
                    sleep 0.5
                fi
            done
        ) > /dev/null 2>&1 &
        """;

    /// <summary>Each writer's count of completed and failed writes, as W{w}_OK=N W{w}_FAIL=N.</summary>
    private const string WriterCountsCommand = """
        for f in /tmp/fence/w*.log; do
            [ -e "$f" ] || continue
            w=$(basename $f .log | tr -d w)
            echo "W${w}_OK=$(grep -c OK $f) W${w}_FAIL=$(grep -c FAIL $f)"
        done
        """;

    /// <summary>The source writers' blocks as the destination reads them (O_DIRECT), one "W{w} SEQ{n}" line per block, sorted.</summary>
    private static string SourceBlocksCommand(string target) =>
        $"dd if={target} bs=4096 count=1024 iflag=direct 2>/dev/null | tr '\\000' '\\n' | grep -a '^W[0-3] SEQ' | sort";

    private static List<string> Lines(string output) =>
        output.Split('\n').Where(l => l.StartsWith('W')).Select(l => l.Trim()).ToList();

    private static string Summary(string blocks)
    {
        var lines = Lines(blocks);
        return $"{lines.Count} blocks; highest per writer: " + string.Join(", ", lines.GroupBy(l => l[..2]).Select(g => $"{g.Key} {g.Max(l => l[3..])}"));
    }

    private static int Count(string output, string key)
    {
        foreach (var field in output.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (field.StartsWith(key + "=", StringComparison.Ordinal))
            {
                return int.Parse(field[(key.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    private static async Task WaitForOksAsync(GuestNode guest, int writers, int each)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        var output = "";
        while (DateTime.UtcNow < deadline)
        {
            output = await guest.ShellAsync(WriterCountsCommand);
            var oks = output.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Where(f => f.Contains("_OK=", StringComparison.Ordinal))
                .Select(f => int.Parse(f[(f.IndexOf('=') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            if (oks.Length == writers && oks.All(n => n >= each))
            {
                return;
            }

            await Task.Delay(1000);
        }

        throw new TimeoutException($"{guest.Name}: writers did not get going: {output}");
    }
}
