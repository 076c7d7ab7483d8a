using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace CsiNvme.Csi.Hosting;

/// <summary>
/// Tags connections accepted on the metrics listener, so /metrics is served only there and the CSI
/// gRPC services only on the CSI endpoint, whatever Host header a client sends.
/// </summary>
internal static class MetricsListener
{
    private static readonly object _key = new();

    public static Func<ConnectionDelegate, ConnectionDelegate> Tag() => next => connection =>
    {
        connection.Items[_key] = true;
        return next(connection);
    };

    public static Task Route(HttpContext context, RequestDelegate next)
    {
        var onMetricsListener = context.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(_key) == true;
        var isMetrics = context.Request.Path.Equals("/metrics", StringComparison.Ordinal);
        if (onMetricsListener != isMetrics)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        return next(context);
    }
}
