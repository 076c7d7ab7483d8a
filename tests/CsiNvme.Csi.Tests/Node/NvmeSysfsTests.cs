using CsiNvme.Csi.Node;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

[TestFixture]
public sealed class NvmeSysfsTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:6f1c";
    private const string Host = "nqn.2026-11.io.csinvme:node:n1";
    private const string Uuid = "5d0c2f6a9b7e4c1d8e3f2a1b0c9d8e7f";
    private const string Nguid = "00112233445566778899aabbccddeeff";

    private FakeSysfs _sys = null!;

    [SetUp]
    public void SetUp() => _sys = new FakeSysfs();

    [TearDown]
    public void TearDown() => _sys.Dispose();

    [Test]
    public void Namespace_is_found_by_its_uuid_as_sysfs_prints_it()
    {
        _sys.AddNamespace("nvme0n1", "ffffffffffffffffffffffffffffffff", null, 259, 0, 2048);
        _sys.AddNamespace("nvme1n1", Uuid, Nguid, 259, 3, 131072);

        var device = new NvmeSysfs(_sys.SysRoot).FindNamespace(Uuid.ToUpperInvariant(), null);

        Assert.That(device, Is.EqualTo(new NvmeBlockDevice("nvme1n1", 259, 3, 131072L * 512)));
    }

    [Test]
    public void Namespace_is_found_by_nguid_when_it_has_no_uuid()
    {
        _sys.AddNamespace("nvme2n1", null, Nguid, 259, 5, 100);

        Assert.That(new NvmeSysfs(_sys.SysRoot).FindNamespace(Uuid, FakeSysfs.Dashed(Nguid))?.Name, Is.EqualTo("nvme2n1"));
    }

    [Test]
    public void Namespace_is_found_by_wwid_when_the_identifier_attributes_are_hidden()
    {
        _sys.AddNamespace("nvme3n2", null, null, 259, 7, 100, wwid: "uuid." + FakeSysfs.Dashed(Uuid));
        _sys.AddNamespace("nvme4n1", null, null, 259, 8, 100, wwid: "eui." + Nguid);
        var sysfs = new NvmeSysfs(_sys.SysRoot);

        Assert.Multiple(() =>
        {
            Assert.That(sysfs.FindNamespace(Uuid, null)?.Name, Is.EqualTo("nvme3n2"));
            Assert.That(sysfs.FindNamespace(null, Nguid)?.Name, Is.EqualTo("nvme4n1"));
        });
    }

    [Test]
    public void Per_path_devices_of_native_multipath_and_partitions_are_never_chosen()
    {
        _sys.AddNamespace("nvme0c0n1", Uuid, Nguid, 259, 1, 100);
        _sys.AddNamespace("nvme0n1p1", Uuid, Nguid, 259, 2, 100);
        var sysfs = new NvmeSysfs(_sys.SysRoot);
        Assert.That(sysfs.FindNamespace(Uuid, Nguid), Is.Null);

        _sys.AddNamespace("nvme0n1", Uuid, Nguid, 259, 0, 100);
        Assert.That(sysfs.FindNamespace(Uuid, Nguid)?.Name, Is.EqualTo("nvme0n1"));
    }

    [Test]
    public void Missing_namespace_or_missing_block_directory_is_null_and_no_identifier_is_an_error()
    {
        var sysfs = new NvmeSysfs(_sys.SysRoot);
        Assert.Multiple(() =>
        {
            Assert.That(sysfs.FindNamespace(Uuid, Nguid), Is.Null);
            Assert.That(() => sysfs.FindNamespace("", " "), Throws.ArgumentException);
        });
    }

    [Test]
    public void Controllers_are_read_with_address_fields_and_filtered_by_subsystem_and_host()
    {
        _sys.AddController("nvme10", Nqn, Host, "traddr=10.0.2.2,trsvcid=4420,src_addr=10.0.2.15");
        _sys.AddController("nvme2", Nqn, Host, "traddr=10.0.2.3,trsvcid=4421", state: "connecting");
        _sys.AddController("nvme3", Nqn, "nqn.other-host", "traddr=10.0.2.2,trsvcid=4420");
        _sys.AddController("nvme4", "nqn.other-subsystem", Host, "traddr=10.0.2.2,trsvcid=4420");
        var sysfs = new NvmeSysfs(_sys.SysRoot);

        var mine = sysfs.ControllersOf(Nqn, Host);

        Assert.Multiple(() =>
        {
            Assert.That(sysfs.Controllers().Select(c => c.Name), Is.EqualTo(new[] { "nvme2", "nvme3", "nvme4", "nvme10" }));
            Assert.That(mine.Select(c => c.Name), Is.EqualTo(new[] { "nvme2", "nvme10" }));
            Assert.That(mine[1].TransportAddress, Is.EqualTo("10.0.2.2"));
            Assert.That(mine[1].TransportServiceId, Is.EqualTo(4420));
            Assert.That(mine[1].IsLive, Is.True);
            Assert.That(mine[0].IsLive, Is.False);
            Assert.That(mine[0].IsActive, Is.True);
            Assert.That(mine[1].Matches(new FabricsTarget("10.0.2.2", 4420)), Is.True);
            Assert.That(mine[1].Matches(new FabricsTarget("10.0.2.2", 4421)), Is.False);
            Assert.That(mine[0].Matches(new FabricsTarget("10.0.2.3", 4421)), Is.True);
        });
    }

    [Test]
    public void Deleting_controllers_are_not_active_and_a_vanished_one_is_skipped()
    {
        _sys.AddController("nvme0", Nqn, Host, "traddr=10.0.2.2,trsvcid=4420", state: "deleting");
        Directory.CreateDirectory(Path.Combine(_sys.SysRoot, "class", "nvme", "nvme1"));
        var controllers = new NvmeSysfs(_sys.SysRoot).Controllers();
        Assert.That(controllers.Select(c => (c.Name, c.IsActive)), Is.EqualTo(new[] { ("nvme0", false) }));
    }

    [Test]
    public void Controller_attributes_are_written_and_sizes_reread()
    {
        _sys.AddController("nvme0", Nqn, Host, "traddr=10.0.2.2,trsvcid=4420");
        _sys.AddNamespace("nvme0n1", Uuid, null, 259, 0, 2048);
        var sysfs = new NvmeSysfs(_sys.SysRoot);

        sysfs.WriteControllerAttribute("nvme0", "rescan_controller", "1");
        _sys.SetSize("nvme0n1", 4096);

        Assert.Multiple(() =>
        {
            Assert.That(_sys.ReadControllerAttribute("nvme0", "rescan_controller"), Is.EqualTo("1"));
            Assert.That(sysfs.ReadBlockDevice("nvme0n1")?.SizeBytes, Is.EqualTo(4096L * 512));
            Assert.That(sysfs.ReadBlockDevice("nvme9n9"), Is.Null);
        });
    }

    [TestCase(259u, 0u, 0x10300UL)]
    [TestCase(8u, 17u, 0x811UL)]
    [TestCase(4095u, 255u, 0xFFFFFUL)]
    [TestCase(4096u, 256u, (1UL << 44) | 0x100000UL)]
    public void Device_numbers_are_encoded_as_glibc_makedev_does(uint major, uint minor, ulong expected) =>
        Assert.That(NvmeBlockDevice.MakeDev(major, minor), Is.EqualTo(expected));
}
