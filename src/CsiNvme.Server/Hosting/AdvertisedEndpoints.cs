using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace CsiNvme.Server.Hosting;

/// <summary>
/// The NVMe/TCP addresses hosts are told to connect to (a volume's listen_addresses, and through them the CSI
/// publish_context targets). A wildcard listener (0.0.0.0 or ::) is not an address a host can dial, so it is
/// reported as the --advertise-address values, or else as every address the host's interfaces carry.
/// </summary>
internal static class AdvertisedEndpoints
{
    public static IReadOnlyList<IPEndPoint> For(
        IEnumerable<IPEndPoint> bound,
        IReadOnlyList<IPAddress> advertise,
        Func<IReadOnlyList<IPAddress>> hostAddresses)
    {
        var result = new List<IPEndPoint>();
        IReadOnlyList<IPAddress>? host = null;
        foreach (var endpoint in bound)
        {
            if (!endpoint.Address.Equals(IPAddress.Any) && !endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                result.Add(endpoint);
                continue;
            }

            var addresses = advertise.Count > 0 ? advertise : host ??= hostAddresses();
            if (addresses.Count == 0)
            {
                // Nothing better is known; the wildcard at least names the port.
                result.Add(endpoint);
                continue;
            }

            result.AddRange(addresses.Select(a => new IPEndPoint(a, endpoint.Port)));
        }

        return result.Distinct().ToArray();
    }

    /// <summary>
    /// The NVMe/TCP endpoints hosts are told to connect to: each --host-address with each listener's port, when given
    /// (hosts reach the node at another address than the other nodes do: NAT, or a front-end network of their own),
    /// else <paramref name="advertised"/>.
    /// </summary>
    public static IReadOnlyList<IPEndPoint> ForHosts(IEnumerable<IPEndPoint> bound, IReadOnlyList<IPAddress> hostAddresses, IReadOnlyList<IPEndPoint> advertised) =>
        hostAddresses.Count == 0
            ? advertised
            : bound.Select(e => e.Port).Distinct().SelectMany(port => hostAddresses.Select(a => new IPEndPoint(a, port))).Distinct().ToArray();

    /// <summary>
    /// Non-loopback IPv4 addresses of the interfaces that are up, in interface order. Link-local (169.254/16)
    /// addresses are left out: they are not routed, so a host on another link could not use them.
    /// </summary>
    public static IReadOnlyList<IPAddress> HostIPv4Addresses() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .Where(i => i.OperationalStatus == OperationalStatus.Up && i.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(i => i.GetIPProperties().UnicastAddresses)
            .Select(u => u.Address)
            .Where(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a) && !IsLinkLocal(a))
            .Distinct()
            .ToArray();

    private static bool IsLinkLocal(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        return bytes[0] == 169 && bytes[1] == 254;
    }
}
