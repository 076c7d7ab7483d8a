using CsiNvme.Api;

namespace CsiNvme.Volumes;

/// <summary>The rules every volume follows, whoever stores its record: names, sizes, block sizes, labels, host NQNs.</summary>
public static class VolumeRules
{
    /// <summary>VMs moving off SANs expect 512-byte logical blocks; 4096 is available on request.</summary>
    public const int DefaultBlockSize = 512;

    /// <summary>Sizes are rounded up to this, so every volume is whole 4 KiB blocks whatever its block size.</summary>
    public const long SizeGranularity = 4096;

    /// <summary>Largest volume accepted; beyond what a single sparse file on ext4 (16 TiB) or XFS handles comfortably.</summary>
    public const long MaxVolumeSizeBytes = 64L << 40;

    /// <summary>Every volume is exported as NSID 1 of its own subsystem.</summary>
    public const uint NamespaceId = 1;

    /// <summary>A replica count asked of a volume: 1 to <see cref="VolumeReplicas.Max"/>.</summary>
    public static void ValidateReplicaCount(uint replicas)
    {
        if (replicas is 0 or > VolumeReplicas.Max)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"{replicas} replicas asked; a volume keeps 1 to {VolumeReplicas.Max}");
        }
    }

    public static void ValidateName(string name, string? what = null)
    {
        if (!VolumeNaming.IsValidVolumeName(name, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, what is null ? error! : $"{what}: {error}");
        }
    }

    public static IReadOnlyDictionary<string, string> ValidateLabels(IReadOnlyDictionary<string, string>? labels)
    {
        if (!VolumeLabels.IsValid(labels, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, error!);
        }

        return labels is null ? new Dictionary<string, string>() : new Dictionary<string, string>(labels, StringComparer.Ordinal);
    }

    public static void ValidateHostNqn(string hostNqn)
    {
        if (!VolumeNaming.IsValidNqn(hostNqn, out var error))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"host NQN: {error}");
        }
    }

    /// <summary>The allowed hosts of a new volume, validated, without duplicates, in order.</summary>
    public static string[] ValidateHosts(IEnumerable<string> hosts)
    {
        var sorted = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var host in hosts)
        {
            ValidateHostNqn(host);
            sorted.Add(host);
        }

        return [.. sorted];
    }

    public static int ValidateBlockSize(uint blockSize)
    {
        if (blockSize is not (0 or 512 or 4096))
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"block size {blockSize} is not supported; use 512 or 4096");
        }

        return blockSize == 0 ? DefaultBlockSize : (int)blockSize;
    }

    /// <summary>Rounds a requested size up to <see cref="SizeGranularity"/>; zero and sizes past the maximum are refused.</summary>
    public static long RoundSize(ulong requested)
    {
        if (requested == 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "size must be greater than zero");
        }

        if (requested > (ulong)MaxVolumeSizeBytes)
        {
            throw new VolumeException(
                VolumeError.InvalidArgument,
                $"size {requested} bytes is larger than the maximum of {MaxVolumeSizeBytes} bytes ({ByteSize.Format(MaxVolumeSizeBytes)})");
        }

        return ((long)requested + SizeGranularity - 1) / SizeGranularity * SizeGranularity;
    }

    /// <summary>Identify Controller SN is 20 ASCII characters: the first 20 hex digits of the volume id.</summary>
    public static string SerialNumberOf(Guid id) => id.ToString("N")[..20];

    /// <summary>Creation time as stored: whole milliseconds.</summary>
    public static DateTimeOffset Now() => DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
}
