using CsiNvme.Csi.Node;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

[TestFixture]
public sealed class MountTableTests
{
    private const string Sample = """
        22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
        36 35 259:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/nvme.csinvme.io/abc/globalmount rw,noatime shared:40 master:1 - ext4 /dev/nvme0n1 rw
        37 22 259:0 / /var/lib/kubelet/pods/p\0401/volumes/kubernetes.io~csi/pvc/mount ro,relatime - ext4 /dev/nvme0n1 rw
        38 22 0:5 /nvme1n1 /var/lib/kubelet/pods/p2/volumeDevices/disk rw,relatime - devtmpfs udev rw,size=10k
        garbage line
        """;

    [Test]
    public void Fields_optional_tags_and_octal_escapes_are_parsed()
    {
        var table = MountTable.Parse(Sample);

        Assert.That(table, Has.Count.EqualTo(4));
        var staging = table[1];
        Assert.Multiple(() =>
        {
            Assert.That((staging.Id, staging.ParentId, staging.Major, staging.Minor), Is.EqualTo((36, 35, 259, 0)));
            Assert.That(staging.MountPoint, Is.EqualTo("/var/lib/kubelet/plugins/kubernetes.io/csi/nvme.csinvme.io/abc/globalmount"));
            Assert.That(staging.FsType, Is.EqualTo("ext4"));
            Assert.That(staging.Source, Is.EqualTo("/dev/nvme0n1"));
            Assert.That(staging.IsReadOnly, Is.False);
            Assert.That(table[2].MountPoint, Is.EqualTo("/var/lib/kubelet/pods/p 1/volumes/kubernetes.io~csi/pvc/mount"));
            Assert.That(table[2].IsReadOnly, Is.True);
            Assert.That(table[3].Root, Is.EqualTo("/nvme1n1"));
            Assert.That(table[3].SuperOptions, Is.EqualTo("rw,size=10k"));
        });
    }

    [Test]
    public void Mounts_at_a_path_match_regardless_of_a_trailing_slash()
    {
        var table = MountTable.Parse(Sample);
        Assert.That(MountTable.At(table, "/var/lib/kubelet/pods/p2/volumeDevices/disk/").Single().Id, Is.EqualTo(38));
    }

    [Test]
    public void This_process_mount_table_parses_and_has_a_root_mount()
    {
        var table = new LinuxNodePlatform().Mounts();
        Assert.That(table.Any(m => m.MountPoint == "/"), Is.True);
    }
}
