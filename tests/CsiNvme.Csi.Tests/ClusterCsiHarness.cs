using CsiNvme.Api.V1;
using CsiNvme.Server;
using CsiNvme.TestSupport;
using Grpc.Net.Client;
using ControllerClient = Csi.V1.Controller.ControllerClient;

namespace CsiNvme.Csi.Tests;

/// <summary>
/// A storage cluster and a CSI driver in this process: a real etcd (/usr/bin/etcd) on loopback, storage servers named
/// node-a, node-b, … each with its own data directory and thin pools, and the driver in controller mode on a Unix socket,
/// pointed at node-a's management API (any node answers for the whole cluster).
/// </summary>
internal sealed class ClusterCsiHarness : IAsyncDisposable
{
    private readonly TempDirectory _temp;
    private readonly IReadOnlyList<NodePools> _layout;
    private readonly GrpcChannel _channel;
    private readonly List<GrpcChannel> _managementChannels = [];

    private ClusterCsiHarness(TempDirectory temp, EtcdServer etcd, IReadOnlyList<NodePools> layout, Dictionary<string, StorageServer?> nodes, CsiDriver driver)
    {
        _temp = temp;
        _layout = layout;
        Etcd = etcd;
        Nodes = nodes;
        Driver = driver;
        _channel = driver.Endpoint.CreateChannel();
        Controller = new ControllerClient(_channel);
    }

    /// <summary>A node's thin pools: name and size.</summary>
    public sealed record NodePools(string Node, params (string Name, long Bytes)[] Pools);

    /// <summary>The node the driver talks to; stop it only to test a driver that lost its server.</summary>
    public const string ControllerNode = "node-a";

    public EtcdServer Etcd { get; }

    /// <summary>Every node by name; null while stopped.</summary>
    public Dictionary<string, StorageServer?> Nodes { get; }

    public CsiDriver Driver { get; }

    public ControllerClient Controller { get; }

    public GrpcChannel Channel => _channel;

    /// <summary>
    /// Three nodes whose free spaces differ: "pool0" of 256, 384 and 320 MiB, and a pool "fast" (128 and 192 MiB) on
    /// node-a and node-b only.
    /// </summary>
    public static NodePools[] ThreeNodes() =>
    [
        new("node-a", ("pool0", 256L << 20), ("fast", 128L << 20)),
        new("node-b", ("pool0", 384L << 20), ("fast", 192L << 20)),
        new("node-c", ("pool0", 320L << 20)),
    ];

    public static async Task<ClusterCsiHarness> StartAsync(IReadOnlyList<NodePools>? layout = null, Action<CsiDriverOptions>? configureDriver = null)
    {
        EtcdServer.Require();
        layout ??= ThreeNodes();
        var temp = new TempDirectory("csi-cluster");
        EtcdServer? etcd = null;
        var nodes = new Dictionary<string, StorageServer?>(StringComparer.Ordinal);
        try
        {
            etcd = await EtcdServer.StartAsync();
            foreach (var node in layout)
            {
                nodes[node.Node] = await StorageServer.StartAsync(ServerOptions(temp, etcd, node));
            }

            var driverOptions = CsiHarness.DriverOptions(temp.Combine("csi.sock"), nodes[ControllerNode]!.ManagementEndpoint.ToString());
            configureDriver?.Invoke(driverOptions);
            var driver = await CsiDriver.StartAsync(driverOptions);
            return new ClusterCsiHarness(temp, etcd, layout, nodes, driver);
        }
        catch
        {
            foreach (var server in nodes.Values)
            {
                await server!.DisposeAsync();
            }

            if (etcd is not null)
            {
                await etcd.DisposeAsync();
            }

            temp.Dispose();
            throw;
        }
    }

    private static StorageServerOptions ServerOptions(TempDirectory temp, EtcdServer etcd, NodePools node)
    {
        var options = CsiHarness.ServerOptions(temp.CreateSubdirectory(node.Node), StorageBackend.Thin);
        options.Pools = [.. node.Pools.Select(p => new PoolDefinition(temp.Combine(node.Node, p.Name + ".pool"), p.Bytes))];
        options.EtcdEndpoints = [etcd.ClientUrl];
        options.NodeName = node.Node;
        options.LeaseTtl = TimeSpan.FromSeconds(2);
        return options;
    }

    public StorageServer Node(string name) => Nodes[name] ?? throw new InvalidOperationException($"{name} is stopped");

    /// <summary>The cluster's own management API, through <paramref name="node"/> (node-a by default).</summary>
    public VolumeService.VolumeServiceClient Volumes(string node = ControllerNode) => new(ManagementChannel(node));

    public NodeService.NodeServiceClient NodeApi(string node = ControllerNode) => new(ManagementChannel(node));

    /// <summary>Stops a node as its process would end (its lease is revoked or runs out).</summary>
    public async Task StopNodeAsync(string name)
    {
        if (Nodes[name] is { } server)
        {
            Nodes[name] = null;
            await server.DisposeAsync();
        }
    }

    /// <summary>Starts a stopped node again on its data directory.</summary>
    public async Task StartNodeAsync(string name)
    {
        if (Nodes[name] is null)
        {
            Nodes[name] = await StorageServer.StartAsync(ServerOptions(_temp, Etcd, _layout.Single(n => n.Node == name)));
        }
    }

    /// <summary>Polls (every 100 ms, bounded) until <paramref name="condition"/> holds; false when it never did.</summary>
    public static async Task<bool> WaitAsync(Func<Task<bool>> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(100);
        }

        return await condition();
    }

    private GrpcChannel ManagementChannel(string node)
    {
        var channel = GrpcChannel.ForAddress($"http://{Node(node).ManagementEndpoint}");
        _managementChannels.Add(channel);
        return channel;
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        foreach (var channel in _managementChannels)
        {
            channel.Dispose();
        }

        await Driver.DisposeAsync();
        foreach (var name in Nodes.Keys.ToArray())
        {
            await StopNodeAsync(name);
        }

        await Etcd.DisposeAsync();
        _temp.Dispose();
    }
}
