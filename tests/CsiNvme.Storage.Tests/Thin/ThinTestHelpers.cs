using CsiNvme.Storage.Thin;

namespace CsiNvme.Storage.Tests.Thin;

/// <summary>Shared steps of the thin pool tests: opening a pool in a temp directory, patterns, whole-image reads.</summary>
internal static class ThinTestHelpers
{
    public const int Cluster = 64 * 1024;

    public static ThinPoolOptions Options(TempDirectory dir, long sizeBytes = 64L << 20, int clusterSize = Cluster, long? compactThreshold = null) => new()
    {
        DataPath = dir.Combine("pool.img"),
        SizeBytes = sizeBytes,
        ClusterSize = clusterSize,
        // Tests decide when metadata becomes durable; a background commit would hide ordering mistakes.
        CommitInterval = TimeSpan.FromHours(1),
        CompactThresholdBytes = compactThreshold ?? 64L * 1024 * 1024,
    };

    /// <summary>A copy with other paths (the options type has init-only properties, not a record's <c>with</c>).</summary>
    public static ThinPoolOptions WithPaths(this ThinPoolOptions options, string? dataPath = null, string? journalPath = null) => new()
    {
        DataPath = dataPath ?? options.DataPath,
        JournalPath = journalPath ?? options.JournalPath,
        SizeBytes = options.SizeBytes,
        ClusterSize = options.ClusterSize,
        CommitInterval = options.CommitInterval,
        CompactThresholdBytes = options.CompactThresholdBytes,
    };

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static void WriteOk(IBlockVolume volume, long offset, byte[] data, bool fua = false) =>
        Assert.That(volume.Write(offset, data, fua), Is.EqualTo(StorageStatus.Success), $"write of {data.Length} bytes at {offset}");

    public static byte[] ReadAll(IBlockVolume volume)
    {
        var all = new byte[volume.SizeBytes];
        Assert.That(volume.Read(0, all), Is.EqualTo(StorageStatus.Success), "read of the whole volume");
        return all;
    }

    public static byte[] ReadRange(IBlockVolume volume, long offset, int length)
    {
        var data = new byte[length];
        Assert.That(volume.Read(offset, data), Is.EqualTo(StorageStatus.Success), $"read of {length} bytes at {offset}");
        return data;
    }

    /// <summary>Reads any image, snapshots included, without changing the pool.</summary>
    public static byte[] ReadImage(ThinPool pool, Guid id)
    {
        var info = pool.GetImage(id) ?? throw new AssertionException($"image {id} is missing");
        var all = new byte[info.SizeBytes];
        Assert.That(pool.ReadImage(id, 0, all), Is.EqualTo(StorageStatus.Success), $"read of image {id}");
        return all;
    }

    public static void AssertConsistent(ThinPool pool, string? context = null)
    {
        var report = pool.Check();
        Assert.That(report.Errors, Is.Empty, $"Check() errors {context}");
        Assert.That(report.LeakedClustersReclaimed, Is.Zero, $"Check() found leaked clusters {context}");
        Assert.That(report.AllocatedClusters * pool.ClusterSize, Is.EqualTo(pool.UsedBytes), $"allocated clusters vs UsedBytes {context}");
    }

    public static bool IsZero(ReadOnlySpan<byte> data) => !data.ContainsAnyExcept((byte)0);
}
