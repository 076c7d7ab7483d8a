using CsiNvme.Protocol.Logs;

namespace CsiNvme.Target.Tests;

/// <summary>Set/Get Features (NVMe base 2.0, 5.27), Asynchronous Events (5.2) and the Changed Namespace List log.</summary>
public sealed class FeatureTests
{
    [Test]
    public async Task NumberOfQueuesGrantsZeroBasedCountsCappedByTheTarget()
    {
        await using var harness = TargetHarness.Start(o => o.MaxIoQueues = 8);
        using var admin = harness.ConnectAdmin();
        var set = admin.SetFeatures((byte)FeatureId.NumberOfQueues, 3 | (3u << 16));
        Assert.That(set.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(set.Dw0, Is.EqualTo(3 | (3u << 16)), "NSQA | NCQA << 16, both 0-based");
        Assert.That(admin.GetFeatures((byte)FeatureId.NumberOfQueues).Dw0, Is.EqualTo(3 | (3u << 16)));

        var capped = admin.SetFeatures((byte)FeatureId.NumberOfQueues, 99 | (99u << 16));
        Assert.That(capped.Dw0, Is.EqualTo(7 | (7u << 16)), "at most MaxIoQueues");
        Assert.That(admin.SetFeatures((byte)FeatureId.NumberOfQueues, 0xFFFF).Status, Is.EqualTo(NvmeStatus.InvalidField), "65536 queues is invalid");
    }

    [Test]
    public async Task KeepAliveTimerIsSetAndRead()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(keepAliveMs: 5000);
        Assert.That(admin.GetFeatures((byte)FeatureId.KeepAliveTimer).Dw0, Is.EqualTo(5000u), "KATO from Connect");
        Assert.That(admin.SetFeatures((byte)FeatureId.KeepAliveTimer, 15000).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(admin.GetFeatures((byte)FeatureId.KeepAliveTimer).Dw0, Is.EqualTo(15000u));
    }

    [Test]
    public async Task AsyncEventConfigurationIsSetAndRead()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.GetFeatures((byte)FeatureId.AsyncEventConfiguration).Dw0, Is.Zero);
        Assert.That(admin.SetFeatures((byte)FeatureId.AsyncEventConfiguration, (1u << 8) | (1u << 11)).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(admin.GetFeatures((byte)FeatureId.AsyncEventConfiguration).Dw0, Is.EqualTo((1u << 8) | (1u << 11)));
    }

    [Test]
    public async Task HostIdentifierIsTheConnectHostId()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var get = admin.GetFeatures((byte)FeatureId.HostIdentifier, cdw11: 1, dataLength: 16);
        Assert.That(get.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(get.Data, Is.EqualTo(harness.Host.Id.ToByteArray(bigEndian: true)));
        Assert.That(admin.GetFeatures((byte)FeatureId.HostIdentifier, cdw11: 0, dataLength: 16).Status.Code, Is.EqualTo(0x18), "EXHID is required");
        Assert.That(admin.SetFeatures((byte)FeatureId.HostIdentifier, 1).Status.Code, Is.EqualTo(0x0C), "fixed by Connect");
    }

    [Test]
    public async Task UnknownFeatureAndSaveAreRefused()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.GetFeatures(0x7E).Status, Is.EqualTo(NvmeStatus.InvalidField));
        var save = admin.Execute(TestHost.Command((byte)AdminOpcode.SetFeatures, admin.NextCommandId(), 0, default, (byte)FeatureId.KeepAliveTimer | 0x8000_0000u, 1000));
        Assert.That(save.Status.Code, Is.EqualTo(0x0D), "Feature Identifier Not Saveable");
    }

    [Test]
    public async Task NamespaceChangeCompletesTheOutstandingAsyncEventAndIsListedInLog04()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.SetFeatures((byte)FeatureId.AsyncEventConfiguration, 1u << 8).Status, Is.EqualTo(NvmeStatus.Success));
        const ushort aerCid = 0x401F;
        admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, aerCid, 0, default));
        Assert.That(admin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success), "the AER stays outstanding; other commands still complete");

        harness.Subsystem.NotifyNamespaceChanged(1);
        var aer = admin.ReceiveCompletion(aerCid);
        Assert.That(aer.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(aer.Dw0, Is.EqualTo(0x0004_0002u), "notice, namespace attribute changed, log 04h");

        var log = admin.GetLogPage((byte)LogPageId.ChangedNamespaceList, 4096, namespaceId: 0xFFFF_FFFF);
        Assert.That(log.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(log.Data), Is.EqualTo(1u));
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(log.Data.AsSpan(4)), Is.Zero);

        var reread = admin.GetLogPage((byte)LogPageId.ChangedNamespaceList, 4096);
        Assert.That(reread.Data, Is.All.Zero, "reading the log clears it");

        // Reading the log unmasks the notice, so the next change raises a new event.
        admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 0x801F, 0, default));
        harness.Subsystem.NotifyNamespaceChanged(1);
        Assert.That(admin.ReceiveCompletion(0x801F).Dw0, Is.EqualTo(0x0004_0002u));
    }

    [Test]
    public async Task NamespaceChangeDoesNotCompleteTheAsyncEventWhenTheNoticeIsDisabled()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 31, 0, default));
        harness.Subsystem.NotifyNamespaceChanged(1);
        var keepAlive = admin.KeepAlive();
        Assert.That(keepAlive.Status, Is.EqualTo(NvmeStatus.Success), "the next PDU is the Keep Alive's, not the AER's");
        var log = admin.GetLogPage((byte)LogPageId.ChangedNamespaceList, 4096);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(log.Data), Is.EqualTo(1u), "the change is still logged");
    }

    [Test]
    public async Task SmartLogCountsIo()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        Assert.That(io.WriteInCapsule(1, 0, new byte[4096], TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 0, 4096, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
        var smart = admin.GetLogPage((byte)LogPageId.SmartHealth, SmartLog.Size);
        Assert.That(smart.Status, Is.EqualTo(NvmeStatus.Success));
        var log = SmartLog.Read(smart.Data);
        Assert.That(log.HostWriteCommands, Is.EqualTo(1ul));
        Assert.That(log.HostReadCommands, Is.EqualTo(1ul));
        Assert.That(log.DataUnitsWritten, Is.EqualTo(1ul), "8 units of 512 bytes round up to one thousand-unit");
    }
}
