using CsiNvme.Csi.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace CsiNvme.Csi.Node;

/// <summary>Plugs the Node service into the driver host (modes node and all).</summary>
internal sealed class NodeModule : ICsiServiceModule
{
    /// <summary>The key of the per-volume locks the node service and the path keeper share.</summary>
    public const string VolumeLocksKey = "node-volumes";

    public void AddServices(IServiceCollection services, CsiDriverOptions options)
    {
        var nodeOptions = NodeOptions.FromDriverOptions(options);
        services.AddSingleton(nodeOptions);
        // TryAdd: an embedder's ConfigureServices (tests) may supply a platform with other roots.
        services.TryAddSingleton<INodePlatform>(_ => new LinuxNodePlatform());
        services.AddSingleton(sp => new NodeStateStore(sp.GetRequiredService<NodeOptions>().StateDirectory));
        services.AddSingleton<NodeTopology>();
        services.AddSingleton<NodeHealth>();
        services.AddKeyedSingleton<KeyedAsyncLock>(VolumeLocksKey);
        services.AddSingleton<FabricsPaths>();
        services.AddSingleton<PathDiscovery>();
        services.AddSingleton<NodePathMetrics>();
        services.AddSingleton<PathKeeper>();
        services.AddHostedService(sp => sp.GetRequiredService<PathKeeper>());
        services.AddSingleton<NodeService>();
    }

    public void MapServices(IEndpointRouteBuilder endpoints) => endpoints.MapGrpcService<NodeService>();
}
