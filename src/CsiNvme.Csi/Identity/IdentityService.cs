using Csi.V1;
using CsiNvme.Api.V1;
using CsiNvme.Csi.Controller;
using CsiNvme.Csi.Hosting;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NodeHealth = CsiNvme.Csi.Node.NodeHealth;
using IdentityBase = Csi.V1.Identity.IdentityBase;

namespace CsiNvme.Csi.Identity;

/// <summary>CSI Identity service (spec "Identity Service RPC"): plugin name, capabilities, readiness.</summary>
internal sealed class IdentityService(CsiDriverOptions options, IServiceProvider services, ILogger<IdentityService> logger) : IdentityBase
{
    public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, ServerCallContext context) =>
        Task.FromResult(new GetPluginInfoResponse
        {
            Name = CsiDriverOptions.DriverName,
            VendorVersion = CsiDriverOptions.VendorVersion,
        });

    public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new GetPluginCapabilitiesResponse();
        // A node-only process must not claim the Controller service: the CO would send it controller calls.
        if (options.Mode.HasFlag(DriverMode.Controller))
        {
            response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.ControllerService));
        }

        // Volumes are reachable only from nodes that can reach the storage server's NVMe/TCP listeners; nodes
        // report their topology so a CO can schedule accordingly.
        response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints));
        response.Capabilities.Add(Expansion(PluginCapability.Types.VolumeExpansion.Types.Type.Online));
        response.Capabilities.Add(Expansion(PluginCapability.Types.VolumeExpansion.Types.Type.Offline));
        return Task.FromResult(response);
    }

    /// <summary>
    /// A node that cannot stage volumes (no /dev/nvme-fabrics, records not writable) fails with
    /// FAILED_PRECONDITION: restarting it is the CO's remedy, and the message says what to fix. A controller is
    /// ready when the storage server answers GetServerInfo within <see cref="CsiDriverOptions.ProbeTimeout"/>:
    /// without it no controller call can succeed, but the driver is healthy and a restart would not bring the
    /// server back, so it reports "not ready". A node-only process needs no storage server (it talks to the
    /// kernel), so it is ready as soon as it serves.
    /// </summary>
    public override async Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context)
    {
        if (options.Mode.HasFlag(DriverMode.Node))
        {
            services.GetRequiredService<NodeHealth>().Check();
        }

        var storage = services.GetService<StorageServerClient>();
        if (!options.Mode.HasFlag(DriverMode.Controller) || storage is null)
        {
            return new ProbeResponse { Ready = true };
        }

        try
        {
            await storage.Server.GetServerInfoAsync(new GetServerInfoRequest(), storage.Call(context.CancellationToken, options.ProbeTimeout));
            return new ProbeResponse { Ready = true };
        }
        catch (RpcException e) when (!context.CancellationToken.IsCancellationRequested)
        {
            // Not an error of the driver: it is healthy and keeps retrying; report "not ready" as the spec asks.
            CsiLog.ProbeFailed(logger, storage.Address, $"{e.StatusCode}: {e.Status.Detail}");
            return new ProbeResponse { Ready = false };
        }
    }

    private static PluginCapability Service(PluginCapability.Types.Service.Types.Type type) =>
        new() { Service = new PluginCapability.Types.Service { Type = type } };

    private static PluginCapability Expansion(PluginCapability.Types.VolumeExpansion.Types.Type type) =>
        new() { VolumeExpansion = new PluginCapability.Types.VolumeExpansion { Type = type } };
}

internal sealed class IdentityModule : ICsiServiceModule
{
    public void AddServices(IServiceCollection services, CsiDriverOptions options)
    {
    }

    public void MapServices(Microsoft.AspNetCore.Routing.IEndpointRouteBuilder endpoints) =>
        endpoints.MapGrpcService<IdentityService>();
}
