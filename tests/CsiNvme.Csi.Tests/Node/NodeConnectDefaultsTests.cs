using Csi.V1;
using CsiNvme.Csi.Hosting;
using Grpc.Core;
using NUnit.Framework;

namespace CsiNvme.Csi.Tests.Node;

/// <summary>
/// The node plugin's connection flags reach the kernel's connect options for volumes whose context lacks the
/// setting, and a setting the context carries (a StorageClass parameter) still wins.
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class NodeConnectDefaultsTests
{
    private const string Nqn = "nqn.2026-11.io.csinvme:volume:defaults";

    [TestCase(null, "ctrl_loss_tmo=-1,reconnect_delay=3,fast_io_fail_tmo=-1,keep_alive_tmo=5,hdr_digest,disable_sqflow")]
    [TestCase("120", "ctrl_loss_tmo=120,reconnect_delay=3,fast_io_fail_tmo=-1,keep_alive_tmo=5,hdr_digest,disable_sqflow")]
    public async Task Stage_connects_with_the_node_flags_where_the_volume_context_is_silent(string? classCtrlLossTmo, string expected)
    {
        var flags = CsiCommandLine.Parse(["--mode=node", "--node-id=n", "--ctrl-loss-tmo=-1", "--reconnect-delay=3", "--fast-io-fail-tmo=-1", "--header-digest=true"]);
        Assert.That(flags.Errors, Is.Empty);
        await using var node = await NodeHarness.StartAsync(options => options.NodeConnectDefaults = flags.Options!.NodeConnectDefaults);

        // A regular file where /dev/nvme-fabrics belongs keeps what the node writes; it answers no instance, so the
        // stage fails after the write.
        var fabrics = Path.Combine(node.Sys.DevRoot, "nvme-fabrics");
        File.WriteAllText(fabrics, string.Empty);
        var request = new NodeStageVolumeRequest
        {
            VolumeId = "vol-defaults",
            StagingTargetPath = Path.Combine(node.Directory, "staging", "vol-defaults"),
            VolumeCapability = new VolumeCapability { Block = new(), AccessMode = new() { Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter } },
            PublishContext = { ["nqn"] = Nqn, ["targets"] = "127.0.0.1:4420", ["uuid"] = "1b4e28ba-2fa1-11d2-883f-0016d3cca427" },
        };
        if (classCtrlLossTmo is not null)
        {
            request.VolumeContext["ctrlLossTmo"] = classCtrlLossTmo;
        }

        var failure = await CsiHarness.FailureOf(async () => await node.Node.NodeStageVolumeAsync(request));
        var written = File.ReadAllText(fabrics);
        Assert.Multiple(() =>
        {
            Assert.That(failure.StatusCode, Is.EqualTo(StatusCode.Internal), failure.Status.Detail);
            Assert.That(written, Does.StartWith($"transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn={Nqn},"));
            Assert.That(written, Does.EndWith(expected));
        });
    }
}
