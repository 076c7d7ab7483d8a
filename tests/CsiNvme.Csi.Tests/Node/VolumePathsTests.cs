using CsiNvme.Csi.Node;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// The paths of a staged volume as sysfs shows them with native multipath (laid out as the guest kernel 6.1 does it:
/// /sys/class/nvme/nvmeK/state and /sys/class/nvme/nvmeK/nvmeScKn1/ana_state), counted against its replicas.
/// </summary>
[TestFixture]
public sealed class VolumePathsTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:paths";
    private const string Host = "nqn.2026-11.io.csinvme:node:n1";
    private const string Uuid = "89925833a0aa460f821479d42adc25a1";

    private FakeSysfs _sys = null!;

    [SetUp]
    public void SetUp() => _sys = new FakeSysfs();

    [TearDown]
    public void TearDown() => _sys.Dispose();

    private static StagedVolume Volume(int replicas, params string[] targets) => new()
    {
        VolumeId = "vol-paths",
        StagingPath = "/staging/vol-paths",
        SubsystemNqn = Nqn,
        Uuid = Uuid,
        Targets = targets,
        Replicas = replicas,
    };

    private void Path(string controller, int port, string state, string? anaState, int subsystem = 0)
    {
        _sys.AddController(controller, Nqn, Host, $"traddr=10.0.0.{port - 4419},trsvcid={port},src_addr=10.0.2.15", state);
        _sys.AddPath(controller, $"nvme{subsystem}c{controller[4..]}n1", Uuid, anaState);
    }

    [Test]
    public void The_ana_state_of_each_path_is_read_from_the_controllers_namespace_device()
    {
        Path("nvme0", 4420, "live", "optimized");
        Path("nvme1", 4421, "live", "inaccessible");
        _sys.AddController("nvme2", Nqn, Host, "traddr=10.0.0.3,trsvcid=4422", "connecting");
        // Another namespace under the same controller (not the volume's) is not its path.
        _sys.AddPath("nvme0", "nvme1c0n2", "ffffffffffffffffffffffffffffffff", "non-optimized");
        var sysfs = new NvmeSysfs(_sys.SysRoot);

        Assert.Multiple(() =>
        {
            Assert.That(sysfs.NamespacePathOf("nvme0", Uuid, null), Is.EqualTo(new NvmeNamespacePath("nvme0c0n1", "optimized")));
            Assert.That(sysfs.NamespacePathOf("nvme1", FakeSysfs.Dashed(Uuid).ToUpperInvariant(), null), Is.EqualTo(new NvmeNamespacePath("nvme0c1n1", "inaccessible")));
            Assert.That(sysfs.NamespacePathOf("nvme2", Uuid, null), Is.Null, "connecting for the first time: no namespace yet");
            Assert.That(sysfs.NamespacePathOf("nvme9", Uuid, null), Is.Null, "no such controller");
            Assert.That(sysfs.ReadControllerAttribute("nvme0", "ctrl_loss_tmo"), Is.EqualTo("600"));
        });
    }

    [Test]
    public void Without_native_multipath_the_controllers_own_device_is_its_path_and_the_parameter_says_so()
    {
        var sysfs = new NvmeSysfs(_sys.SysRoot);
        Assert.That(sysfs.NativeMultipath, Is.Null, "nvme-core not loaded");
        _sys.SetNativeMultipath(false);
        _sys.AddController("nvme3", Nqn, Host, "traddr=10.0.0.1,trsvcid=4420");
        _sys.AddPath("nvme3", "nvme3n1", Uuid, anaState: null);
        _sys.AddNamespace("nvme3n1", Uuid, null, 259, 0, 100);
        _sys.AddNamespace("nvme4n1", Uuid, null, 259, 1, 100);

        Assert.Multiple(() =>
        {
            Assert.That(sysfs.NativeMultipath, Is.False);
            Assert.That(sysfs.NamespacePathOf("nvme3", Uuid, null), Is.EqualTo(new NvmeNamespacePath("nvme3n1", null)));
            Assert.That(sysfs.FindNamespaces(Uuid, null).Select(d => d.Name), Is.EqualTo(new[] { "nvme3n1", "nvme4n1" }), "one device per controller");
        });
        _sys.SetNativeMultipath(true);
        Assert.That(sysfs.NativeMultipath, Is.True);
    }

    [Test]
    public void Three_live_paths_of_three_replicas_are_whole_with_one_optimized()
    {
        Path("nvme0", 4420, "live", "optimized");
        Path("nvme1", 4421, "live", "inaccessible");
        Path("nvme2", 4422, "live", "inaccessible");

        var report = VolumePathReport.Read(new NvmeSysfs(_sys.SysRoot), Host, Volume(3, "10.0.0.1:4420", "10.0.0.2:4421", "10.0.0.3:4422"));

        Assert.Multiple(() =>
        {
            Assert.That(report.LiveCount, Is.EqualTo(3));
            Assert.That(report.IsDegraded, Is.False);
            Assert.That(report.Paths, Is.EqualTo(new[]
            {
                new VolumePath("10.0.0.1:4420", "nvme0", "live", "optimized"),
                new VolumePath("10.0.0.2:4421", "nvme1", "live", "inaccessible"),
                new VolumePath("10.0.0.3:4422", "nvme2", "live", "inaccessible"),
            }));
            Assert.That(report.Describe(), Is.EqualTo(
                "3 live paths for 3 replicas: 10.0.0.1:4420 (nvme0, optimized), 10.0.0.2:4421 (nvme1, inaccessible), 10.0.0.3:4422 (nvme2, inaccessible)"));
        });
    }

    [Test]
    public void A_reconnecting_path_and_a_dropped_one_leave_one_of_three_live_and_are_named_with_their_states()
    {
        Path("nvme0", 4420, "live", "optimized");
        // The kernel keeps the path device of a reconnecting controller, with the ANA state it last read.
        Path("nvme1", 4421, "connecting", "inaccessible");

        var report = VolumePathReport.Read(new NvmeSysfs(_sys.SysRoot), Host, Volume(3, "10.0.0.1:4420", "10.0.0.2:4421", "10.0.0.3:4422"));

        Assert.Multiple(() =>
        {
            Assert.That(report.LiveCount, Is.EqualTo(1));
            Assert.That(report.IsDegraded, Is.True);
            Assert.That(report.Paths.Last(), Is.EqualTo(new VolumePath("10.0.0.3:4422", null, VolumePath.Missing, VolumePath.NoAnaState)));
            Assert.That(report.Describe(), Is.EqualTo(
                "1 live path for 3 replicas: 10.0.0.1:4420 (nvme0, optimized); not live: 10.0.0.2:4421 (nvme1 connecting, inaccessible), 10.0.0.3:4422 (not connected)"));
        });
    }

    [Test]
    public void Enough_live_paths_none_of_them_serving_io_is_degraded()
    {
        Path("nvme0", 4420, "live", "inaccessible");
        Path("nvme1", 4421, "live", "change");

        var report = VolumePathReport.Read(new NvmeSysfs(_sys.SysRoot), Host, Volume(2, "10.0.0.1:4420", "10.0.0.2:4421"));

        Assert.Multiple(() =>
        {
            Assert.That(report.LiveCount, Is.EqualTo(2));
            Assert.That(report.IsDegraded, Is.True);
            Assert.That(report.Describe(), Does.EndWith("no live path serves I/O (ANA), I/O waits for a path to become optimized"));
        });
    }

    [Test]
    public void Replicas_whose_listeners_the_node_does_not_know_are_counted_as_missing()
    {
        Path("nvme0", 4420, "live", "optimized");

        var report = VolumePathReport.Read(new NvmeSysfs(_sys.SysRoot), Host, Volume(2, "10.0.0.1:4420"));

        Assert.Multiple(() =>
        {
            Assert.That(report.IsDegraded, Is.True);
            Assert.That(report.Describe(), Is.EqualTo("1 live path for 2 replicas: 10.0.0.1:4420 (nvme0, optimized); 1 replica's listener is not known to this node"));
        });
    }

    [Test]
    public void One_replica_with_a_subsystem_without_ana_is_whole_and_other_hosts_controllers_do_not_count()
    {
        _sys.AddController("nvme0", Nqn, Host, "traddr=10.0.0.1,trsvcid=4420");
        _sys.AddPath("nvme0", "nvme0c0n1", Uuid, anaState: null);
        _sys.AddController("nvme1", Nqn, "nqn.2026-11.io.csinvme:node:other", "traddr=10.0.0.1,trsvcid=4420");

        var report = VolumePathReport.Read(new NvmeSysfs(_sys.SysRoot), Host, Volume(1, "10.0.0.1:4420"));

        Assert.Multiple(() =>
        {
            Assert.That(report.Paths, Is.EqualTo(new[] { new VolumePath("10.0.0.1:4420", "nvme0", "live", VolumePath.NoAnaState) }));
            Assert.That(report.IsDegraded, Is.False, "without ANA a live path serves I/O");
        });
    }
}
