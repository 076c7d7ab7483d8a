using Csi.V1;
using CsiNvme.Csi.Authentication;
using CsiNvme.Protocol.Authentication;
using CsiNvme.TestSupport;
using Grpc.Core;
using NUnit.Framework;
using static CsiNvme.Csi.Tests.EndToEnd.CsiWalk;

namespace CsiNvme.Csi.Tests.EndToEnd;

/// <summary>
/// DH-HMAC-CHAP through CSI with the real Linux host (Debian 13's 6.12 kernel): the controller requires the node's
/// host NQN to authenticate (controller-publish secrets), the node plugin in the guest connects through
/// /dev/nvme-fabrics with the node-stage secrets, bidirectionally, and data written reads back; the same stage
/// without the secrets is refused and leaves nothing behind.
/// </summary>
[TestFixture]
[Category("Guest")]
[NonParallelizable]
public sealed class NodeDhchapEndToEndTests
{
    [OneTimeSetUp]
    public async Task RequireGuest() => await LinuxGuest.RequireAsync(GuestImage.Trixie);

    [OneTimeTearDown]
    public void RemovePublishedBinary() => GuestCsiBinary.Cleanup();

    [Test]
    public async Task A_node_stages_with_the_secrets_of_its_class_and_without_them_is_refused()
    {
        await using var csi = await CsiHarness.StartAsync();
        var controller = csi.Controller;
        await using var guest = await GuestNode.StartAsync("guest-dhchap", TimeSpan.FromMinutes(8), image: GuestImage.Trixie);
        var secrets = new Dictionary<string, string>
        {
            [DhchapCsiSecrets.HostSecretKey] = DhchapSecret.Generate(DhchapHash.Sha256).Format(),
            [DhchapCsiSecrets.CtrlSecretKey] = DhchapSecret.Generate(DhchapHash.Sha256).Format(),
        };
        try
        {
            var nodeId = (await guest.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
            var capability = Block();
            var volume = (await controller.CreateVolumeAsync(Create("e2e-dhchap", 16 * MiB, capability))).Volume;
            var publish = await controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
            {
                VolumeId = volume.VolumeId, NodeId = nodeId, VolumeCapability = capability, VolumeContext = { volume.VolumeContext }, Secrets = { secrets },
            });
            const string staging = "/csi-e2e/staging/e2e-dhchap";
            await guest.ShellAsync($"mkdir -p {staging}");
            var stage = new NodeStageVolumeRequest
            {
                VolumeId = volume.VolumeId, PublishContext = { ForGuest(publish.PublishContext) }, StagingTargetPath = staging,
                VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
            };

            // Without the node-stage secrets the kernel cannot answer the target's demand: the stage fails.
            var refused = await CsiHarness.FailureOf(() => guest.Node.NodeStageVolumeAsync(stage).ResponseAsync);
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
            var afterRefusal = await guest.ShellAsync(LeftoversCommand);

            stage.Secrets.Add(secrets);
            await guest.Node.NodeStageVolumeAsync(stage);
            var io = await guest.ShellAsync("""
                c=$(ls -d /sys/class/nvme/nvme* | head -1)
                echo "HAS_SECRET=$(grep -c '^DHHC-1:' $c/dhchap_secret)"
                echo "HAS_CTRL_SECRET=$(grep -c '^DHHC-1:' $c/dhchap_ctrl_secret)"
                echo "AUTHENTICATED=$(dmesg | grep -c 'controller authenticated')"
                d=$(ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$' | head -1)
                dd if=/dev/urandom of=/tmp/blk bs=1M count=4 2>/dev/null
                dd if=/tmp/blk of=/dev/$d bs=1M oflag=direct 2>/dev/null
                echo "WROTE=$(md5sum < /tmp/blk | cut -d' ' -f1)"
                echo "READ=$(dd if=/dev/$d bs=1M count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
                """);
            await guest.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
            var leftovers = await guest.ShellAsync(LeftoversCommand);
            await controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = nodeId });
            await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });

            Assert.Multiple(() =>
            {
                Assert.That(refused.StatusCode, Is.EqualTo(StatusCode.Internal), refused.Status.Detail);
                Assert.That(afterRefusal, Does.Contain(NothingLeft));
                Assert.That(Value(io, "HAS_SECRET"), Is.EqualTo("1"), io);
                Assert.That(Value(io, "HAS_CTRL_SECRET"), Is.EqualTo("1"), io);
                Assert.That(int.Parse(Value(io, "AUTHENTICATED"), System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0), io);
                Assert.That(Value(io, "READ"), Is.EqualTo(Value(io, "WROTE")), io);
                Assert.That(leftovers, Does.Contain(NothingLeft));
            });
        }
        catch (Exception e) when (e is not SuccessException)
        {
            await guest.StopAsync();
            TestContext.Out.WriteLine(guest.Describe());
            throw;
        }

        Assert.That(guest.Describe(), Does.Not.Contain(secrets[DhchapCsiSecrets.HostSecretKey][10..40]), "the node plugin never logs a secret");
    }
}
