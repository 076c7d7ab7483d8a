namespace CsiNvme.Csi.Node;

/// <summary>Settings of the node service.</summary>
public sealed class NodeOptions
{
    public const string TopologyNodeKey = "topology.nvme.csinvme.io/node";
    public const string DefaultStateDirectory = "/var/lib/csinvme-csi/node";

    public static readonly TimeSpan DefaultPathKeeperPeriod = TimeSpan.FromSeconds(15);

    public required NodeIdentity Identity { get; init; }

    /// <summary>
    /// Where staged-volume records live. With a Unix endpoint it defaults to a folder next to the socket:
    /// Kubernetes mounts the plugin directory from the host, so the records survive a restarted driver pod.
    /// </summary>
    public string StateDirectory { get; init; } = DefaultStateDirectory;

    /// <summary>NodeGetInfo.max_volumes_per_node; see <see cref="CsiDriverOptions.MaxVolumesPerNode"/>.</summary>
    public int MaxVolumesPerNode { get; init; } = CsiDriverOptions.DefaultMaxVolumesPerNode;

    /// <summary>Connection settings for the keys a volume's context lacks (the node plugin's connection flags).</summary>
    public FabricsConnectDefaults ConnectDefaults { get; init; } = FabricsConnectDefaults.Default;

    /// <summary>
    /// How often the path keeper looks at every staged volume's paths (it also runs after each stage). Bounded by
    /// ctrl_loss_tmo: the keeper must see a volume without live paths before the kernel gives up its last one.
    /// </summary>
    public TimeSpan PathKeeperPeriod { get; init; } = DefaultPathKeeperPeriod;

    /// <summary>How long the keeper waits for a discovery controller to answer.</summary>
    public TimeSpan DiscoveryTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Topology segments reported when not running in a cluster.</summary>
    public IReadOnlyDictionary<string, string> Topology { get; init; } = new Dictionary<string, string>();

    /// <summary>How long NodeStageVolume waits for the namespace's block device after connecting.</summary>
    public TimeSpan DeviceTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long NodeExpandVolume waits for the kernel to see the new size.</summary>
    public TimeSpan ResizeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Limit for mkfs, resize2fs and xfs_growfs.</summary>
    public TimeSpan ToolTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public static NodeOptions FromDriverOptions(CsiDriverOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.NodeId))
        {
            throw new ArgumentException("the node service needs --node-id (the Kubernetes node name)");
        }

        var stateDirectory = Hosting.CsiEndpoint.TryParse(options.Endpoint, out var endpoint, out _) && endpoint!.IsUnix
            ? Path.Combine(Path.GetDirectoryName(endpoint.UnixSocketPath!) ?? "/", "node-state")
            : DefaultStateDirectory;
        return new NodeOptions
        {
            Identity = NodeIdentity.FromNodeName(options.NodeId, options.HostNqn),
            StateDirectory = stateDirectory,
            Topology = new Dictionary<string, string>(options.Topology, StringComparer.Ordinal),
            MaxVolumesPerNode = options.MaxVolumesPerNode,
            ConnectDefaults = options.NodeConnectDefaults,
            PathKeeperPeriod = options.PathKeeperPeriod,
        };
    }
}
