using Csi.V1;
using CsiNvme.TestSupport;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// The node plugin's connection flags (what the chart's csi.nvme values become) reach the guest kernel's
/// controller, for the settings the volume's StorageClass leaves out; a setting the class gives still wins.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class NodeConnectFlagsEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync();

    [OneTimeTearDown]
    public void RemovePublishedBinary() => GuestCsiBinary.Cleanup();

    [Test]
    public async Task Kernel_controller_takes_the_node_flags_where_the_class_is_silent_and_the_class_where_it_speaks()
    {
        await using var csi = await CsiHarness.StartAsync();
        var controller = csi.Controller;
        await using var guest = await GuestNode.StartAsync("guest-flags", TimeSpan.FromMinutes(8),
            "--ctrl-loss-tmo=-1 --reconnect-delay=3 --fast-io-fail-tmo=20");
        try
        {
            var nodeId = (await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
            var capability = Block();
            // The class sets fastIoFailTmo only: ctrlLossTmo and reconnectDelay come from the node's flags.
            var create = Create("e2e-flags", 16 * MiB, capability);
            create.Parameters.Clear();
            create.Parameters["fastIoFailTmo"] = "5";
            var volume = (await controller.CreateVolumeAsync(create)).Volume;
            Assert.That(volume.VolumeContext.Keys, Does.Not.Contain("ctrlLossTmo").And.Not.Contain("reconnectDelay"));
            var publish = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
            });
            const string staging = "/csi-e2e/staging/e2e-flags";
            await guest.ShellAsync($"mkdir -p {staging}");
            var stage = new NodeStageVolumeRequest
            {
                VolumeId = volume.VolumeId, PublishContext = { ForGuest(publish.PublishContext) }, StagingTargetPath = staging,
                VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
            };
            await guest.Node.NodeStageVolumeAsync(stage);

            // The kernel's own view of the controller (drivers/nvme/host sysfs): ctrl_loss_tmo prints "off" for -1.
            var settings = await guest.ShellAsync("""
                c=$(ls -d /sys/class/nvme/nvme* | head -1)
                echo "CTRL_LOSS_TMO=$(cat $c/ctrl_loss_tmo)"
                echo "RECONNECT_DELAY=$(cat $c/reconnect_delay)"
                echo "FAST_IO_FAIL_TMO=$(cat $c/fast_io_fail_tmo)"
                """);
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
            var leftovers = await guest.ShellAsync(LeftoversCommand);
            await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId });
            await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });

            Assert.Multiple(() =>
            {
                Assert.That(Value(settings, "CTRL_LOSS_TMO"), Is.EqualTo("off"), settings);
                Assert.That(Value(settings, "RECONNECT_DELAY"), Is.EqualTo("3"), settings);
                Assert.That(Value(settings, "FAST_IO_FAIL_TMO"), Is.EqualTo("5"), settings);
                Assert.That(leftovers, Does.Contain(NothingLeft));
            });
        }
        catch (Exception e) when (e is not SuccessException)
        {
            await guest.StopAsync();
            TestContext.Out.WriteLine(guest.Describe());
            throw;
        }
    }
}
