using System.Globalization;
using CsiNvme.Api;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// StorageClass parameters of CreateVolume. Keys the node uses are validated here, so a typo fails the
/// PersistentVolumeClaim at once instead of at the first mount, and copied into volume_context:
/// <list type="bullet">
/// <item>ctrlLossTmo: seconds the kernel keeps reconnecting a lost controller, -1 = forever (node default 600)</item>
/// <item>reconnectDelay: seconds between reconnect attempts, &gt;= 1 (default 10)</item>
/// <item>fastIoFailTmo: seconds before I/O fails during a reconnect, -1 = never (default 15)</item>
/// <item>keepAliveTmo: NVMe keep-alive timeout in seconds, 1..65535 (default 5)</item>
/// <item>nrIoQueues: I/O queues per controller, 0 = kernel default</item>
/// <item>headerDigest, dataDigest: "true" or "false" (default false)</item>
/// <item>disableSqFlow: "true" or "false" (default true): connect I/O queues without SQ flow control</item>
/// <item>replicas: 1..3 (default 1): how many storage nodes hold the volume, which is how many paths the node
/// expects (fewer live paths make the volume abnormal) and picks the single-path or the multipath connection defaults by</item>
/// </list>
/// Keys the controller uses: blockSize (512 or 4096, the logical block size hosts see; default 512) and
/// pool (the storage pool; default: the pool with the most free space). Keys starting with
/// "csi.storage.k8s.io/" (added by the external-provisioner) are ignored; any other key is refused.
/// <para>
/// Mutable parameters (a VolumeAttributesClass's, passed to CreateVolume and ControllerModifyVolume): replicas only, the
/// one property of a volume that can change while it serves. At creation they take precedence over the StorageClass's.
/// </para>
/// </summary>
public sealed class VolumeParameters
{
    public const string PoolKey = "pool";
    public const string BlockSizeKey = "blockSize";
    public const string ReplicasKey = "replicas";
    public const int MaxReplicas = VolumeReplicas.Max;
    private const string KubernetesPrefix = "csi.storage.k8s.io/";

    private static readonly (string Key, int Min, int Max)[] _nodeIntegers =
    [
        ("ctrlLossTmo", -1, 1_000_000),
        ("reconnectDelay", 1, 100_000),
        ("fastIoFailTmo", -1, 1_000_000),
        ("keepAliveTmo", 1, 65_535),
        ("nrIoQueues", 0, 1024),
        (ReplicasKey, 1, MaxReplicas),
    ];

    private static readonly string[] _nodeBooleans = ["headerDigest", "dataDigest", "disableSqFlow"];

    private VolumeParameters(uint blockSize, string pool, Dictionary<string, string> nodeContext)
    {
        BlockSize = blockSize;
        Pool = pool;
        NodeContext = nodeContext;
    }

    /// <summary>0 when not given (the server's default, or the source's for a clone).</summary>
    public uint BlockSize { get; }

    /// <summary>Empty when not given.</summary>
    public string Pool { get; }

    /// <summary>Replicas the volume is to have; 1 when not given. The node reads it from volume_context too.</summary>
    public int Replicas => NodeContext.TryGetValue(ReplicasKey, out var text) ? int.Parse(text, CultureInfo.InvariantCulture) : 1;

    /// <summary>The node's keys, normalized ("TRUE" -> "true"), for volume_context.</summary>
    public IReadOnlyDictionary<string, string> NodeContext { get; }

    public static VolumeParameters Parse(IReadOnlyDictionary<string, string> parameters, out string? error)
    {
        uint blockSize = 0;
        var pool = string.Empty;
        var node = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in parameters)
        {
            if (key.StartsWith(KubernetesPrefix, StringComparison.Ordinal))
            {
                continue;
            }

            if (key == BlockSizeKey)
            {
                if (value is not ("512" or "4096"))
                {
                    error = $"parameter {key}='{value}' must be 512 or 4096";
                    return Empty;
                }

                blockSize = uint.Parse(value, CultureInfo.InvariantCulture);
                continue;
            }

            if (key == PoolKey)
            {
                if (string.IsNullOrWhiteSpace(value))
                {
                    error = $"parameter {key} is empty";
                    return Empty;
                }

                pool = value;
                continue;
            }

            var integer = Array.FindIndex(_nodeIntegers, n => n.Key == key);
            if (integer >= 0)
            {
                var (_, min, max) = _nodeIntegers[integer];
                if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) || number < min || number > max)
                {
                    error = $"parameter {key}='{value}' must be an integer from {min} to {max}";
                    return Empty;
                }

                node[key] = number.ToString(CultureInfo.InvariantCulture);
                continue;
            }

            if (_nodeBooleans.Contains(key, StringComparer.Ordinal))
            {
                if (!bool.TryParse(value, out var flag))
                {
                    error = $"parameter {key}='{value}' must be true or false";
                    return Empty;
                }

                node[key] = flag ? "true" : "false";
                continue;
            }

            error = $"unknown parameter '{key}' (known: {BlockSizeKey}, {PoolKey}, {string.Join(", ", _nodeIntegers.Select(n => n.Key))}, {string.Join(", ", _nodeBooleans)})";
            return Empty;
        }

        error = null;
        return new VolumeParameters(blockSize, pool, node);
    }

    /// <summary>
    /// The replica count of a VolumeAttributesClass's parameters: null when they do not name it (the only key they may
    /// have), or an error for another key or a value out of range.
    /// </summary>
    public static int? ParseMutable(IReadOnlyDictionary<string, string> mutableParameters, out string? error)
    {
        int? replicas = null;
        foreach (var (key, value) in mutableParameters)
        {
            if (key != ReplicasKey)
            {
                error = $"mutable parameter '{key}' is not supported: only {ReplicasKey} can change on a volume (its size changes by expansion)";
                return null;
            }

            if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > MaxReplicas)
            {
                error = $"mutable parameter {key}='{value}' must be an integer from 1 to {MaxReplicas}";
                return null;
            }

            replicas = number;
        }

        error = null;
        return replicas;
    }

    /// <summary>These parameters with a VolumeAttributesClass's over them (they take precedence, CSI CreateVolumeRequest).</summary>
    public VolumeParameters WithMutable(IReadOnlyDictionary<string, string> mutableParameters, out string? error)
    {
        if (ParseMutable(mutableParameters, out error) is not { } replicas)
        {
            return this;
        }

        var context = new Dictionary<string, string>(NodeContext, StringComparer.Ordinal)
        {
            [ReplicasKey] = replicas.ToString(CultureInfo.InvariantCulture),
        };
        return new VolumeParameters(BlockSize, Pool, context);
    }

    private static VolumeParameters Empty { get; } = new(0, string.Empty, []);
}
