using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace CsiNvme.Csi.Hosting;

/// <summary>A CSI gRPC service with its dependencies, plugged into the driver host for the modes that serve it.</summary>
public interface ICsiServiceModule
{
    void AddServices(IServiceCollection services, CsiDriverOptions options);

    void MapServices(IEndpointRouteBuilder endpoints);
}
