using CsiNvme.Csi.Node;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>The path keeper's decisions for one volume, from the kernel's controllers and the discovery answers of one pass.</summary>
[TestFixture]
public sealed class PathPlanTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:plan";
    private const string Host = "nqn.2026-11.io.csinvme:node:n1";

    private static readonly FabricsTarget _a = new("10.0.0.1", 4420);
    private static readonly FabricsTarget _b = new("10.0.0.2", 4420);
    private static readonly FabricsTarget _c = new("10.0.0.3", 4420);

    private static StagedVolume Volume(int replicas, params FabricsTarget[] targets) => new()
    {
        VolumeId = "vol-plan",
        StagingPath = "/staging/vol-plan",
        SubsystemNqn = Nqn,
        Uuid = "89925833a0aa460f821479d42adc25a1",
        Targets = targets.Select(t => t.ToString()).ToList(),
        Replicas = replicas,
    };

    private static NvmeControllerInfo Controller(string name, FabricsTarget target, string state = "live") =>
        new(name, Nqn, Host, "tcp", $"traddr={target.Address},trsvcid={target.Port},src_addr=10.0.2.15", state);

    /// <summary>Every listed answer lists <paramref name="listed"/> for the volume (plus another subsystem's listener).</summary>
    private static Dictionary<FabricsTarget, DiscoveryAnswer> Answers(FabricsTarget[] answering, FabricsTarget[] listed, params FabricsTarget[] silent)
    {
        var answers = new Dictionary<FabricsTarget, DiscoveryAnswer>();
        foreach (var source in answering)
        {
            answers[source] = new DiscoveryAnswer(source,
                [.. listed.Select(t => new DiscoveredListener(Nqn, t)), new DiscoveredListener("nqn.2026-11.io.csinvme:volume:other", new FabricsTarget("10.0.0.9", 4420))],
                null);
        }

        foreach (var source in silent)
        {
            answers[source] = new DiscoveryAnswer(source, null, "Connection refused");
        }

        return answers;
    }

    private static PathPlan Decide(
        StagedVolume volume, NvmeControllerInfo[] controllers, Dictionary<FabricsTarget, DiscoveryAnswer> answers,
        Dictionary<string, string?>? ctrlLossTmo = null, bool severalPaths = true) =>
        PathPlan.Decide(volume, controllers, answers, ctrlLossTmo ?? controllers.ToDictionary(c => c.Name, _ => (string?)"60"),
            FabricsConnectSettings.MultipathDefault, severalPaths);

    [Test]
    public void Healthy_paths_are_left_alone()
    {
        var plan = Decide(Volume(2, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b)], Answers([_a, _b], [_a, _b]));

        Assert.Multiple(() =>
        {
            Assert.That(plan.Targets, Is.EqualTo(new[] { _a.ToString(), _b.ToString() }));
            Assert.That(plan.Connect, Is.Empty);
            Assert.That(plan.Learned, Is.Empty);
            Assert.That(plan.Forgotten, Is.Empty);
            Assert.That(plan.Delete, Is.Empty);
            Assert.That(plan.Unreachable, Is.Empty);
            Assert.That(plan.CtrlLossTmo, Is.Empty);
        });
    }

    [Test]
    public void A_path_the_kernel_dropped_is_connected_again_once_its_listener_answers()
    {
        // ctrl_loss_tmo ran out on B's controller: the kernel removed it, B's node is back.
        var plan = Decide(Volume(2, _a, _b), [Controller("nvme0", _a)], Answers([_a, _b], [_a, _b]));
        Assert.That(plan.Connect, Is.EqualTo(new[] { _b }));

        // B's node is still down: nothing to ask the kernel (a connect to a dead address can block for minutes).
        plan = Decide(Volume(2, _a, _b), [Controller("nvme0", _a)], Answers([_a], [_a, _b], silent: _b));
        Assert.Multiple(() =>
        {
            Assert.That(plan.Connect, Is.Empty);
            Assert.That(plan.Unreachable, Is.EqualTo(new[] { _b }));
            Assert.That(plan.Targets, Does.Contain(_b.ToString()), "a listener still listed is kept");
        });
    }

    [Test]
    public void A_reconnecting_controller_is_the_kernels_business()
    {
        var plan = Decide(Volume(2, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b, "connecting")], Answers([_a, _b], [_a, _b]));
        Assert.That(plan.Connect, Is.Empty);
    }

    [Test]
    public void A_replica_added_later_is_learned_from_the_discovery_log_and_connected()
    {
        var plan = Decide(Volume(3, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b)], Answers([_a, _b, _c], [_a, _b, _c]));

        Assert.Multiple(() =>
        {
            Assert.That(plan.Learned, Is.EqualTo(new[] { _c }));
            Assert.That(plan.Connect, Is.EqualTo(new[] { _c }));
            Assert.That(plan.Targets, Is.EqualTo(new[] { _a.ToString(), _b.ToString(), _c.ToString() }));
        });

        // Learned, but its node has not answered yet: remembered, connected in a later pass.
        plan = Decide(Volume(3, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b)], Answers([_a, _b], [_a, _b, _c]));
        Assert.Multiple(() =>
        {
            Assert.That(plan.Learned, Is.EqualTo(new[] { _c }));
            Assert.That(plan.Connect, Is.Empty);
            Assert.That(plan.Unreachable, Is.EqualTo(new[] { _c }));
        });
    }

    [Test]
    public void A_listener_no_longer_listed_is_left_alone_while_live_and_forgotten_when_dead_and_another_path_is_live()
    {
        // The replica moved from B to C: B's path is still live (its node has not dropped the export yet).
        var live = Decide(Volume(2, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b)], Answers([_a, _c], [_a, _c]));
        Assert.Multiple(() =>
        {
            Assert.That(live.Forgotten, Is.Empty);
            Assert.That(live.Delete, Is.Empty);
            Assert.That(live.Targets, Is.EqualTo(new[] { _a.ToString(), _b.ToString(), _c.ToString() }));
        });

        // B's path died: forgotten, and its reconnecting controller deleted so the kernel stops trying.
        var dead = Decide(Volume(2, _a, _b, _c), [Controller("nvme0", _a), Controller("nvme1", _b, "connecting"), Controller("nvme2", _c)], Answers([_a, _c], [_a, _c], silent: _b));
        Assert.Multiple(() =>
        {
            Assert.That(dead.Forgotten, Is.EqualTo(new[] { _b }));
            Assert.That(dead.Delete, Is.EqualTo(new[] { "nvme1" }));
            Assert.That(dead.Targets, Is.EqualTo(new[] { _a.ToString(), _c.ToString() }));
            Assert.That(dead.Connect, Is.Empty);
        });
    }

    [Test]
    public void Nothing_is_forgotten_without_a_log_that_lists_the_volume_or_without_another_live_path()
    {
        // Logs that do not list the subsystem (a node still loading its volumes) say nothing about B.
        var unlisted = Decide(Volume(2, _a, _b), [Controller("nvme0", _a)], Answers([_a, _b], []));
        Assert.Multiple(() =>
        {
            Assert.That(unlisted.Forgotten, Is.Empty);
            Assert.That(unlisted.Connect, Is.EqualTo(new[] { _b }));
        });

        // B is the only path left, dead: kept, whatever the logs say.
        var last = Decide(Volume(2, _a, _b), [Controller("nvme1", _b, "connecting")], Answers([_c], [_a, _c], silent: _b));
        Assert.Multiple(() =>
        {
            Assert.That(last.Forgotten, Is.Empty);
            Assert.That(last.Delete, Is.Empty);
        });
    }

    [Test]
    public void Without_native_multipath_only_one_path_is_ever_connected()
    {
        var connected = Decide(Volume(1, _a, _b), [Controller("nvme0", _a)], Answers([_a, _b], [_a, _b]), severalPaths: false);
        Assert.That(connected.Connect, Is.Empty);

        var none = Decide(Volume(1, _a, _b), [], Answers([_a, _b], [_a, _b]), severalPaths: false);
        Assert.That(none.Connect, Is.EqualTo(new[] { _a }));
    }

    [Test]
    public void The_last_paths_of_a_replicated_volume_are_held_while_none_is_live_and_released_when_one_is()
    {
        var volume = Volume(2, _a, _b);
        var down = new[] { Controller("nvme0", _a, "connecting"), Controller("nvme1", _b, "resetting") };
        var held = Decide(volume, down, Answers([], [], silent: [_a, _b]), new Dictionary<string, string?> { ["nvme0"] = "60", ["nvme1"] = "off" });
        Assert.That(held.CtrlLossTmo, Is.EqualTo(new[] { new CtrlLossTmoChange("nvme0", -1) }), "nvme1 is held already");

        var back = new[] { Controller("nvme0", _a, "live"), Controller("nvme1", _b, "connecting") };
        var released = Decide(volume, back, Answers([_a], [_a, _b], silent: _b), new Dictionary<string, string?> { ["nvme0"] = "off", ["nvme1"] = "off" });
        Assert.That(released.CtrlLossTmo, Is.EqualTo(new[] { new CtrlLossTmoChange("nvme0", 60), new CtrlLossTmoChange("nvme1", 60) }));

        // One replica: its ctrl_loss_tmo is the user's to choose, the keeper never touches it.
        var single = Decide(Volume(1, _a), [Controller("nvme0", _a, "connecting")], Answers([], [], silent: _a));
        Assert.That(single.CtrlLossTmo, Is.Empty);
    }

    [Test]
    public void Discovery_answers_drop_other_transports_and_unreachable_loopback_addresses()
    {
        static CsiNvme.Protocol.Logs.DiscoveryLogEntry Entry(string address, string port, CsiNvme.Protocol.Logs.TransportType transport = CsiNvme.Protocol.Logs.TransportType.Tcp) =>
            new(transport, CsiNvme.Protocol.Logs.AddressFamily.IPv4, CsiNvme.Protocol.Logs.DiscoverySubsystemType.NvmSubsystem, 2, 1, 0xFFFF, 128, 0, port, Nqn, address);

        var entries = new[]
        {
            Entry("127.0.0.1", "4420"), Entry("10.0.0.2", "4421"), Entry("10.0.0.3", "4420", CsiNvme.Protocol.Logs.TransportType.Rdma),
            Entry("10.0.0.2", "4421"), Entry("::ffff:10.0.0.4", "4420"), Entry("fd00::5", "4420"), Entry("10.0.0.6", "http"),
        };

        var remote = DiscoveryAnswer.From(new FabricsTarget("10.0.2.2", 4420), entries);
        var local = DiscoveryAnswer.From(new FabricsTarget("127.0.0.1", 4420), entries);
        Assert.Multiple(() =>
        {
            Assert.That(remote.Listeners!.Select(l => l.Target.ToString()), Is.EqualTo(new[] { "10.0.0.2:4421", "10.0.0.4:4420", "[fd00::5]:4420" }));
            Assert.That(local.Listeners!.Select(l => l.Target.ToString()), Is.EqualTo(new[] { "127.0.0.1:4420", "10.0.0.2:4421", "10.0.0.4:4420", "[fd00::5]:4420" }));
        });
    }

    [Test]
    public void The_replica_count_follows_replicas_added_and_removed_but_not_a_node_that_is_down()
    {
        // Staged with one replica; the volume got two more (ControllerModifyVolume): the logs list three.
        var grown = Decide(Volume(1, _a), [Controller("nvme0", _a)], Answers([_a, _b, _c], [_a, _b, _c]));

        // Down to two: C's node answers, its log lists the volume no more, and no other log lists C.
        var withoutC = Answers([_a, _b], [_a, _b]);
        withoutC[_c] = new DiscoveryAnswer(_c, [new DiscoveredListener("nqn.2026-11.io.csinvme:volume:other", _c)], null);
        var shrunk = Decide(Volume(3, _a, _b, _c), [Controller("nvme0", _a), Controller("nvme1", _b), Controller("nvme2", _c, "connecting")], withoutC);

        // B's node is down and A's log lists B but not A itself (a listener on loopback): A still holds the volume.
        var selfUnlisted = Decide(Volume(2, _a, _b), [Controller("nvme0", _a)], Answers([_a], [_b], silent: _b));

        // C's node is down: no log lists it either, but it does not answer. Still a replica, before and after it is forgotten.
        var down = Decide(Volume(3, _a, _b, _c), [Controller("nvme0", _a), Controller("nvme1", _b), Controller("nvme2", _c, "connecting")],
            Answers([_a, _b], [_a, _b], silent: _c));
        var forgotten = Decide(Volume(3, _a, _b), [Controller("nvme0", _a), Controller("nvme1", _b)], Answers([_a, _b], [_a, _b]));

        // No log lists the volume (every node restarting): nothing is known, the count stays.
        var silent = Decide(Volume(2, _a, _b), [Controller("nvme0", _a, "connecting"), Controller("nvme1", _b, "connecting")], Answers([], [], _a, _b));

        Assert.Multiple(() =>
        {
            Assert.That(grown.Replicas, Is.EqualTo(3));
            Assert.That(shrunk.Replicas, Is.EqualTo(2));
            Assert.That(selfUnlisted.Replicas, Is.EqualTo(2));
            Assert.That(down.Forgotten, Is.EqualTo(new[] { _c }), "a dead path of a node down is forgotten (learned again when it is back)");
            Assert.That(down.Replicas, Is.EqualTo(3));
            Assert.That(forgotten.Replicas, Is.EqualTo(3));
            Assert.That(silent.Replicas, Is.EqualTo(2));
        });
    }
}
