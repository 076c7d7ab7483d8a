using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace CsiNvme.Server.Hosting;

/// <summary>
/// Probes on the metrics listener (never on the management port). <c>GET /readyz</c>: 200 with the body
/// <c>ready</c> while the NVMe/TCP target can take new hosts (<see cref="CsiNvme.Target.NvmeTarget.Readiness"/>),
/// otherwise 503 with one line saying why; the chart's readiness probe relies on exactly this. <c>GET /livez</c>:
/// 200 <c>alive</c> whenever the process answers HTTP at all.
/// </summary>
internal static class HealthEndpoints
{
    public const string ReadinessPath = "/readyz";
    public const string LivenessPath = "/livez";

    private static readonly string[] _methods = [HttpMethods.Get, HttpMethods.Head];

    public static bool Serves(PathString path) =>
        path.Equals(ReadinessPath, StringComparison.Ordinal) || path.Equals(LivenessPath, StringComparison.Ordinal);

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapMethods(ReadinessPath, _methods, context =>
        {
            var readiness = context.RequestServices.GetRequiredService<StorageServer>().Target.Readiness;
            return Answer(context, readiness.IsReady ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable,
                readiness.IsReady ? "ready" : OneLine(readiness.Reason));
        });
        endpoints.MapMethods(LivenessPath, _methods, context => Answer(context, StatusCodes.Status200OK, "alive"));
    }

    private static Task Answer(HttpContext context, int status, string body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : context.Response.WriteAsync(body);
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");
}
