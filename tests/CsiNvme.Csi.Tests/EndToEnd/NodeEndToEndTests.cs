using Csi.V1;
using CsiNvme.Csi.Node;
using CsiNvme.TestSupport;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// The node service inside a Linux guest, next to a real kernel, driven over CSI from the test; the
/// controller and the storage server run on the host.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class NodeEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [OneTimeTearDown]
    public void RemovePublishedBinary() => GuestCsiBinary.Cleanup();

    [Test]
    public async Task Node_service_in_a_guest_reports_its_identity_and_capabilities()
    {
        await using var guest = await GuestNode.StartAsync("guest-info", TimeSpan.FromMinutes(6));
        TestContext.Out.WriteLine($"publish {GuestCsiBinary.PublishTime.TotalSeconds:F1}s, guest agent up after {guest.BootTime.TotalSeconds:F1}s, node service after {guest.StartupTime.TotalSeconds:F1}s");

        var info = await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        var capabilities = await guest.Node.NodeGetCapabilitiesAsync(new NodeGetCapabilitiesRequest());
        var kernel = await guest.ShellAsync("uname -r; ls /dev/nvme-fabrics");
        await guest.StopAsync();

        Assert.Multiple(() =>
        {
            Assert.That(info.NodeId, Is.EqualTo("nqn.2026-11.io.csinvme:node:guest-info"));
            Assert.That(info.MaxVolumesPerNode, Is.EqualTo(256));
            Assert.That(info.AccessibleTopology.Segments[NodeOptions.TopologyNodeKey], Is.EqualTo("guest-info"));
            Assert.That(capabilities.Capabilities.Select(c => c.Rpc.Type), Is.EquivalentTo(new[]
            {
                NodeServiceCapability.Types.RPC.Types.Type.StageUnstageVolume,
                NodeServiceCapability.Types.RPC.Types.Type.GetVolumeStats,
                NodeServiceCapability.Types.RPC.Types.Type.ExpandVolume,
                NodeServiceCapability.Types.RPC.Types.Type.VolumeCondition,
                NodeServiceCapability.Types.RPC.Types.Type.SingleNodeMultiWriter,
            }));
            Assert.That(kernel, Does.Contain("/dev/nvme-fabrics"), guest.Describe());
        });
    }
}
