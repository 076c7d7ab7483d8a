using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace CsiNvme.Server.Hosting;

/// <summary>
/// Which Kestrel endpoint a connection arrived on. Each connection is tagged when accepted, so the
/// management API answers only on the management port and /metrics only on the metrics port, whatever
/// ports were bound and whatever Host header the client sends.
/// </summary>
internal enum ListenerRole
{
    Management,
    Metrics,
}

internal static class ListenerRoles
{
    private static readonly object _key = new();

    public static Func<ConnectionDelegate, ConnectionDelegate> Tag(ListenerRole role) => next => connection =>
    {
        connection.Items[_key] = role;
        return next(connection);
    };

    public static ListenerRole? Of(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(_key, out var role) == true ? (ListenerRole?)role : null;
}
