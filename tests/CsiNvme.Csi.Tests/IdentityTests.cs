using Csi.V1;
using CsiNvme.Csi.Hosting;
using CsiNvme.TestSupport;
using NUnit.Framework;
using IdentityClient = Csi.V1.Identity.IdentityClient;

namespace CsiNvme.Csi.Tests;

[TestFixture]
[CancelAfter(60_000)]
public sealed class IdentityTests
{
    [Test]
    public async Task GetPluginInfo_reports_the_driver_name_and_version()
    {
        await using var harness = await CsiHarness.StartAsync();
        var info = await harness.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
        Assert.Multiple(() =>
        {
            Assert.That(info.Name, Is.EqualTo("nvme.csinvme.io"));
            Assert.That(info.VendorVersion, Is.EqualTo("0.1.0"));
        });
    }

    [Test]
    public async Task GetPluginCapabilities_of_a_controller_lists_the_controller_service_topology_and_both_expansions()
    {
        await using var harness = await CsiHarness.StartAsync();
        var capabilities = await harness.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
        var services = capabilities.Capabilities.Where(c => c.Service is not null).Select(c => c.Service.Type).ToList();
        var expansions = capabilities.Capabilities.Where(c => c.VolumeExpansion is not null).Select(c => c.VolumeExpansion.Type).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(services, Is.EquivalentTo(new[]
            {
                PluginCapability.Types.Service.Types.Type.ControllerService,
                PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints,
            }));
            Assert.That(expansions, Is.EquivalentTo(new[]
            {
                PluginCapability.Types.VolumeExpansion.Types.Type.Online,
                PluginCapability.Types.VolumeExpansion.Types.Type.Offline,
            }));
        });
    }

    [Test]
    public async Task Probe_is_ready_while_the_storage_server_answers()
    {
        await using var harness = await CsiHarness.StartAsync();
        var probe = await harness.Identity.ProbeAsync(new ProbeRequest());
        Assert.That(probe.Ready, Is.True);
    }

    [Test]
    public async Task Probe_is_not_ready_but_succeeds_when_the_storage_server_is_gone()
    {
        await using var harness = await CsiHarness.StartAsync();
        await harness.StorageServer!.DisposeAsync();
        var probe = await harness.Identity.ProbeAsync(new ProbeRequest());
        Assert.That(probe.Ready, Is.False);
    }

    [Test]
    public async Task The_driver_serves_on_a_tcp_endpoint_with_a_free_port()
    {
        await using var harness = await CsiHarness.StartAsync(configureDriver: o => o.Endpoint = "tcp://127.0.0.1:0");
        Assert.That(harness.Driver.Endpoint.TcpEndPoint!.Port, Is.Not.Zero);
        var info = await harness.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
        Assert.That(info.Name, Is.EqualTo("nvme.csinvme.io"));
    }

    [Test]
    public async Task A_stale_socket_file_is_replaced_and_the_socket_is_removed_at_shutdown()
    {
        using var temp = new TempDirectory("csi");
        var socketPath = temp.Combine("csi.sock");
        // A driver killed without cleanup leaves its socket file behind with nobody accepting on it: a bound,
        // never-listening socket is exactly that (.NET would delete the file if the socket were closed).
        using var stale = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        stale.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socketPath));
        Assert.That(File.Exists(socketPath), Is.True);
        await using (var driver = await CsiDriver.StartAsync(CsiHarness.DriverOptions(socketPath, "127.0.0.1:1")))
        {
            using var channel = driver.Endpoint.CreateChannel();
            var info = await new IdentityClient(channel).GetPluginInfoAsync(new GetPluginInfoRequest());
            Assert.That(info.Name, Is.EqualTo("nvme.csinvme.io"));
        }

        Assert.That(File.Exists(socketPath), Is.False);
    }

    [Test]
    public async Task A_socket_served_by_a_running_driver_is_not_taken_over()
    {
        using var temp = new TempDirectory("csi");
        var socketPath = temp.Combine("csi.sock");
        await using var first = await CsiDriver.StartAsync(CsiHarness.DriverOptions(socketPath, "127.0.0.1:1"));
        Assert.That(async () => await CsiDriver.StartAsync(CsiHarness.DriverOptions(socketPath, "127.0.0.1:1")), Throws.InstanceOf<IOException>());
    }

    [Test]
    public void Endpoints_parse_unix_and_tcp_forms_and_refuse_others()
    {
        Assert.Multiple(() =>
        {
            Assert.That(CsiEndpoint.Parse("unix:///csi/csi.sock").UnixSocketPath, Is.EqualTo("/csi/csi.sock"));
            Assert.That(CsiEndpoint.Parse("tcp://127.0.0.1:10000").TcpEndPoint!.Port, Is.EqualTo(10000));
            Assert.That(CsiEndpoint.Parse("tcp://[::1]:5").TcpEndPoint!.Address.ToString(), Is.EqualTo("::1"));
            Assert.That(CsiEndpoint.TryParse("unix://relative.sock", out _, out _), Is.False);
            Assert.That(CsiEndpoint.TryParse("http://127.0.0.1:1", out _, out _), Is.False);
            Assert.That(CsiEndpoint.TryParse("tcp://localhost:1", out _, out _), Is.False);
            Assert.That(CsiEndpoint.TryParse("tcp://127.0.0.1:70000", out _, out _), Is.False);
        });
    }
}
