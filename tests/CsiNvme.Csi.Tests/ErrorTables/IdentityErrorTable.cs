using Csi.V1;
using CsiNvme.Csi.Tests.Node;
using Grpc.Core;
using NUnit.Framework;
using Row = CsiNvme.Csi.Tests.ErrorTables.ErrorRow<CsiNvme.Csi.Tests.ErrorTables.IdentityErrorTable>;

namespace CsiNvme.Csi.Tests.ErrorTables;

/// <summary>
/// The CSI spec's error tables of the Identity RPCs, row by row: GetPluginInfo and GetPluginCapabilities have
/// none (they answer whatever the mode), Probe's two rows are a node that cannot stage volumes. Each row
/// starts the driver it needs: a node on a fake sysfs and /dev, or a controller on a real storage server.
/// </summary>
[TestFixture]
[CancelAfter(60_000)]
public sealed class IdentityErrorTable
{
    [TestCaseSource(nameof(Rows))]
    public Task Walk(Row row) => row.VerifyAsync(this);

    private static IEnumerable<TestCaseData> Rows() => Identity().Select(row => row.ToTestCase());

    private static IEnumerable<Row> Identity()
    {
        yield return new("GetPluginInfo", "No table", "name and vendor version, csi-sanity", StatusCode.OK, async _ =>
        {
            await using var node = await NodeHarness.StartAsync();
            var info = await node.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
            Assert.That(info.Name, Is.EqualTo(CsiDriverOptions.DriverName));
        });
        yield return new("GetPluginCapabilities", "No table", "a node-only process does not claim the controller service", StatusCode.OK, async _ =>
        {
            await using var node = await NodeHarness.StartAsync();
            var capabilities = await node.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
            Assert.That(capabilities.Capabilities.Select(c => c.Service?.Type), Has.None.EqualTo(PluginCapability.Types.Service.Types.Type.ControllerService));
        });
        yield return new("Probe", "Missing required dependency", "a node without /dev/nvme-fabrics", StatusCode.FailedPrecondition, async _ =>
        {
            await using var node = await NodeHarness.StartAsync();
            await node.Identity.ProbeAsync(new ProbeRequest());
        });
        yield return new("Probe", "Plugin not healthy", "a node whose staged-volume records cannot be written", StatusCode.FailedPrecondition, async _ =>
        {
            await using var node = await NodeHarness.StartAsync();
            node.Sys.AddFabricsDevice();
            Directory.Delete(node.State.Directory, recursive: true);
            await node.Identity.ProbeAsync(new ProbeRequest());
        });
        yield return new("Probe", "Healthy", "a node with the fabrics device and writable records is ready", StatusCode.OK, async _ =>
        {
            await using var node = await NodeHarness.StartAsync();
            node.Sys.AddFabricsDevice();
            Assert.That((await node.Identity.ProbeAsync(new ProbeRequest())).Ready, Is.True);
        });
        yield return new("Probe", "Storage server unreachable", "a controller is healthy but not ready: a restart would not help", StatusCode.OK, async _ =>
        {
            await using var harness = await CsiHarness.StartAsync();
            await harness.StorageServer!.DisposeAsync();
            Assert.That((await harness.Identity.ProbeAsync(new ProbeRequest())).Ready, Is.False);
        });
    }
}
