using CsiNvme.Csi.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace CsiNvme.Csi.Controller;

internal sealed class ControllerModule : ICsiServiceModule
{
    public void AddServices(IServiceCollection services, CsiDriverOptions options)
    {
        services.AddSingleton<KeyedAsyncLock>();
    }

    public void MapServices(IEndpointRouteBuilder endpoints) => endpoints.MapGrpcService<ControllerService>();
}
