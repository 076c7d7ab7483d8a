using System.Net;
using System.Text;
using Csi.V1;
using CsiNvme.Csi.Authentication;
using CsiNvme.Csi.Node;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Protocol.Logs;
using CsiNvme.Storage;
using Grpc.Core;
using NUnit.Framework;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// The node's paths of a replicated volume over real storage-node targets (<see cref="ReplicaTarget"/>, read by the
/// path keeper's discovery as the node's host) and the fake kernel of <see cref="FakeKernelPlatform"/>: what stage
/// connects, what the keeper reconnects, learns and leaves alone, and what stats and metrics say meanwhile.
/// </summary>
[TestFixture]
[CancelAfter(120_000)]
public sealed class PathKeeperTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:kept";
    private const string VolumeId = "vol-kept";

    private readonly Guid _uuid = Guid.NewGuid();
    private MemoryBlockVolume _volume = null!;
    private readonly List<ReplicaTarget> _targets = [];
    private FakeKernelPlatform _kernel = null!;
    private NodeHarness _node = null!;

    private string Uuid => _uuid.ToString("N");

    [SetUp]
    public void SetUp()
    {
        if (Environment.UserName != "root")
        {
            Assert.Ignore("stage makes a device node (mknod needs root)");
        }

        _volume = new MemoryBlockVolume(16 << 20, 512);
    }

    [TearDown]
    public async Task TearDown()
    {
        if (_node is not null)
        {
            await _node.DisposeAsync();
        }

        foreach (var target in _targets)
        {
            await target.DisposeAsync();
        }

        _volume.Dispose();
    }

    private async Task StartNodeAsync(TimeSpan? keeperPeriod = null, bool? multipath = true)
    {
        _node = await NodeHarness.StartAsync(
            options => options.PathKeeperPeriod = keeperPeriod ?? TimeSpan.Zero,
            sys =>
            {
                _kernel = new FakeKernelPlatform(sys);
                _kernel.AddSubsystem(Nqn, Uuid);
                if (multipath is { } on)
                {
                    sys.SetNativeMultipath(on);
                }

                return _kernel;
            });
    }

    private ReplicaTarget StartTarget(int ordinal, AnaState state, int port = 0)
    {
        var target = ReplicaTarget.Start(ordinal, Nqn, _uuid, _volume, state, port);
        _targets.Add(target);
        _kernel?.SetAnaState(target.Port, state == AnaState.Optimized ? "optimized" : "inaccessible");
        return target;
    }

    private static void Peers(params ReplicaTarget[] nodes)
    {
        foreach (var node in nodes)
        {
            node.SetPeers(IPAddress.Loopback, [.. nodes.Where(n => n != node)]);
        }
    }

    private NodeStageVolumeRequest Stage(int replicas, params ReplicaTarget[] targets) => new()
    {
        VolumeId = VolumeId,
        StagingTargetPath = Path.Combine(_node.Directory, "staging", VolumeId),
        VolumeCapability = new VolumeCapability { Block = new(), AccessMode = new() { Mode = Mode.MultiNodeMultiWriter } },
        PublishContext = { ["nqn"] = Nqn, ["targets"] = string.Join(",", targets.Select(t => $"127.0.0.1:{t.Port}")), ["uuid"] = Uuid },
        VolumeContext = { ["replicas"] = replicas.ToString(System.Globalization.CultureInfo.InvariantCulture) },
    };

    private async Task<VolumeCondition> ConditionAsync() =>
        (await _node.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = VolumeId, VolumePath = Path.Combine(_node.Sys.DevRoot, "nvme0n1") }))
        .VolumeCondition;

    private async Task<string> MetricsAsync()
    {
        using var stream = new MemoryStream();
        await _node.Metrics.Registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private async Task<PathKeeperOutcome> PassAsync() => (await _node.Keeper.RunOnceAsync(CancellationToken.None)).Single();

    [Test]
    public async Task Stage_connects_every_path_to_one_device_and_the_keeper_leaves_healthy_paths_alone()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);

        await _node.Node.NodeStageVolumeAsync(Stage(2, a, b));
        var pass = await PassAsync();
        var condition = await ConditionAsync();
        var metrics = await MetricsAsync();

        Assert.Multiple(() =>
        {
            Assert.That(_kernel.Connects, Has.Count.EqualTo(2), "one connect per listener");
            Assert.That(_kernel.Connects, Has.All.Contain("ctrl_loss_tmo=60,reconnect_delay=5,fast_io_fail_tmo=-1"), "the multipath defaults");
            Assert.That(pass.Plan.Connect, Is.Empty);
            Assert.That(pass.Plan.Learned, Is.Empty);
            Assert.That(pass.Report.LiveCount, Is.EqualTo(2));
            Assert.That(condition.Abnormal, Is.False, condition.Message);
            Assert.That(condition.Message, Is.EqualTo(
                $"volume is attached; 2 live paths for 2 replicas: 127.0.0.1:{a.Port} (nvme0, optimized), 127.0.0.1:{b.Port} (nvme1, inaccessible)"));
            Assert.That(metrics, Does.Contain($"csinvme_node_volume_paths{{volume=\"{VolumeId}\",state=\"live\",ana_state=\"optimized\"}} 1"));
            Assert.That(metrics, Does.Contain($"csinvme_node_volume_paths{{volume=\"{VolumeId}\",state=\"live\",ana_state=\"inaccessible\"}} 1"));
            Assert.That(metrics, Does.Contain($"csinvme_node_volume_replicas{{volume=\"{VolumeId}\"}} 2"));
            Assert.That(metrics, Does.Contain($"csinvme_node_volume_degraded{{volume=\"{VolumeId}\"}} 0"));
            Assert.That(metrics, Does.Contain($"csinvme_node_path_reconnects_total{{volume=\"{VolumeId}\"}} 0"));
        });
    }

    [Test]
    public async Task Stage_secrets_reach_the_kernel_only_and_a_reconnected_path_takes_them_from_a_live_controller()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        var host = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var ctrl = DhchapSecret.Generate(DhchapHash.Sha256).Format();
        var request = Stage(2, a, b);
        request.Secrets[DhchapCsiSecrets.HostSecretKey] = host;
        request.Secrets[DhchapCsiSecrets.CtrlSecretKey] = ctrl;

        await _node.Node.NodeStageVolumeAsync(request);
        var record = File.ReadAllText(Directory.GetFiles(_node.State.Directory, "*.staged.json").Single());

        // The kernel dropped B's path (ctrl_loss_tmo); the keeper connects it again after a restart of the plugin
        // would have lost the stage's secrets, so it must take them from A's controller.
        _node.Sys.RemoveController("nvme1");
        var pass = await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(_kernel.Connects.Take(2), Has.All.Contain($",dhchap_secret={host},dhchap_ctrl_secret={ctrl}"), "both paths authenticate");
            Assert.That(record, Does.Not.Contain(host[10..30]).And.Not.Contain(ctrl[10..30]), "no secret in the node's state directory");
            Assert.That(_node.State.Load(VolumeId)!.Authenticated, Is.True);
            Assert.That(pass.Connected.Single().Controller, Is.Not.Null);
            Assert.That(_kernel.Connects.Last(), Does.Contain($",dhchap_secret={host},dhchap_ctrl_secret={ctrl}"), "the reconnect authenticates too");
        });
    }

    [Test]
    public async Task Stage_refuses_a_malformed_secret_without_quoting_it()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var request = Stage(1, a);
        request.Secrets[DhchapCsiSecrets.HostSecretKey] = "DHHC-1:00:bm90LWEta2V5LWF0LWFsbC0xMjM0NTY3ODkw:";

        var failure = await CsiHarness.FailureOf(() => _node.Node.NodeStageVolumeAsync(request).ResponseAsync);

        Assert.Multiple(() =>
        {
            Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.InvalidArgument));
            Assert.That(failure.Status.Detail, Does.Contain(DhchapCsiSecrets.HostSecretKey).And.Not.Contain("bm90LWEta2V5"));
            Assert.That(_kernel.Connects, Is.Empty);
        });
    }

    [Test]
    public async Task A_path_the_kernel_dropped_is_connected_again_when_its_node_is_back()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        await _node.Node.NodeStageVolumeAsync(Stage(2, a, b));

        // B's node stops and the kernel gives its controller up (ctrl_loss_tmo).
        var port = b.Port;
        await b.DisposeAsync();
        _targets.Remove(b);
        _node.Sys.RemoveController("nvme1");
        var down = await PassAsync();
        var degraded = await ConditionAsync();
        var connectsWhileDown = _kernel.Connects.Count;

        b = StartTarget(1, AnaState.Inaccessible, port);
        Peers(a, b);
        var back = await PassAsync();
        var whole = await ConditionAsync();
        var metrics = await MetricsAsync();

        Assert.Multiple(() =>
        {
            Assert.That(down.Plan.Unreachable, Is.EqualTo(new[] { new FabricsTarget("127.0.0.1", port) }));
            Assert.That(connectsWhileDown, Is.EqualTo(2), "no connect is attempted while the listener does not answer");
            Assert.That(degraded.Abnormal, Is.True);
            Assert.That(degraded.Message, Does.Contain($"1 live path for 2 replicas: 127.0.0.1:{a.Port} (nvme0, optimized); not live: 127.0.0.1:{port} (not connected)"));
            Assert.That(back.Connected.Single(), Is.EqualTo(new PathConnectResult(new FabricsTarget("127.0.0.1", port), "nvme1", false, null)));
            Assert.That(_node.State.Load(VolumeId)!.ConnectSettings, Is.EqualTo(FabricsConnectSettings.MultipathDefault), "the stage's settings are recorded");
            Assert.That(_kernel.Connects.Last(), Does.Contain("ctrl_loss_tmo=60,reconnect_delay=5,fast_io_fail_tmo=-1"), "and used for the reconnect");
            Assert.That(back.Report.LiveCount, Is.EqualTo(2));
            Assert.That(whole.Abnormal, Is.False, whole.Message);
            Assert.That(metrics, Does.Contain($"csinvme_node_path_reconnects_total{{volume=\"{VolumeId}\"}} 1"));
            Assert.That(metrics, Does.Contain($"csinvme_node_volume_degraded{{volume=\"{VolumeId}\"}} 0"));
            Assert.That(metrics, Does.Not.Contain("state=\"missing\""), "the series of a state no path is in any more are gone");
        });
    }

    [Test]
    public async Task A_replica_added_later_is_found_in_the_discovery_log_and_connected_without_restaging()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        // publish_context names A alone; A's discovery log names B too.
        await _node.Node.NodeStageVolumeAsync(Stage(3, a));
        var first = await PassAsync();

        var c = StartTarget(2, AnaState.Inaccessible);
        Peers(a, b, c);
        var second = await PassAsync();
        var third = await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(first.Plan.Learned, Is.EqualTo(new[] { new FabricsTarget("127.0.0.1", b.Port) }));
            Assert.That(first.Connected.Single().IsNew, Is.True);
            Assert.That(first.Report.IsDegraded, Is.True, "two of three replicas");
            Assert.That(second.Plan.Learned, Is.EqualTo(new[] { new FabricsTarget("127.0.0.1", c.Port) }));
            Assert.That(second.Connected.Single().Controller, Is.EqualTo("nvme2"));
            Assert.That(second.Report.LiveCount, Is.EqualTo(3));
            Assert.That(second.Report.IsDegraded, Is.False);
            Assert.That(third.Plan.Learned, Is.Empty);
            Assert.That(third.Connected, Is.Empty);
            Assert.That(_node.State.Load(VolumeId)!.Targets, Is.EqualTo(new[] { a, b, c }.Select(t => $"127.0.0.1:{t.Port}")), "known listeners persist");
        });
    }

    [Test]
    public async Task A_staged_volume_is_held_to_the_replica_count_it_has_now()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        // Created with three (volume_context), down to one when it was published (publish_context wins).
        var stage = Stage(3, a);
        stage.PublishContext["replicas"] = "1";
        await _node.Node.NodeStageVolumeAsync(stage);
        var one = await PassAsync();

        // A second replica (ControllerModifyVolume): the logs list B.
        Peers(a, b);
        var two = await PassAsync();
        var twoMetrics = await MetricsAsync();

        // Back to one: B's node exports it no more and lists it nowhere, and still answers.
        b.RemoveExport();
        a.SetPeers(IPAddress.Loopback);
        _node.Sys.SetControllerState("nvme1", "connecting");
        var back = await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(one.Report.Replicas, Is.EqualTo(1));
            Assert.That(one.Report.IsDegraded, Is.False, one.Report.Describe());
            Assert.That(two.Plan.Learned, Is.EqualTo(new[] { new FabricsTarget("127.0.0.1", b.Port) }));
            Assert.That(two.Report.Replicas, Is.EqualTo(2));
            Assert.That(two.Report.LiveCount, Is.EqualTo(2));
            Assert.That(two.Report.IsDegraded, Is.False, two.Report.Describe());
            Assert.That(twoMetrics, Does.Contain($"csinvme_node_volume_replicas{{volume=\"{VolumeId}\"}} 2"));
            Assert.That(back.Report.Replicas, Is.EqualTo(1));
            Assert.That(back.Report.IsDegraded, Is.False, back.Report.Describe());
            Assert.That(_node.State.Load(VolumeId)!.Replicas, Is.EqualTo(1), "the count is kept with the staged volume");
        });
    }

    [Test]
    public async Task A_listener_that_left_the_discovery_log_is_forgotten_once_its_path_is_dead()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        await _node.Node.NodeStageVolumeAsync(Stage(1, a, b));

        // The replica moved off B: B exports it no more and A lists only itself; the kernel has not noticed yet.
        b.RemoveExport();
        a.SetPeers(IPAddress.Loopback);
        var live = await PassAsync();
        _node.Sys.SetControllerState("nvme1", "connecting");
        var dead = await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(live.Plan.Forgotten, Is.Empty);
            Assert.That(dead.Plan.Forgotten, Is.EqualTo(new[] { new FabricsTarget("127.0.0.1", b.Port) }));
            Assert.That(_node.Sys.ReadControllerAttribute("nvme1", "delete_controller"), Is.EqualTo("1"), "the dead controller is deleted");
            Assert.That(_node.State.Load(VolumeId)!.Targets, Is.EqualTo(new[] { $"127.0.0.1:{a.Port}" }));
        });
    }

    [Test]
    public async Task The_last_paths_of_a_replicated_volume_reconnect_forever_while_none_is_live()
    {
        await StartNodeAsync();
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        await _node.Node.NodeStageVolumeAsync(Stage(2, a, b));

        _node.Sys.SetControllerState("nvme0", "connecting");
        _node.Sys.SetControllerState("nvme1", "connecting");
        await PassAsync();
        var held = (_node.Sys.ReadControllerAttribute("nvme0", "ctrl_loss_tmo").Trim(), _node.Sys.ReadControllerAttribute("nvme1", "ctrl_loss_tmo").Trim());
        var condition = await ConditionAsync();

        // The kernel prints a held ctrl_loss_tmo as "off".
        File.WriteAllText(Path.Combine(_node.Sys.SysRoot, "class", "nvme", "nvme0", "ctrl_loss_tmo"), "off\n");
        File.WriteAllText(Path.Combine(_node.Sys.SysRoot, "class", "nvme", "nvme1", "ctrl_loss_tmo"), "off\n");
        _node.Sys.SetControllerState("nvme0", "live");
        await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(held, Is.EqualTo(("-1", "-1")));
            Assert.That(condition.Abnormal, Is.True);
            Assert.That(condition.Message, Does.Contain("0 live paths for 2 replicas"));
            // A regular file keeps the tail of the longer "off" that sysfs would have replaced: only the head is the write.
            Assert.That(_node.Sys.ReadControllerAttribute("nvme0", "ctrl_loss_tmo"), Does.StartWith("60"));
            Assert.That(_node.Sys.ReadControllerAttribute("nvme1", "ctrl_loss_tmo"), Does.StartWith("60"), "a dead path may go again now that another is live");
        });
    }

    [Test]
    public async Task The_keeper_runs_on_its_own_within_its_period()
    {
        await StartNodeAsync(keeperPeriod: TimeSpan.FromSeconds(1));
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Inaccessible);
        Peers(a, b);
        await _node.Node.NodeStageVolumeAsync(Stage(2, a, b));

        _node.Sys.RemoveController("nvme1");
        // A pass may see the controller half removed and connect it again under another name: count controllers.
        var sysfs = new NvmeSysfs(_node.Sys.SysRoot);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (_kernel.Connects.Count < 3 || sysfs.ControllersOf(Nqn, "nqn.2026-11.io.csinvme:node:unit-node").Count(c => c.IsLive) < 2)
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "the dropped path was not connected again within 60 s");
            await Task.Delay(100);
        }

        Assert.That(_kernel.Connects, Has.Count.EqualTo(3), "the dropped path is connected again without a call, once");
    }

    [Test]
    public async Task Without_native_multipath_a_replicated_volume_is_refused_and_a_single_one_gets_one_path()
    {
        await StartNodeAsync(multipath: false);
        var a = StartTarget(0, AnaState.Optimized);
        var b = StartTarget(1, AnaState.Optimized);

        var refused = await CsiHarness.FailureOf(async () => await _node.Node.NodeStageVolumeAsync(Stage(2, a, b)));
        await _node.Node.NodeStageVolumeAsync(Stage(1, a, b));
        var pass = await PassAsync();

        Assert.Multiple(() =>
        {
            Assert.That(refused.StatusCode, Is.EqualTo(StatusCode.FailedPrecondition));
            Assert.That(refused.Status.Detail, Does.Contain("nvme_core.multipath=N"));
            Assert.That(_kernel.Connects, Has.Count.EqualTo(1));
            Assert.That(pass.Connected, Is.Empty);
        });
    }
}
