using System.Net;
using System.Net.Sockets;
using CsiNvme.Api.V1;
using CsiNvme.Server.Hosting;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Server.Tests;

[TestFixture]
public sealed class AdvertisedEndpointsTests
{
    private static readonly IPAddress[] s_host = [IPAddress.Parse("192.168.10.5"), IPAddress.Parse("10.0.0.7")];

    private static string[] Advertised(IPEndPoint[] bound, IPAddress[] advertise, IPAddress[]? host = null) =>
        [.. AdvertisedEndpoints.For(bound, advertise, () => host ?? s_host).Select(e => e.ToString())];

    [Test]
    public void AWildcardListenerReportsTheAdvertisedAddressesWithItsPort()
    {
        Assert.That(
            Advertised([new IPEndPoint(IPAddress.Any, 4420)], [IPAddress.Parse("203.0.113.9")]),
            Is.EqualTo(new[] { "203.0.113.9:4420" }));
        Assert.That(
            Advertised([new IPEndPoint(IPAddress.IPv6Any, 4421)], [IPAddress.Parse("203.0.113.9"), IPAddress.Parse("2001:db8::1")]),
            Is.EqualTo(new[] { "203.0.113.9:4421", "[2001:db8::1]:4421" }));
    }

    [Test]
    public void AWildcardListenerWithoutAdvertiseAddressesReportsTheHostAddresses()
    {
        Assert.That(Advertised([new IPEndPoint(IPAddress.Any, 4420)], []), Is.EqualTo(new[] { "192.168.10.5:4420", "10.0.0.7:4420" }));
        // With no usable interface address, the wildcard stays: it still names the port.
        Assert.That(Advertised([new IPEndPoint(IPAddress.Any, 4420)], [], host: []), Is.EqualTo(new[] { "0.0.0.0:4420" }));
    }

    [Test]
    public void ExplicitListenersReportThemselvesEvenWithAdvertiseAddresses()
    {
        IPEndPoint[] bound = [new IPEndPoint(IPAddress.Parse("10.0.0.7"), 4420), new IPEndPoint(IPAddress.Any, 4430), new IPEndPoint(IPAddress.Loopback, 4440)];
        Assert.That(
            Advertised(bound, [IPAddress.Parse("10.0.0.7")]),
            Is.EqualTo(new[] { "10.0.0.7:4420", "10.0.0.7:4430", "127.0.0.1:4440" }));
    }

    [Test]
    public void HostAddressesAreNonLoopbackIPv4()
    {
        var addresses = AdvertisedEndpoints.HostIPv4Addresses();
        Assert.That(addresses, Is.Unique);
        Assert.That(addresses, Has.All.Matches<IPAddress>(a => a!.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a)));
        Assert.That(addresses, Has.None.Matches<IPAddress>(a => a!.GetAddressBytes() is [169, 254, ..]));
    }

    [Test]
    public void TheOptionIsParsedAndChecked()
    {
        var result = ServerCommandLine.Parse(["--nvme-listen", "0.0.0.0:4420", "--advertise-address", "10.1.2.3", "--advertise-address", "2001:db8::5"]);
        Assert.That(result.Errors, Is.Empty);
        Assert.That(result.Options!.AdvertiseAddresses, Is.EqualTo(new[] { IPAddress.Parse("10.1.2.3"), IPAddress.Parse("2001:db8::5") }));
        Assert.That(ServerCommandLine.Parse([]).Options!.AdvertiseAddresses, Is.Empty);

        foreach (var bad in new[] { "node-1.example", "10.1.2", "0.0.0.0", "::", "10.1.2.3:4420" })
        {
            var refused = ServerCommandLine.Parse(["--advertise-address", bad]);
            Assert.That(refused.Options, Is.Null, bad);
            Assert.That(refused.Errors, Has.Some.Contains("--advertise-address"), bad);
        }
    }

    [Test]
    public async Task VolumesOfAnExplicitListenerReportItWhateverIsAdvertised()
    {
        using var dir = new TempDirectory("csinvme-advertise");
        var options = InProcessServer.Options(dir.Path);
        options.AdvertiseAddresses = [IPAddress.Parse("203.0.113.9")];
        await using var server = await InProcessServer.StartAsync(options);
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "v", SizeBytes = 4096 });
        Assert.That(volume.ListenAddresses, Is.EqualTo(server.Server.NvmeEndpoints.Select(e => e.ToString())));
        Assert.That(volume.ListenAddresses.Single(), Does.StartWith("127.0.0.1:"));
    }

    [Test]
    public void HostAddressesReplaceWhatHostsAreToldWithEachListenersPort()
    {
        IPEndPoint[] bound = [new IPEndPoint(IPAddress.Loopback, 4420), new IPEndPoint(IPAddress.Loopback, 4430)];
        IPEndPoint[] advertised = [.. bound];
        Assert.That(AdvertisedEndpoints.ForHosts(bound, [], advertised), Is.SameAs(advertised));
        Assert.That(
            AdvertisedEndpoints.ForHosts(bound, [IPAddress.Parse("198.51.100.4"), IPAddress.Parse("2001:db8::4")], advertised).Select(e => e.ToString()),
            Is.EqualTo(new[] { "198.51.100.4:4420", "[2001:db8::4]:4420", "198.51.100.4:4430", "[2001:db8::4]:4430" }));

        var parsed = ServerCommandLine.Parse(["--host-address", "198.51.100.4"]);
        Assert.That(parsed.Errors, Is.Empty);
        Assert.That(parsed.Options!.HostAddresses, Is.EqualTo(new[] { IPAddress.Parse("198.51.100.4") }));
        Assert.That(ServerCommandLine.Parse([]).Options!.HostAddresses, Is.Empty);
        foreach (var bad in new[] { "storage.example", "0.0.0.0", "198.51.100.4:4420" })
        {
            Assert.That(ServerCommandLine.Parse(["--host-address", bad]).Errors, Has.Some.Contains("--host-address"), bad);
        }
    }

    [Test]
    public async Task VolumesOfASingleServerReportItsHostAddress()
    {
        using var dir = new TempDirectory("csinvme-host-address");
        var options = InProcessServer.Options(dir.Path);
        options.HostAddresses = [IPAddress.Parse("198.51.100.4")];
        await using var server = await InProcessServer.StartAsync(options);
        var volume = await server.Volumes.CreateVolumeAsync(new CreateVolumeRequest { Name = "v", SizeBytes = 4096 });
        Assert.That(volume.ListenAddresses, Is.EqualTo(new[] { $"198.51.100.4:{server.Server.NvmeEndpoints[0].Port}" }));
    }
}
