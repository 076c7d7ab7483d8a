using System.Net;
using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Logs;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Asymmetric Namespace Access as a storage node of a cluster reports it (NVMe base 2.0, 8.1.3): its own ANA group, a
/// state per path, a notice and a new log when the state changes, path statuses for I/O the state does not allow,
/// controller ids from the node's own range and the other nodes' listeners in the discovery log.
/// </summary>
public sealed class AnaTests
{
    private const int Bs = TargetHarness.BlockSize;
    private const string NodeNqn = "nqn.2024-01.io.csinvme:clustered";

    private static (TestHost Admin, TestHost Io) Connect(TargetHarness harness, string nqn)
    {
        var admin = harness.Initialize();
        var connect = admin.ConnectAdmin(nqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        admin.ControllerId = (ushort)connect.Dw0;
        admin.Enable();
        var io = harness.Initialize();
        Assert.That(io.ConnectIo(1, admin.ControllerId, nqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        return (admin, io);
    }

    private static Subsystem AddNodeSubsystem(TargetHarness harness, uint anaGroupId)
    {
        var subsystem = harness.Target.AddSubsystem(new Subsystem(NodeNqn, "sn-clustered", allowAnyHost: false, [harness.Host.Nqn]) { AnaGroupId = anaGroupId });
        subsystem.AddNamespace(new TargetNamespace(1, harness.NewVolume(), Guid.NewGuid()));
        return subsystem;
    }

    [Test]
    public async Task The_namespace_is_in_the_node_group_and_the_log_reports_its_state()
    {
        await using var harness = TargetHarness.Start();
        var subsystem = AddNodeSubsystem(harness, anaGroupId: 3);
        var (admin, io) = Connect(harness, NodeNqn);
        using var _ = admin;
        using var __ = io;

        var controller = IdentifyController.Read(admin.Identify((byte)IdentifyCns.Controller).Data);
        Assert.That(controller.MultiPathCapabilities & 0x0A, Is.EqualTo(0x0A), "CMIC: multi-controller and ANA reporting");
        Assert.That(controller.AnaGroupIdMax, Is.GreaterThanOrEqualTo(3u));
        var ns = IdentifyNamespace.Read(admin.Identify((byte)IdentifyCns.Namespace, 1).Data);
        Assert.That(ns.AnaGroupId, Is.EqualTo(3u));
        Assert.That(ns.MultiPathCapabilities & 1, Is.EqualTo(1), "NMIC: shared namespace");

        var (changes, groups) = AnaLog.Parse(admin.GetLogPage((byte)LogPageId.AsymmetricNamespaceAccess, 4096).Data);
        Assert.That(changes, Is.Zero);
        Assert.That(groups, Has.Count.EqualTo(1));
        Assert.That(groups[0].GroupId, Is.EqualTo(3u));
        Assert.That(groups[0].State, Is.EqualTo(AnaState.Optimized));
        Assert.That(groups[0].NamespaceIds, Is.EqualTo(new uint[] { 1 }));
        Assert.That(subsystem.AnaState, Is.EqualTo(AnaState.Optimized));
    }

    [Test]
    public async Task A_state_change_raises_one_notice_until_the_log_is_read_and_refuses_io_with_a_path_status()
    {
        await using var harness = TargetHarness.Start();
        var subsystem = AddNodeSubsystem(harness, anaGroupId: 2);
        var (admin, io) = Connect(harness, NodeNqn);
        using var _ = admin;
        using var __ = io;
        Assert.That(admin.SetFeatures((byte)FeatureId.AsyncEventConfiguration, 1u << 11).Status, Is.EqualTo(NvmeStatus.Success));
        admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 0x301F, 0, default));
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));

        Assert.That(subsystem.SetAnaState(AnaState.Inaccessible), Is.True);
        Assert.That(subsystem.SetAnaState(AnaState.Inaccessible), Is.False, "no change, no notice");
        var aer = admin.ReceiveCompletion(0x301F);
        Assert.That(aer.Dw0, Is.EqualTo(0x000C_0302u), "notice, ANA change, log 0Ch");

        var write = io.WriteInCapsule(1, 0, new byte[Bs], Bs);
        Assert.That(write.Status, Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));
        Assert.That(write.Status.DoNotRetry, Is.False);
        Assert.That(io.Read(1, 0, Bs, Bs).Status, Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));

        // Masked until the log is read: a second change raises nothing.
        admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 0x401F, 0, default));
        subsystem.SetAnaState(AnaState.Change);
        Assert.That(admin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success), "the next completion is the Keep Alive's");
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.AsymmetricAccessTransition));

        var (changes, groups) = AnaLog.Parse(admin.GetLogPage((byte)LogPageId.AsymmetricNamespaceAccess, 4096).Data);
        Assert.That(changes, Is.EqualTo(2ul));
        Assert.That(groups[0].State, Is.EqualTo(AnaState.Change));

        subsystem.SetAnaState(AnaState.Optimized);
        Assert.That(admin.ReceiveCompletion(0x401F).Dw0, Is.EqualTo(0x000C_0302u), "reading the log unmasked the notice");
        Assert.That(io.WriteInCapsule(1, 0, new byte[Bs], Bs).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task Controller_ids_come_from_the_node_range()
    {
        await using var harness = TargetHarness.Start(o =>
        {
            o.ControllerIdBase = 0x2001;
            o.ControllerIdCount = 2;
        });
        using var first = harness.ConnectAdmin();
        using var second = harness.ConnectAdmin();
        Assert.That(new[] { first.ControllerId, second.ControllerId }, Is.EquivalentTo(new ushort[] { 0x2001, 0x2002 }));

        using var third = harness.Initialize();
        var refused = third.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(refused.Status, Is.EqualTo(NvmeStatus.ConnectControllerBusy), "the range is used up");

        first.Dispose();
        Assert.That(harness.WaitForConnectionCount(2, TimeSpan.FromSeconds(30)), Is.True);
        using var again = harness.Initialize();
        var connect = again.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success), "a released id is handed out again");
        Assert.That((ushort)connect.Dw0, Is.InRange((ushort)0x2001, (ushort)0x2002));
    }

    [Test]
    public async Task The_discovery_log_lists_the_peer_listeners_after_our_own()
    {
        await using var harness = TargetHarness.Start(o => o.PortIdBase = 17);
        var generation = harness.Target.DiscoveryGeneration;
        Assert.That(harness.Subsystem.SetPeerPorts([new PeerPort(new IPEndPoint(IPAddress.Parse("10.0.0.2"), 4420), 33), new PeerPort(new IPEndPoint(IPAddress.Parse("10.0.0.3"), 4421), 49)]), Is.True);
        harness.Target.NotifyDiscoveryChanged();
        Assert.That(harness.Target.DiscoveryGeneration, Is.GreaterThan(generation));

        using var discovery = harness.Initialize();
        Assert.That(discovery.ConnectAdmin(NvmeTarget.DiscoveryNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        discovery.Enable();
        var header = discovery.GetLogPage((byte)LogPageId.Discovery, 4096);
        var (_, count, entries) = DiscoveryLog.Parse(header.Data);
        Assert.That(count, Is.EqualTo(3ul));
        Assert.That(entries.Select(e => (e.PortId, e.TransportAddress, e.ServiceId)), Is.EqualTo(new[]
        {
            ((ushort)17, "127.0.0.1", harness.Endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ((ushort)33, "10.0.0.2", "4420"),
            ((ushort)49, "10.0.0.3", "4421"),
        }));
        Assert.That(entries.Select(e => e.SubsystemNqn), Is.All.EqualTo(TargetHarness.SubsystemNqn));
    }
}
