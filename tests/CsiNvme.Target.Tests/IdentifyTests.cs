using CsiNvme.Protocol.Identify;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Tests;

/// <summary>Identify (NVMe base 2.0, 5.17) as the Linux host reads it while connecting.</summary>
public sealed class IdentifyTests
{
    [Test]
    public async Task IdentifyControllerCarriesWhatTheHostChecks()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(keepAliveMs: 5000);
        var identify = admin.Identify((byte)IdentifyCns.Controller);
        Assert.That(identify.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(identify.Data, Has.Length.EqualTo(IdentifyController.Size));
        Assert.That(identify.DataPdus, Is.EqualTo(1));
        var id = IdentifyController.Read(identify.Data);
        var options = harness.Target.Options;
        Assert.Multiple(() =>
        {
            Assert.That(id.ControllerId, Is.EqualTo(admin.ControllerId), "CNTLID equals the Connect's");
            Assert.That(id.KeepAliveSupport, Is.Not.Zero, "KAS");
            Assert.That(id.SglSupport & 3, Is.Not.Zero, "SGLS");
            Assert.That(id.MaxOutstandingCommands, Is.GreaterThanOrEqualTo((ushort)128), "MAXCMD");
            Assert.That(id.IoQueueCommandCapsuleSize, Is.EqualTo((uint)((64 + options.InCapsuleDataSize) / 16)), "IOCCSZ");
            Assert.That(id.IoQueueResponseCapsuleSize, Is.GreaterThanOrEqualTo(1u), "IORCSZ");
            Assert.That(id.InCapsuleDataOffset, Is.Zero, "ICDOFF");
            Assert.That(id.MaxDataTransferSizeExponent, Is.Not.Zero, "MDTS");
            Assert.That(4096 << id.MaxDataTransferSizeExponent, Is.EqualTo(options.MaxDataTransferSize));
            Assert.That(id.SubsystemNqn, Is.EqualTo(TargetHarness.SubsystemNqn));
            Assert.That(id.ControllerType, Is.EqualTo(ControllerType.Io));
            Assert.That(id.SerialNumber, Is.EqualTo("csinvme-test-sn"));
            Assert.That(id.NamespaceCount, Is.GreaterThanOrEqualTo(1u));
            Assert.That(id.OptionalNvmCommands & 0b1100, Is.EqualTo(0b1100), "ONCS: DSM and Write Zeroes");
            Assert.That(id.VolatileWriteCache & 1, Is.EqualTo(1), "VWC");
            Assert.That(id.OptionalAsyncEvents & (1u << 8), Is.Not.Zero, "OAES: namespace attribute notices");
            Assert.That(id.Version, Is.EqualTo(0x0001_0300u));
        });
        Assert.That(identify.Data[512], Is.EqualTo(0x66), "SQES");
        Assert.That(identify.Data[513], Is.EqualTo(0x44), "CQES");
    }

    [Test]
    public async Task IdentifyHonoursTheHostsTransferLength()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var full = admin.Identify((byte)IdentifyCns.Controller);
        var part = admin.Identify((byte)IdentifyCns.Controller, length: 1024);
        Assert.That(part.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(part.Data, Is.EqualTo(full.Data.AsSpan(0, 1024).ToArray()));
    }

