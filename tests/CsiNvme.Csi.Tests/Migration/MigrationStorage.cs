using CsiNvme.Api.V1;
using CsiNvme.TestSupport;
using Grpc.Net.Client;
using ControllerClient = Csi.V1.Controller.ControllerClient;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>
/// The storage a migration runs on, on the host: storage server processes (a single server, or three cluster nodes
/// sharing an etcd) and the CSI driver in controller mode in this process, pointed at one of them, as the
/// external-attacher and external-provisioner would reach it.
/// </summary>
internal sealed class MigrationStorage : IAsyncDisposable
{
    private readonly TempDirectory _root;
    private readonly EtcdServer? _etcd;
    private readonly GrpcChannel _controllerChannel;

    private MigrationStorage(string name, TempDirectory root, EtcdServer? etcd, Dictionary<string, ServerProcess> nodes, string controllerNode, CsiDriver driver, int replicas)
    {
        Name = name;
        _root = root;
        _etcd = etcd;
        Nodes = nodes;
        ControllerNode = controllerNode;
        Driver = driver;
        Replicas = replicas;
        _controllerChannel = driver.Endpoint.CreateChannel();
        Controller = new ControllerClient(_controllerChannel);
    }

    /// <summary>"single server" or "3-node cluster".</summary>
    public string Name { get; }

    public Dictionary<string, ServerProcess> Nodes { get; }

    /// <summary>The node whose management API the CSI controller calls (never the one a storage event takes away).</summary>
    public string ControllerNode { get; }

    public CsiDriver Driver { get; }

    public ControllerClient Controller { get; }

    public int Replicas { get; }

    public bool IsCluster => _etcd is not null;

    public VolumeService.VolumeServiceClient Management => Nodes[ControllerNode].Volumes;

    public NodeService.NodeServiceClient NodeApi => new(Nodes[ControllerNode].Channel);

    /// <summary>StorageClass parameters of the disks: connection timeouts short enough for a test, replicas in a cluster.</summary>
    public Dictionary<string, string> VolumeParameters => IsCluster
        ? new() { ["replicas"] = Replicas.ToString(System.Globalization.CultureInfo.InvariantCulture), ["reconnectDelay"] = "2", ["ctrlLossTmo"] = "60", ["fastIoFailTmo"] = "-1" }
        : new() { ["ctrlLossTmo"] = "30", ["reconnectDelay"] = "2", ["fastIoFailTmo"] = "5" };

    public static async Task<MigrationStorage> SingleServerAsync()
    {
        var root = new TempDirectory("migration-single");
        var nodes = new Dictionary<string, ServerProcess>(StringComparer.Ordinal);
        try
        {
            nodes["local"] = await ServerProcess.StartAsync(root.CreateSubdirectory("server"), ["--backend", "thin"]);
            return await WithDriverAsync("single server", root, null, nodes, "local", 1);
        }
        catch
        {
            await DisposeAllAsync(nodes.Values, null, root);
            throw;
        }
    }

    /// <summary>Three storage nodes (node-a, node-b, node-c) on one etcd; volumes get three replicas; the controller calls node-c.</summary>
    public static async Task<MigrationStorage> ClusterAsync()
    {
        EtcdServer.Require();
        var root = new TempDirectory("migration-cluster");
        var nodes = new Dictionary<string, ServerProcess>(StringComparer.Ordinal);
        EtcdServer? etcd = null;
        try
        {
            etcd = await EtcdServer.StartAsync();
            foreach (var name in new[] { "node-a", "node-b", "node-c" })
            {
                nodes[name] = await ServerProcess.StartAsync(root.CreateSubdirectory(name),
                    // The servers listen on the host's loopback, which the guests reach as 10.0.2.2 (QEMU's user network):
                    // discovery logs and listen addresses name that, so the guests' path keepers can dial what they list.
                    ["--backend", "thin", "--etcd-endpoints", etcd.ClientUrl, "--node-name", name, "--lease-ttl", "2", "--host-address", LinuxGuest.HostAddress]);
            }

            return await WithDriverAsync("3-node cluster", root, etcd, nodes, "node-c", 3);
        }
        catch
        {
            await DisposeAllAsync(nodes.Values, etcd, root);
            throw;
        }
    }

    /// <summary>The node that is primary of <paramref name="volume"/> now.</summary>
    public async Task<string> PrimaryOfAsync(string volume) =>
        (await Management.GetVolumeAsync(new GetVolumeRequest { Name = volume })).Primary;

    /// <summary>Ends a storage node abruptly (SIGKILL), as a crash or power loss would.</summary>
    public void Kill(string node) => Nodes[node].Kill();

    public string OutputTail(int lines = 40) => string.Join("\n", Nodes.Select(n => $"----- {n.Key} -----\n{n.Value.OutputTail(lines)}"));

    public async ValueTask DisposeAsync()
    {
        _controllerChannel.Dispose();
        await Driver.DisposeAsync();
        await DisposeAllAsync(Nodes.Values, _etcd, _root);
    }

    private static async Task<MigrationStorage> WithDriverAsync(string name, TempDirectory root, EtcdServer? etcd, Dictionary<string, ServerProcess> nodes, string controllerNode, int replicas)
    {
        var options = CsiHarness.DriverOptions(root.Combine("csi.sock"), nodes[controllerNode].ManagementEndpoint.ToString());
        var driver = await CsiDriver.StartAsync(options);
        return new MigrationStorage(name, root, etcd, nodes, controllerNode, driver, replicas);
    }

    private static async Task DisposeAllAsync(IEnumerable<ServerProcess> nodes, EtcdServer? etcd, TempDirectory root)
    {
        foreach (var node in nodes)
        {
            await node.DisposeAsync();
        }

        if (etcd is not null)
        {
            await etcd.DisposeAsync();
        }

        root.Dispose();
    }
}
