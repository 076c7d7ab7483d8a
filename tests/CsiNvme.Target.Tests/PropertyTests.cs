using CsiNvme.Protocol.Fabrics;

namespace CsiNvme.Target.Tests;

/// <summary>Controller properties over Property Get/Set (NVMe-oF 1.1, 3.4 and 3.5; NVMe base 2.0, 3.1.3).</summary>
public sealed class PropertyTests
{
    [Test]
    public async Task CapabilitiesDescribeQueuesTimeoutAndTheNvmCommandSet()
    {
        await using var harness = TargetHarness.Start(o => o.MaxQueueEntries = 256);
        using var host = harness.Initialize();
        Assert.That(host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));

        var get = host.GetProperty(PropertyOffset.Capabilities);
        Assert.That(get.Status, Is.EqualTo(NvmeStatus.Success));
        var cap = get.Dw0 | ((ulong)get.Entry.Dw1 << 32);
        Assert.Multiple(() =>
        {
            Assert.That(cap & 0xFFFF, Is.EqualTo(255ul), "MQES is 0-based");
            Assert.That((cap >> 16) & 1, Is.EqualTo(1ul), "CQR");
            Assert.That((cap >> 24) & 0xFF, Is.GreaterThan(0ul), "TO");
            Assert.That((cap >> 37) & 1, Is.EqualTo(1ul), "CSS: NVM command set");
            Assert.That((cap >> 43) & 1, Is.Zero, "no I/O command set descriptors to ask for");
            Assert.That((cap >> 48) & 0xF, Is.Zero, "MPSMIN 4 KiB");
        });

        var low = host.GetProperty(PropertyOffset.Capabilities, eightBytes: false);
        var high = host.GetProperty(PropertyOffset.Capabilities + 4, eightBytes: false);
        Assert.That(low.Dw0 | ((ulong)high.Dw0 << 32), Is.EqualTo(cap), "two 4-byte reads give the same CAP");
    }

    [Test]
    public async Task VersionIs13()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        var vs = host.GetProperty(PropertyOffset.Version, eightBytes: false);
        Assert.That(vs.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(vs.Dw0, Is.EqualTo(0x0001_0300u));
    }

    [Test]
    public async Task EnableSetsReadyAndShutdownCompletes()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, keepAliveMs: 5000);
        Assert.That(host.GetProperty(PropertyOffset.ControllerStatus, false).Dw0 & 1, Is.Zero, "not ready before CC.EN");

        const uint cc = 1 | (6u << 16) | (4u << 20);
        Assert.That(host.SetProperty(PropertyOffset.ControllerConfiguration, cc).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(host.GetProperty(PropertyOffset.ControllerConfiguration, false).Dw0, Is.EqualTo(cc));
        var csts = host.GetProperty(PropertyOffset.ControllerStatus, false).Dw0;
        Assert.That(csts & 1, Is.EqualTo(1u), "CSTS.RDY");
        Assert.That(csts & 2, Is.Zero, "CSTS.CFS");

        using var io = harness.ConnectIo(host, 1);
        Assert.That(host.SetProperty(PropertyOffset.ControllerConfiguration, cc | (1u << 14)).Status, Is.EqualTo(NvmeStatus.Success));
        csts = host.GetProperty(PropertyOffset.ControllerStatus, false).Dw0;
        Assert.That((csts >> 2) & 3, Is.EqualTo(2u), "CSTS.SHST = 10b: shutdown processing complete");
        Assert.That(io.WaitClosed(TimeSpan.FromSeconds(5)), Is.True, "shutdown deletes the I/O queues");
    }

    [Test]
    public async Task EnableWithWrongEntrySizesIsFatal()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(host.SetProperty(PropertyOffset.ControllerConfiguration, 1).Status, Is.EqualTo(NvmeStatus.Success));
        var csts = host.GetProperty(PropertyOffset.ControllerStatus, false).Dw0;
        Assert.That(csts & 3, Is.EqualTo(2u), "CFS without RDY when IOSQES/IOCQES are not 6/4");
    }

    [Test]
    public async Task UnknownPropertyIsInvalidField()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(host.GetProperty(0x40).Status, Is.EqualTo(NvmeStatus.InvalidField));
        Assert.That(host.SetProperty(PropertyOffset.Capabilities, 0).Status, Is.EqualTo(NvmeStatus.InvalidField), "CAP is read-only");
    }
}