    [Test]
    public async Task IdentifyNamespaceDescribesTheVolume()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var identify = admin.Identify((byte)IdentifyCns.Namespace, 1);
        Assert.That(identify.Status, Is.EqualTo(NvmeStatus.Success));
        var ns = IdentifyNamespace.Read(identify.Data);
        const ulong blocks = TargetHarness.VolumeSize / TargetHarness.BlockSize;
        Assert.Multiple(() =>
        {
            Assert.That(ns.SizeBlocks, Is.EqualTo(blocks), "NSZE");
            Assert.That(ns.CapacityBlocks, Is.EqualTo(blocks), "NCAP");
            Assert.That(ns.FormattedLbaSize, Is.Zero, "FLBAS");
            Assert.That(ns.LbaDataSizeExponent, Is.EqualTo(9), "LBADS of 512-byte blocks");
            Assert.That(ns.Nguid, Is.EqualTo(harness.Namespace.Nguid.ToArray()), "NGUID");
            Assert.That(ns.Nguid, Is.Not.EqualTo(new byte[16]));
            Assert.That(ns.MultiPathCapabilities & 1, Is.EqualTo(1), "NMIC shared");
        });
    }

    [Test]
    public async Task IdentifyNamespaceReportsAResize()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        harness.Volume.Resize(TargetHarness.VolumeSize * 2);
        var ns = IdentifyNamespace.Read(admin.Identify((byte)IdentifyCns.Namespace, 1).Data);
        Assert.That(ns.SizeBlocks, Is.EqualTo((ulong)(TargetHarness.VolumeSize * 2 / TargetHarness.BlockSize)));
    }

    [Test]
    public async Task ActiveNamespaceListHasTheIdsAboveTheGivenOne()
    {
        await using var harness = TargetHarness.Start();
        var volume = harness.NewVolume();
        harness.Subsystem.AddNamespace(new TargetNamespace(7, volume, Guid.NewGuid()));
        harness.Subsystem.AddNamespace(new TargetNamespace(3, harness.NewVolume(), Guid.NewGuid()));
        using var admin = harness.ConnectAdmin();

        Assert.That(ActiveNamespaceList.Read(admin.Identify((byte)IdentifyCns.ActiveNamespaceList, 0).Data), Is.EqualTo(new uint[] { 1, 3, 7 }));
        Assert.That(ActiveNamespaceList.Read(admin.Identify((byte)IdentifyCns.ActiveNamespaceList, 1).Data), Is.EqualTo(new uint[] { 3, 7 }));
        Assert.That(ActiveNamespaceList.Read(admin.Identify((byte)IdentifyCns.ActiveNamespaceList, 7).Data), Is.Empty);
        Assert.That(admin.Identify((byte)IdentifyCns.ActiveNamespaceList, 0xFFFF_FFFE).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat));
    }

    [Test]
    public async Task NamespaceDescriptorsCarryNguidAndUuid()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var identify = admin.Identify((byte)IdentifyCns.NamespaceIdDescriptorList, 1);
        Assert.That(identify.Status, Is.EqualTo(NvmeStatus.Success));
        var descriptors = NamespaceIdDescriptor.ReadList(identify.Data);
        Assert.That(descriptors.Select(d => d.Type), Is.EqualTo(new[] { NamespaceIdType.Nguid, NamespaceIdType.Uuid }));
        Assert.That(descriptors[0].Value, Is.EqualTo(harness.Namespace.Nguid.ToArray()));
        Assert.That(descriptors[1].Value, Is.EqualTo(harness.Namespace.Uuid.ToByteArray(bigEndian: true)));
        Assert.That(identify.Data[1], Is.EqualTo(16), "NIDL of NGUID");
        Assert.That(identify.Data[21], Is.EqualTo(16), "NIDL of UUID");
    }

    [Test]
    public async Task InvalidNamespaceIdsAreRejected()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.Identify((byte)IdentifyCns.Namespace, 0).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat), "NSID 0");
        Assert.That(admin.Identify((byte)IdentifyCns.Namespace, 0x1000).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat), "NSID above NN");
        Assert.That(admin.Identify((byte)IdentifyCns.NamespaceIdDescriptorList, 2).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat), "inactive NSID");

        var inactive = admin.Identify((byte)IdentifyCns.Namespace, 2);
        Assert.That(inactive.Status, Is.EqualTo(NvmeStatus.Success), "an inactive NSID within NN reads as zeros");
        Assert.That(inactive.Data, Is.All.Zero);
        Assert.That(admin.Identify(0x55).Status, Is.EqualTo(NvmeStatus.InvalidField), "unsupported CNS");
    }

    [Test]
    public async Task DiscoveryControllerIdentifiesAsDiscovery()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var connect = host.ConnectAdmin(NvmeTarget.DiscoveryNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        host.Enable();
        var id = IdentifyController.Read(host.Identify((byte)IdentifyCns.Controller).Data);
        Assert.That(id.ControllerType, Is.EqualTo(ControllerType.Discovery));
        Assert.That(id.SubsystemNqn, Is.EqualTo(NvmeTarget.DiscoveryNqn));
        Assert.That(id.ControllerId, Is.EqualTo(host.ControllerId));
        Assert.That(id.KeepAliveSupport, Is.Not.Zero);
        Assert.That(host.Identify((byte)IdentifyCns.Namespace, 1).Status, Is.EqualTo(NvmeStatus.InvalidField), "no namespaces on a discovery controller");
    }
}
