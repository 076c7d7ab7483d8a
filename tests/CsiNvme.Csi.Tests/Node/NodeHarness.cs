using CsiNvme.Csi.Node;
using CsiNvme.TestSupport;
using Grpc.Net.Client;
using Microsoft.Extensions.DependencyInjection;
using IdentityClient = Csi.V1.Identity.IdentityClient;
using NodeClient = Csi.V1.Node.NodeClient;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// The driver in node mode on a Unix socket in a temp directory, with its platform rooted in a fake sysfs
/// and /dev (<see cref="FakeSysfs"/>): argument checks, idempotency and sysfs handling are exercised over
/// the real socket; the kernel side is proven by the guest suite.
/// </summary>
internal sealed class NodeHarness : IAsyncDisposable
{
    private readonly TempDirectory _temp;
    private readonly GrpcChannel _channel;

    private NodeHarness(TempDirectory temp, FakeSysfs sys, CsiDriver driver)
    {
        _temp = temp;
        Sys = sys;
        Driver = driver;
        _channel = driver.Endpoint.CreateChannel();
        Node = new NodeClient(_channel);
        Identity = new IdentityClient(_channel);
    }

    public FakeSysfs Sys { get; }

    public CsiDriver Driver { get; }

    public NodeClient Node { get; }

    public IdentityClient Identity { get; }

    public string Directory => _temp.Path;

    public NodeStateStore State => Driver.Services.GetRequiredService<NodeStateStore>();

    internal PathKeeper Keeper => Driver.Services.GetRequiredService<PathKeeper>();

    public Hosting.CsiMetrics Metrics => Driver.Services.GetRequiredService<Hosting.CsiMetrics>();

    /// <param name="platform">The platform over the fake sysfs; the real one on its roots by default.</param>
    public static async Task<NodeHarness> StartAsync(Action<CsiDriverOptions>? configure = null, Func<FakeSysfs, INodePlatform>? platform = null)
    {
        var temp = new TempDirectory("csi-node");
        var sys = new FakeSysfs();
        try
        {
            var options = CsiHarness.DriverOptions(temp.Combine("csi.sock"), server: null, DriverMode.Node);
            options.NodeId = "unit-node";
            options.Topology["topology.kubernetes.io/zone"] = "zone-a";
            configure?.Invoke(options);
            options.ConfigureServices = services =>
            {
                services.AddSingleton(platform?.Invoke(sys) ?? new LinuxNodePlatform(sys.SysRoot, sys.DevRoot));
                services.AddSingleton(new NodeOptions
                {
                    Identity = NodeIdentity.FromNodeName(options.NodeId!, options.HostNqn),
                    StateDirectory = temp.Combine("node-state"),
                    Topology = options.Topology,
                    ConnectDefaults = options.NodeConnectDefaults,
                    PathKeeperPeriod = options.PathKeeperPeriod,
                    DiscoveryTimeout = TimeSpan.FromSeconds(2),
                    DeviceTimeout = TimeSpan.FromSeconds(1),
                    ResizeTimeout = TimeSpan.FromSeconds(1),
                    MaxVolumesPerNode = options.MaxVolumesPerNode,
                });
            };
            var driver = await CsiDriver.StartAsync(options);
            return new NodeHarness(temp, sys, driver);
        }
        catch
        {
            sys.Dispose();
            temp.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await Driver.DisposeAsync();
        Sys.Dispose();
        _temp.Dispose();
    }
}
