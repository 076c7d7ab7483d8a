using CsiNvme.Protocol.Logs;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>The discovery controller and its log page (NVMe-oF 1.1, 5.3), read the way libnvme reads it.</summary>
public sealed class DiscoveryTests
{
    private static TestHost ConnectDiscovery(TargetHarness harness, NvmeHostIdentity host, uint keepAliveMs = 0)
    {
        var discovery = harness.Initialize();
        var connect = discovery.ConnectAdmin(NvmeTarget.DiscoveryNqn, host.Nqn, host.Id, keepAliveMs);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success), "Connect to the discovery NQN");
        discovery.Enable();
        return discovery;
    }

    /// <summary>libnvme: the 1 KiB header first, then the whole page again in 4 KiB pieces by LPO.</summary>
    private static byte[] ReadDiscoveryLogInChunks(TestHost discovery, out ulong generation)
    {
        var header = discovery.GetLogPage((byte)LogPageId.Discovery, DiscoveryLog.HeaderSize);
        Assert.That(header.Status, Is.EqualTo(NvmeStatus.Success));
        generation = BinaryPrimitives.ReadUInt64LittleEndian(header.Data);
        var records = BinaryPrimitives.ReadUInt64LittleEndian(header.Data.AsSpan(8));
        var total = DiscoveryLog.HeaderSize + (int)records * DiscoveryLogEntry.Size;
        var page = new byte[total];
        for (var offset = 0; offset < total; offset += 4096)
        {
            var length = Math.Min(4096, total - offset);
            var chunk = discovery.GetLogPage((byte)LogPageId.Discovery, length, (ulong)offset);
            Assert.That(chunk.Status, Is.EqualTo(NvmeStatus.Success), $"chunk at LPO {offset}");
            Assert.That(chunk.Data, Has.Length.EqualTo(length));
            chunk.Data.CopyTo(page, offset);
        }

        return page;
    }

    [Test]
    public async Task LogReadInChunksByOffsetListsExactlyTheAllowedSubsystems()
    {
        await using var harness = TargetHarness.Start();
        var expected = new List<string> { TargetHarness.SubsystemNqn };
        for (var i = 0; i < 5; i++)
        {
            var nqn = $"nqn.2024-01.io.csinvme:allowed-{i}";
            harness.Target.AddSubsystem(new Subsystem(nqn, $"sn-{i}", allowAnyHost: false, [harness.Host.Nqn]));
            expected.Add(nqn);
        }

        harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:open", "sn-open", allowAnyHost: true));
        expected.Add("nqn.2024-01.io.csinvme:open");
        harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:someone-else", "sn-x", allowAnyHost: false, ["nqn.2014-08.org.nvmexpress:uuid:other"]));
        harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:nobody", "sn-y", allowAnyHost: false));

        using var discovery = ConnectDiscovery(harness, harness.Host);
        var page = ReadDiscoveryLogInChunks(discovery, out var generation);
        var (pageGeneration, count, entries) = DiscoveryLog.Parse(page);

        Assert.That(page.Length, Is.GreaterThan(4096), "more than one chunk");
        Assert.That(pageGeneration, Is.EqualTo(generation), "GENCTR did not change between the reads");
        Assert.That(count, Is.EqualTo((ulong)expected.Count));
        Assert.That(entries.Select(e => e.SubsystemNqn), Is.EquivalentTo(expected));
        foreach (var entry in entries)
        {
            Assert.That(entry.TransportType, Is.EqualTo(TransportType.Tcp));
            Assert.That(entry.AddressFamily, Is.EqualTo(Protocol.Logs.AddressFamily.IPv4));
            Assert.That(entry.SubsystemType, Is.EqualTo(DiscoverySubsystemType.NvmSubsystem));
            Assert.That(entry.TransportAddress, Is.EqualTo("127.0.0.1"));
            Assert.That(entry.ServiceId, Is.EqualTo(harness.Endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.That(entry.ControllerId, Is.EqualTo((ushort)0xFFFF), "dynamic controllers");
        }

        var whole = discovery.GetLogPage((byte)LogPageId.Discovery, page.Length);
        Assert.That(whole.Data, Is.EqualTo(page), "chunked and single reads agree");
    }

    [Test]
    public async Task LogOnlyShowsSubsystemsOfTheAskingHostAndGenerationMovesOnChange()
    {
        await using var harness = TargetHarness.Start();
        var stranger = NvmeHostIdentity.Create();
        using var discovery = ConnectDiscovery(harness, stranger);
        var before = discovery.GetLogPage((byte)LogPageId.Discovery, 4096);
        var (generation, count, _) = DiscoveryLog.Parse(before.Data);
        Assert.That(count, Is.Zero, "a host with no access sees nothing");

        harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:for-stranger", "sn", allowAnyHost: false, [stranger.Nqn]));
        var (afterGeneration, afterCount, entries) = DiscoveryLog.Parse(discovery.GetLogPage((byte)LogPageId.Discovery, 4096).Data);
        Assert.That(afterGeneration, Is.GreaterThan(generation));
        Assert.That(afterCount, Is.EqualTo(1ul));
        Assert.That(entries[0].SubsystemNqn, Is.EqualTo("nqn.2024-01.io.csinvme:for-stranger"));
    }

    [Test]
    public async Task DiscoveryControllerAcceptsKeepAlive()
    {
        await using var harness = TargetHarness.Start();
        using var discovery = ConnectDiscovery(harness, harness.Host, keepAliveMs: 30_000);
        Assert.That(discovery.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(discovery.SetFeatures((byte)FeatureId.KeepAliveTimer, 10_000).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(discovery.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task DiscoveryControllerRefusesIoQueues()
    {
        await using var harness = TargetHarness.Start();
        using var discovery = ConnectDiscovery(harness, harness.Host);
        using var io = harness.Initialize();
        var connect = io.ConnectIo(1, discovery.ControllerId, NvmeTarget.DiscoveryNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status.Code, Is.EqualTo(0x82));
        Assert.That(connect.Status.Type, Is.EqualTo(StatusCodeType.CommandSpecific));
    }

    [Test]
    public async Task IoControllerHasNoDiscoveryLog()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        Assert.That(admin.GetLogPage((byte)LogPageId.Discovery, 4096).Status, Is.EqualTo(NvmeStatus.InvalidLogPage));
    }
}
