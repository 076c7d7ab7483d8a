using CsiNvme.Csi.Node;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

[TestFixture]
public sealed class FilesystemSignatureTests
{
    private static byte[] Blank() => new byte[FilesystemSignature.ProbeLength];

    [Test]
    public void Zeros_and_short_devices_are_blank()
    {
        Assert.Multiple(() =>
        {
            Assert.That(FilesystemSignature.Detect(Blank()).Content, Is.EqualTo(DeviceContent.Blank));
            Assert.That(FilesystemSignature.Detect(new byte[100]).Content, Is.EqualTo(DeviceContent.Blank));
        });
    }

    [Test]
    public void Ext_superblock_magic_is_ext4()
    {
        var head = Blank();
        head[1024 + 0x38] = 0x53;
        head[1024 + 0x39] = 0xEF;
        Assert.That(FilesystemSignature.Detect(head).Content, Is.EqualTo(DeviceContent.Ext4));
    }

    [Test]
    public void Xfs_superblock_magic_is_xfs()
    {
        var head = Blank();
        "XFSB"u8.CopyTo(head);
        Assert.That(FilesystemSignature.Detect(head).Content, Is.EqualTo(DeviceContent.Xfs));
    }

    [TestCase(0, new byte[] { 0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE }, "LUKS")]
    [TestCase(512, new byte[] { 0x45, 0x46, 0x49, 0x20, 0x50, 0x41, 0x52, 0x54 }, "GPT")]
    [TestCase(0x10040, new byte[] { 0x5F, 0x42, 0x48, 0x52, 0x66, 0x53, 0x5F, 0x4D }, "btrfs")]
    [TestCase(4086, new byte[] { 0x53, 0x57, 0x41, 0x50, 0x53, 0x50, 0x41, 0x43, 0x45, 0x32 }, "swap")]
    [TestCase(65526, new byte[] { 0x53, 0x57, 0x41, 0x50, 0x53, 0x50, 0x41, 0x43, 0x45, 0x32 }, "swap")]
    [TestCase(0x8001, new byte[] { 0x43, 0x44, 0x30, 0x30, 0x31 }, "iso9660")]
    public void Other_signatures_are_never_blank(int offset, byte[] magic, string expected)
    {
        var head = Blank();
        magic.CopyTo(head, offset);
        Assert.That(FilesystemSignature.Detect(head), Is.EqualTo((DeviceContent.Other, FilesystemSignature.Detect(head).Description)));
        Assert.That(FilesystemSignature.Detect(head).Description, Does.Contain(expected));
    }

    [Test]
    public void A_dos_partition_table_with_an_entry_is_not_blank_but_a_bare_boot_signature_is()
    {
        var head = Blank();
        head[510] = 0x55;
        head[511] = 0xAA;
        Assert.That(FilesystemSignature.Detect(head).Content, Is.EqualTo(DeviceContent.Blank));
        head[446 + 4] = 0x83;
        Assert.That(FilesystemSignature.Detect(head).Content, Is.EqualTo(DeviceContent.Other));
    }

    [Test]
    public async Task Images_made_by_mkfs_ext4_are_recognised_and_so_is_a_blank_image()
    {
        using var temp = new TempDirectory("fs-signature");
        var image = temp.Combine("ext4.img");
        var blank = temp.Combine("blank.img");
        foreach (var path in new[] { image, blank })
        {
            using var file = File.Create(path);
            file.SetLength(16 << 20);
        }

        var mkfs = new LinuxNodePlatform().FindTool("mkfs.ext4");
        if (mkfs is null)
        {
            Assert.Ignore("mkfs.ext4 (e2fsprogs) is not installed");
        }

        var result = await ProcessRunner.RunAsync(mkfs, ["-F", "-q", image], TimeSpan.FromMinutes(1));
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Output);
        Assert.Multiple(() =>
        {
            Assert.That(FilesystemSignature.Probe(image).Content, Is.EqualTo(DeviceContent.Ext4));
            Assert.That(FilesystemSignature.Probe(blank).Content, Is.EqualTo(DeviceContent.Blank));
        });
    }
}
