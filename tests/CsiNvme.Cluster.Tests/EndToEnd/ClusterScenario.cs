using System.Diagnostics;
using CsiNvme.Api.V1;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.EndToEnd;

/// <summary>
/// One guest scenario: three storage server processes on a real etcd, a replicated volume, and a Linux guest with one
/// path per replica node. Collects the measurements and events it reports, and on failure the nodes' logs and the
/// guest's last commands.
/// </summary>
internal sealed class ClusterScenario : IAsyncDisposable
{
    private readonly List<string> _report = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private ClusterScenario(string name, ProcessCluster cluster, ClusterGuest guest, Volume volume, string device)
    {
        Name = name;
        Cluster = cluster;
        Guest = guest;
        Volume = volume;
        Device = device;
    }

    public string Name { get; }

    public ProcessCluster Cluster { get; }

    public ClusterGuest Guest { get; }

    /// <summary>The volume as created (primary, epoch 1).</summary>
    public Volume Volume { get; }

    public string Nqn => Volume.SubsystemNqn;

    /// <summary>The multipath block device in the guest.</summary>
    public string Device { get; }

    public int PortOf(string node) => Cluster[node].NvmePort;

    /// <summary>
    /// Boots the guest while the cluster starts, creates the volume (64 MiB, <paramref name="replicas"/> replicas, the
    /// guest allowed) and connects a path to every replica node.
    /// </summary>
    public static async Task<ClusterScenario> StartAsync(string name, int replicas, ProcessClusterOptions? options = null)
    {
        var booting = ClusterGuest.StartAsync($"guest-{name}", TimeSpan.FromMinutes(25));
        ProcessCluster? cluster = null;
        ClusterGuest? guest = null;
        try
        {
            cluster = await ProcessCluster.StartAsync(3, options ?? new ProcessClusterOptions
            {
                OutputLine = line => TestContext.Progress.WriteLine(line),
            });
            guest = await booting;
            var volume = await cluster.Volumes().CreateVolumeAsync(new CreateVolumeRequest
            {
                Name = name,
                SizeBytes = 64UL << 20,
                Replicas = (uint)replicas,
                AllowedHosts = { guest.Identity.Nqn },
            });
            Assert.That(volume.Replicas, Has.Count.EqualTo(replicas), volume.ToString());
            Assert.That(volume.Replicas.Select(r => r.Node).Distinct().Count(), Is.EqualTo(replicas), "one replica per node");
            var device = await guest.ConnectAsync(volume.SubsystemNqn, volume.Replicas.Select(r => cluster[r.Node].NvmePort));
            var scenario = new ClusterScenario(name, cluster, guest, volume, device);
            scenario.Note($"volume {name}: {replicas} replicas on {string.Join(", ", volume.Replicas.Select(r => $"{r.Node}{(r.Primary ? " (primary)" : "")} port {cluster[r.Node].NvmePort}"))}; guest device {device}");
            return scenario;
        }
        catch
        {
            if (guest is null && booting.IsCompletedSuccessfully)
            {
                guest = booting.Result;
            }

            if (guest is not null)
            {
                await guest.DisposeAsync();
            }
            else
            {
                _ = booting.ContinueWith(t => t.Result.DisposeAsync().AsTask(), TaskContinuationOptions.OnlyOnRanToCompletion);
            }

            if (cluster is not null)
            {
                TestContext.Out.WriteLine(cluster.Describe());
                await cluster.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>Adds a line to the scenario's report (printed at the end, and with any failure), with the time since the start.</summary>
    public void Note(string line)
    {
        var stamped = $"[{_clock.Elapsed.TotalSeconds,7:F1} s] {line}";
        lock (_report)
        {
            _report.Add(stamped);
        }

        TestContext.Progress.WriteLine($"[{Name}] {stamped}");
    }

    /// <summary>A measured value, marked so the run's numbers can be collected from the test output.</summary>
    public void Measure(string what, double value, string unit) => Note($"MEASURED {Name}: {what} = {value:F2} {unit}");

    public string Report()
    {
        lock (_report)
        {
            return string.Join('\n', _report);
        }
    }

    /// <summary>
    /// Checks what the guest sees: one multipath device, one live path per replica node, the primary's optimized and
    /// every other inaccessible; and prints nvme list-subsys.
    /// </summary>
    public async Task<GuestPaths> ExpectPathsAsync(string primary, IReadOnlyCollection<string> live, string when)
    {
        var primaryPort = PortOf(primary);
        var paths = await Guest.WaitForPathsAsync(Nqn, $"{primary} optimized, {string.Join(",", live.Where(n => n != primary))} inaccessible ({when})",
            p => p.Is(primaryPort, "live", "optimized") && live.Where(n => n != primary).All(n => p.Is(PortOf(n), "live", "inaccessible")),
            TimeSpan.FromSeconds(90));
        var listing = await Guest.ShellAsync($"nvme list-subsys {Device}");
        Note($"paths {when}:\n{paths.Text}\nnvme list-subsys {Device}:\n{listing.Trim()}");
        Assert.Multiple(() =>
        {
            Assert.That(paths.Heads, Is.EqualTo(1), "one multipath device\n" + paths.Text);
            Assert.That(listing, Does.Contain(Nqn), "list-subsys names the subsystem");
            Assert.That(listing.Split('\n').Count(l => l.Contains("tcp traddr=", StringComparison.Ordinal)), Is.EqualTo(Volume.Replicas.Count), "a path per replica node\n" + listing);
            Assert.That(listing, Does.Contain("live optimized"), listing);
        });
        return paths;
    }

    /// <summary>Waits (bounded) until the record names a primary other than <paramref name="old"/> at a higher epoch.</summary>
    public Task<Volume> WaitForNewPrimaryAsync(string old, ulong oldEpoch, TimeSpan? within = null) =>
        Cluster.WaitForVolumeAsync(Volume.Name, $"a primary other than {old} after epoch {oldEpoch}",
            v => v.Primary.Length > 0 && v.Primary != old && v.Epoch > oldEpoch, within ?? TimeSpan.FromSeconds(60));

    /// <summary>Waits (bounded) until every replica is recorded in sync.</summary>
    public Task<Volume> WaitForAllInSyncAsync(TimeSpan within) =>
        Cluster.WaitForVolumeAsync(Volume.Name, "every replica in sync", v => v.Replicas.Count == Volume.Replicas.Count && v.Replicas.All(r => r.State == "in-sync"), within);

    /// <summary>
    /// Starts <paramref name="node"/> again on its data and ports and waits for its rebuild: "in sync again" in the
    /// primary's log, every replica in sync in the record, the node's path live again (inaccessible) in the guest, and
    /// (when <paramref name="verify"/>: I/O stopped) volume verify identical. Returns the seconds from the node's start to
    /// the replica being in sync.
    /// </summary>
    public async Task<double> RestartAndRebuildAsync(string node, bool verify = true)
    {
        var inSyncLines = Cluster.Nodes.Sum(n => n.LogLines($"replica on {node} in sync again").Count);
        var started = Stopwatch.StartNew();
        await Cluster[node].StartAsync();
        var startSeconds = started.Elapsed.TotalSeconds;
        var healed = await WaitForAllInSyncAsync(TimeSpan.FromMinutes(3));
        var rebuildSeconds = started.Elapsed.TotalSeconds;
        var primary = healed.Primary;
        var lines = Cluster[primary].LogLines($"replica on {node} in sync again");
        Note($"{node} started again in {startSeconds:F1} s; every replica in sync {rebuildSeconds:F1} s after the start; primary {primary} logged: {lines.LastOrDefault()}");
        Assert.That(Cluster.Nodes.Sum(n => n.LogLines($"replica on {node} in sync again").Count), Is.GreaterThan(inSyncLines), "the primary logged the rebuild's end");
        Measure($"rebuild of {node} (node start to in sync)", rebuildSeconds, "s");
        await ExpectPathsAsync(primary, healed.Replicas.Select(r => r.Node).ToArray(), $"after {node} returned");
        if (verify)
        {
            await VerifyIdenticalAsync();
        }

        return rebuildSeconds;
    }

    /// <summary>volume verify: every replica in sync and every region identical on all of them.</summary>
    public async Task VerifyIdenticalAsync()
    {
        var verify = await Cluster.Volumes().VerifyVolumeAsync(new VerifyVolumeRequest { Name = Volume.Name });
        Note($"volume verify: identical={verify.Identical} all_in_sync={verify.AllInSync} nodes=[{string.Join(",", verify.Nodes)}] regions={verify.RegionsCompared} mismatches={verify.MismatchCount} skipped=[{string.Join("; ", verify.Skipped)}]");
        Assert.Multiple(() =>
        {
            Assert.That(verify.AllInSync, Is.True, verify.ToString());
            Assert.That(verify.Identical, Is.True, verify.ToString());
            Assert.That(verify.Nodes, Has.Count.EqualTo(Volume.Replicas.Count), verify.ToString());
        });
    }

    /// <summary>Checks a fio run: no error, no verify mismatch, I/O done; reports the longest stall.</summary>
    public FioReport ExpectCleanFio(FioReport fio, string what)
    {
        Note(fio.Summary);
        Measure($"longest stall ({what})", fio.StallSeconds, "s");
        Assert.Multiple(() =>
        {
            Assert.That(fio.ExitCode, Is.Zero, "fio exit code\n" + fio.Output);
            Assert.That(fio.ErrLine, Is.EqualTo("err=0"), "fio I/O errors\n" + fio.Output);
            Assert.That(fio.VerifyFailures, Is.Zero, "verify mismatches\n" + fio.Output);
            Assert.That(fio.Ios, Is.GreaterThan(0));
        });
        return fio;
    }

    /// <summary>Fails when the background fio run already ended: <paramref name="what"/> must happen while it writes.</summary>
    public async Task ExpectFioRunningAsync(string fio, string what)
    {
        var report = await Guest.ShellAsync($"fio_report {fio}");
        Assert.That(report, Does.Contain("FIO_RUNNING=1"), $"fio {fio} ended before {what} was done: make its run longer\n{report}");
        Note($"fio {fio} still running after {what}");
    }

    /// <summary>What to print when the scenario failed: the report, the guest's commands and kernel log, every node's log tail.</summary>
    public async Task<string> DescribeFailureAsync()
    {
        string kernel;
        try
        {
            kernel = await Guest.KernelLogAsync(80).WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            kernel = "(no answer: " + e.Message + ")";
        }

        return $"----- report -----\n{Report()}\n{Guest.Describe()}\n----- guest kernel log -----\n{kernel}\n{Cluster.Describe(120)}";
    }

    public async ValueTask DisposeAsync()
    {
        TestContext.Out.WriteLine($"----- {Name} report -----\n{Report()}");
        await Guest.DisposeAsync();
        await Cluster.DisposeAsync();
    }
}
