using System.Diagnostics;

namespace CsiNvme.Storage.Tests;

public sealed class FileBlockVolumeTests
{
    private const int MiB = 1 << 20;
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("csinvme-storage");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void DataSurvivesReopen()
    {
        string path = _dir.Combine("v.img");
        byte[] data = VolumeFactory.Pattern(64 * 1024, seed: 7);
        using (FileBlockVolume volume = FileBlockVolume.Create(path, 8 * MiB, 4096))
        {
            Assert.That(volume.Write(5 * MiB, data, forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
            volume.Resize(16 * MiB);
            Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));
        }

        using FileBlockVolume reopened = FileBlockVolume.Open(path, 4096);
        Assert.That(reopened.SizeBytes, Is.EqualTo(16 * MiB));
        Assert.That(reopened.BlockSize, Is.EqualTo(4096));
        var back = new byte[data.Length];
        Assert.That(reopened.Read(5 * MiB, back), Is.EqualTo(StorageStatus.Success));
        Assert.That(back, Is.EqualTo(data));
    }

    [Test]
    public void CreateRefusesAnExistingFile()
    {
        string path = _dir.Combine("v.img");
        File.WriteAllBytes(path, new byte[4096]);
        Assert.That(() => FileBlockVolume.Create(path, MiB, 512), Throws.InstanceOf<IOException>());
        Assert.That(new FileInfo(path).Length, Is.EqualTo(4096), "the existing file is left alone");
    }

    [Test]
    public void OpenRefusesALengthThatIsNotWholeBlocks()
    {
        string path = _dir.Combine("v.img");
        File.WriteAllBytes(path, new byte[4096 + 512]);
        Assert.That(() => FileBlockVolume.Open(path, 4096), Throws.InstanceOf<InvalidDataException>());
    }

    [Test]
    public void ASecondOpenOfTheSameFileIsRefused()
    {
        string path = _dir.Combine("v.img");
        using FileBlockVolume volume = FileBlockVolume.Create(path, MiB, 512);
        Assert.That(() => FileBlockVolume.Open(path, 512), Throws.InstanceOf<IOException>());
    }

    [Test]
    public void NewVolumesAreSparseAndDeallocatePunchesHoles()
    {
        string path = _dir.Combine("v.img");
        using FileBlockVolume volume = FileBlockVolume.Create(path, 1024L * MiB, 4096);
        Assert.That(AllocatedBytes(path), Is.LessThan(MiB), "a 1 GiB volume starts without data blocks");

        Assert.That(volume.Write(0, VolumeFactory.Pattern(8 * MiB, 8), forceUnitAccess: true), Is.EqualTo(StorageStatus.Success));
        Assert.That(AllocatedBytes(path), Is.GreaterThanOrEqualTo(8 * MiB));

        Assert.That(volume.Deallocate(0, 8 * MiB), Is.EqualTo(StorageStatus.Success));
        Assert.That(volume.Flush(), Is.EqualTo(StorageStatus.Success));
        Assert.That(AllocatedBytes(path), Is.LessThan(MiB));
        Assert.That(new FileInfo(path).Length, Is.EqualTo(1024L * MiB), "punching keeps the size");
    }

    [Test]
    public void ZeroingByWritingIsCorrectWhereHolesCannotBePunched()
    {
        using FileBlockVolume volume = FileBlockVolume.Create(_dir.Combine("v.img"), 4 * MiB, 512);
        byte[] data = VolumeFactory.Pattern(4 * MiB, 9);
        Assert.That(volume.Write(0, data, forceUnitAccess: false), Is.EqualTo(StorageStatus.Success));

        Assert.That(volume.WriteZeroBytes(512, 3 * MiB), Is.EqualTo(StorageStatus.Success));

        var back = new byte[data.Length];
        Assert.That(volume.Read(0, back), Is.EqualTo(StorageStatus.Success));
        Array.Clear(data, 512, 3 * MiB);
        Assert.That(back, Is.EqualTo(data));
    }

    [TestCase(0, StorageStatus.Success)]
    [TestCase(28, StorageStatus.CapacityExceeded)] // ENOSPC
    [TestCase(122, StorageStatus.CapacityExceeded)] // EDQUOT
    [TestCase(5, StorageStatus.MediaError)] // EIO
    [TestCase(9, StorageStatus.MediaError)] // EBADF
    public void ErrnoMapsOntoStorageStatus(int errno, StorageStatus expected)
    {
        Assert.That(FileBlockVolume.StatusFromErrno(errno), Is.EqualTo(expected));
    }

    [Test]
    public void AFullDeviceReportsCapacityExceeded()
    {
        // /dev/full fails every write with ENOSPC: the real errno path through RandomAccess.Write.
        if (!File.Exists("/dev/full"))
        {
            Assert.Ignore("/dev/full is not available");
        }

        using var full = File.OpenHandle("/dev/full", FileMode.Open, FileAccess.Write);
        IOException? failure = null;
        try
        {
            RandomAccess.Write(full, new byte[512], 0);
        }
        catch (IOException e)
        {
            failure = e;
        }

        Assert.That(failure, Is.Not.Null);
        Assert.That(FileBlockVolume.StatusFromErrno(failure!.HResult), Is.EqualTo(StorageStatus.CapacityExceeded));
    }

    private static long AllocatedBytes(string path)
    {
        // st_blocks is in 512-byte units whatever the file system block size.
        var start = new ProcessStartInfo("stat", ["-c", "%b", path]) { RedirectStandardOutput = true };
        using Process process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        Assert.That(process.WaitForExit(10_000), Is.True);
        return long.Parse(output.Trim()) * 512;
    }
}
