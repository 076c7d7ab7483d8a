using CsiNvme.Protocol.Fabrics;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>The Fabrics Connect command (NVMe-oF 1.1, 3.3) and host access control.</summary>
public sealed class ConnectTests
{
    private static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);

    /// <summary>Connect Invalid Parameters (SCT 1, SC 82h) with IATTR (bit 0) and IPO (bits 31:16) in DW0 (NVMe-oF 1.1, Figure 22).</summary>
    private static void AssertInvalidParameter(Completion completion, bool inData, ushort offset)
    {
        Assert.That(completion.Status.Type, Is.EqualTo(StatusCodeType.CommandSpecific));
        Assert.That(completion.Status.Code, Is.EqualTo(0x82));
        Assert.That(completion.Dw0 & 1, Is.EqualTo(inData ? 1u : 0u), "IATTR");
        Assert.That(completion.Dw0 >> 16, Is.EqualTo((uint)offset), "IPO");
    }

    [Test]
    public async Task AdminConnectReturnsUniqueControllerIds()
    {
        await using var harness = TargetHarness.Start();
        using var first = harness.Initialize();
        using var second = harness.Initialize();
        var a = first.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, keepAliveMs: 5000);
        var b = second.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, keepAliveMs: 5000);

        Assert.That(a.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Status, Is.EqualTo(NvmeStatus.Success));
        var idA = a.Dw0 & 0xFFFF;
        var idB = b.Dw0 & 0xFFFF;
        Assert.That(idA, Is.Not.EqualTo(idB), "CNTLID is unique within the subsystem");
        Assert.That(idA, Is.InRange(1u, 0xFFEFu));
        Assert.That(idB, Is.InRange(1u, 0xFFEFu));
        Assert.That(a.Dw0 >> 16 & 3, Is.Zero, "no authentication required");
        Assert.That(harness.Subsystem.ControllerCount, Is.EqualTo(2));
    }

    [Test]
    public async Task IoQueueConnectsToItsController()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var connect = io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(connect.Dw0 & 0xFFFF, Is.EqualTo((uint)admin.ControllerId));
        Assert.That(connect.Entry.SubmissionQueueId, Is.EqualTo((ushort)1), "SQID of the I/O queue's own completion");

        var flush = io.Execute(TestHost.Command((byte)IoOpcode.Flush, io.NextCommandId(), 1, default));
        Assert.That(flush.Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task DuplicateQueueIdIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var first = harness.ConnectIo(admin, 1);
        using var second = harness.Initialize();
        var connect = second.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        AssertInvalidParameter(connect, inData: false, offset: 42);
    }

    [Test]
    public async Task QueueIdBeyondGrantedQueuesIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var granted = admin.SetFeatures((byte)FeatureId.NumberOfQueues, 1 | (1u << 16));
        Assert.That(granted.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(granted.Dw0, Is.EqualTo(1 | (1u << 16)), "two submission and two completion queues");

        using var q2 = harness.ConnectIo(admin, 2);
        using var q3 = harness.Initialize();
        var connect = q3.ConnectIo(3, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        AssertInvalidParameter(connect, inData: false, offset: 42);
    }

    [Test]
    public async Task UnknownControllerIdIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var wrong = (ushort)(admin.ControllerId + 100);
        var connect = io.ConnectIo(1, wrong, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        AssertInvalidParameter(connect, inData: true, offset: 16);
    }

    [Test]
    public async Task IoConnectFromAnotherHostToSomeonesControllerIsRejected()
    {
        await using var harness = TargetHarness.Start();
        var other = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(other.Nqn);
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var connect = io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, other.Nqn, other.Id);
        AssertInvalidParameter(connect, inData: true, offset: 16);
    }

    [Test]
    public async Task ZeroSubmissionQueueSizeIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var connect = host.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, sqSize: 0);
        AssertInvalidParameter(connect, inData: false, offset: 44);
    }

    [Test]
    public async Task SubmissionQueueSizeBeyondMqesIsRejected()
    {
        await using var harness = TargetHarness.Start(o => o.MaxQueueEntries = 128);
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var connect = io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, sqSize: 128);
        AssertInvalidParameter(connect, inData: false, offset: 44);
        var fits = io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, sqSize: 127);
        Assert.That(fits.Status, Is.EqualTo(NvmeStatus.Success), "SQSIZE is 0-based: 127 means 128 entries = MQES + 1");
    }

    [Test]
    public async Task UnknownSubsystemIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var connect = host.ConnectAdmin("nqn.2024-01.io.csinvme:no-such-subsystem", harness.Host.Nqn, harness.Host.Id);
        AssertInvalidParameter(connect, inData: true, offset: 256);
    }

    [Test]
    public async Task HostNotAllowedGetsInvalidHostUntilAllowed()
    {
        await using var harness = TargetHarness.Start();
        var stranger = NvmeHostIdentity.Create();
        using var host = harness.Initialize();
        var refused = host.ConnectAdmin(TargetHarness.SubsystemNqn, stranger.Nqn, stranger.Id);
        Assert.That(refused.Status.Type, Is.EqualTo(StatusCodeType.CommandSpecific));
        Assert.That(refused.Status.Code, Is.EqualTo(0x84), "Connect Invalid Host");
        Assert.That(harness.Subsystem.ControllerCount, Is.Zero);

        harness.Subsystem.AllowHost(stranger.Nqn);
        var accepted = host.ConnectAdmin(TargetHarness.SubsystemNqn, stranger.Nqn, stranger.Id);
        Assert.That(accepted.Status, Is.EqualTo(NvmeStatus.Success), "a refused Connect leaves the queue usable for another Connect");
        Assert.That(harness.Subsystem.ConnectedHosts, Is.EqualTo(new[] { stranger.Nqn }));
    }

    [Test]
    public async Task DenyHostTearsDownItsControllerAndQueues()
    {
        await using var harness = TargetHarness.Start();
        var other = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(other.Nqn);
        using var admin = harness.ConnectAdmin();
        using var io = harness.ConnectIo(admin, 1);
        using var otherAdmin = harness.ConnectAdmin(host: other);

        await harness.Subsystem.DenyHost(harness.Host.Nqn).WaitAsync(CloseWait);

        Assert.That(admin.WaitClosed(CloseWait), Is.True, "admin queue closed");
        Assert.That(io.WaitClosed(CloseWait), Is.True, "I/O queue closed");
        Assert.That(harness.Subsystem.ConnectedHosts, Is.EqualTo(new[] { other.Nqn }));
        Assert.That(otherAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success), "another host's controller is untouched");

        using var again = harness.Initialize();
        var refused = again.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(refused.Status.Code, Is.EqualTo(0x84));
    }

    [Test]
    public async Task CommandBeforeConnectIsACommandSequenceError()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var identify = host.Identify(1);
        Assert.That(identify.Status.Type, Is.EqualTo(StatusCodeType.Generic));
        Assert.That(identify.Status.Code, Is.EqualTo(0x0C));
        Assert.That(identify.DataPdus, Is.Zero);
    }

    [Test]
    public async Task SecondConnectOnAQueueIsACommandSequenceError()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        var again = admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(again.Status.Code, Is.EqualTo(0x0C));
        Assert.That(again.Status.Type, Is.EqualTo(StatusCodeType.Generic));
    }

    [Test]
    public async Task AdminConnectWithAStaticControllerIdIsRejected()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var connect = host.Connect(0, 31, 0, new ConnectData(harness.Host.Id, 5, TargetHarness.SubsystemNqn, harness.Host.Nqn));
        AssertInvalidParameter(connect, inData: true, offset: 16);
    }

    [Test]
    public async Task ConnectsBeyondThePerHostCapAreRefusedAsBusyAndTheCapIsLoggedOnce()
    {
        await using var harness = TargetHarness.Start(o => o.MaxConnectionsPerHost = 3);
        var other = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(other.Nqn);
        using var admin = harness.ConnectAdmin();
        using var q1 = harness.ConnectIo(admin, 1);
        var q2 = harness.ConnectIo(admin, 2);

        using var q3 = harness.Initialize();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var refused = q3.ConnectIo(3, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
            Assert.That(refused.Status.Type, Is.EqualTo(StatusCodeType.CommandSpecific));
            Assert.That(refused.Status.Code, Is.EqualTo(0x81), "Connect Controller Busy: Linux says \"controller is busy or not available\" and retries");
        }

        using (var secondAdmin = harness.Initialize())
        {
            Assert.That(secondAdmin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status.Code, Is.EqualTo(0x81), "admin queues count too");
        }

        using (var otherAdmin = harness.ConnectAdmin(host: other))
        {
            Assert.That(otherAdmin.KeepAlive().Status, Is.EqualTo(NvmeStatus.Success), "another host has a count of its own");
        }

        Assert.That(harness.Logs.Matching("reached the limit of 3 connections per host"), Has.Count.EqualTo(1), "one line for the transition");
        Assert.That(harness.Logs.Matching("rejected: the host holds the limit of 3 connections per host", harness.Host.Nqn, TargetHarness.SubsystemNqn), Has.Count.EqualTo(4),
            "and each refused Connect once");

        q2.Dispose();
        Assert.That(harness.Logs.WaitFor(TimeSpan.FromSeconds(10), 1, "below the limit of 3 connections per host again"), Is.True);
        var accepted = q3.ConnectIo(3, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(accepted.Status, Is.EqualTo(NvmeStatus.Success), "a freed connection makes room");
        Assert.That(q3.Execute(TestHost.Command((byte)IoOpcode.Flush, q3.NextCommandId(), 1, default)).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task EmptyHostNqnIsAcceptedWhereAnyHostIsAllowed()
    {
        await using var harness = TargetHarness.Start();
        const string openNqn = "nqn.2024-01.io.csinvme:open-to-any-host";
        var open = harness.Target.AddSubsystem(new Subsystems.Subsystem(openNqn, "csinvme-open-sn", allowAnyHost: true));
        open.AddNamespace(new Subsystems.TargetNamespace(1, harness.NewVolume(), Guid.NewGuid()));
        var hostId = Guid.NewGuid();

        // As spdk_nvme_perf connects without -q: discovery, then the subsystem's admin and I/O queues, no host NQN.
        using (var discovery = harness.Initialize())
        {
            Assert.That(discovery.ConnectAdmin(NvmeTarget.DiscoveryNqn, "", hostId).Status, Is.EqualTo(NvmeStatus.Success), "discovery takes any host");
        }

        using var admin = harness.Initialize();
        Assert.That(admin.ConnectAdmin(openNqn, "", hostId).Status, Is.EqualTo(NvmeStatus.Success));
        admin.Enable();
        using var io = harness.Initialize();
        Assert.That(io.ConnectIo(1, admin.ControllerId, openNqn, "", hostId).Status, Is.EqualTo(NvmeStatus.Success));
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        Assert.That(io.WriteInCapsule(1, 0, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 0, data.Length, TargetHarness.BlockSize).Data, Is.EqualTo(data));
        Assert.That(harness.Logs.Matching("rejected"), Is.Empty);
    }

    [Test]
    public async Task EmptyHostNqnIsRefusedWithTheReasonLoggedWhereHostsAreListed()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Initialize();
        var refused = host.ConnectAdmin(TargetHarness.SubsystemNqn, "", harness.Host.Id);
        Assert.That(refused.Status.Type, Is.EqualTo(StatusCodeType.CommandSpecific));
        Assert.That(refused.Status.Code, Is.EqualTo(0x84), "Connect Invalid Host, as for any host not on the list");
        var lines = harness.Logs.Matching("rejected", host.Socket.LocalEndPoint!.ToString()!, "(host (empty))", TargetHarness.SubsystemNqn);
        Assert.That(lines, Has.Count.EqualTo(1));
        Assert.That(lines[0], Does.Contain("empty host NQN, and the subsystem allows only the hosts on its list"));
    }

    [Test]
    public async Task EveryRefusedConnectIsLoggedOnceWithAddressHostSubsystemAndReason()
    {
        await using var harness = TargetHarness.Start(o => o.MaxConnectionsPerHost = 3);
        var stranger = NvmeHostIdentity.Create();
        using var admin = harness.ConnectAdmin();
        using var q1 = harness.ConnectIo(admin, 1);
        var refusals = new List<(TestHost Host, string Reason, string HostNqn, string SubsystemNqn)>();
        var hosts = new List<TestHost>();
        TestHost Fresh()
        {
            var host = harness.Initialize();
            hosts.Add(host);
            return host;
        }

        void Refused(TestHost host, Completion completion, string reason, string? hostNqn = null, string subsystemNqn = TargetHarness.SubsystemNqn)
        {
            Assert.That(completion.Status.IsSuccess, Is.False, reason);
            refusals.Add((host, reason, hostNqn ?? harness.Host.Nqn, subsystemNqn));
        }

        try
        {
            var h = Fresh();
            Refused(h, h.ConnectAdmin("nqn.2024-01.io.csinvme:nowhere", harness.Host.Nqn, harness.Host.Id), "unknown subsystem", subsystemNqn: "nqn.2024-01.io.csinvme:nowhere");
            h = Fresh();
            Refused(h, h.ConnectAdmin(TargetHarness.SubsystemNqn, stranger.Nqn, stranger.Id), "host not allowed", stranger.Nqn);
            h = Fresh();
            Refused(h, h.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id, sqSize: 0), "submission queue size 1 outside");
            h = Fresh();
            Refused(h, h.Connect(0, 31, 0, new ConnectData(harness.Host.Id, 5, TargetHarness.SubsystemNqn, harness.Host.Nqn)), "controller ID 5 asked for on an admin queue");
            h = Fresh();
            Refused(h, h.ConnectIo(1, 1, NvmeTarget.DiscoveryNqn, harness.Host.Nqn, harness.Host.Id), "I/O queue asked for on the discovery subsystem", subsystemNqn: NvmeTarget.DiscoveryNqn);
            h = Fresh();
            Refused(h, h.ConnectIo(1, (ushort)(admin.ControllerId + 7), TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id), "no controller");
            h = Fresh();
            Refused(h, h.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id), "I/O queue 1 of controller");
            Refused(admin, admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id), "is connected already");
            Refused(q1, q1.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id), "queue 1 of controller");
            h = Fresh();
            var payload = new byte[ConnectData.Size];
            new ConnectData(harness.Host.Id, ConnectData.DynamicControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn).Write(payload);
            var badFormat = new ConnectCommand(1, 0, 31, 0, 0).ToSubmissionQueueEntry(h.NextCommandId(), TestHost.InCapsule(payload.Length));
            Refused(h, h.Execute(badFormat, payload), "record format 1");
            h = Fresh();
            var shortData = new ConnectCommand(0, 0, 31, 0, 0).ToSubmissionQueueEntry(h.NextCommandId(), TestHost.InCapsule(512));
            Refused(h, h.Execute(shortData, payload.AsSpan(0, 512)), "512 bytes of Connect data", hostNqn: "(empty)", subsystemNqn: "(empty)");
            using var q2 = harness.ConnectIo(admin, 2);
            h = Fresh();
            Refused(h, h.ConnectIo(3, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id), "holds the limit of 3 connections per host");

            var rejected = harness.Logs.Matching("rejected");
            Assert.That(rejected, Has.Count.EqualTo(refusals.Count), string.Join(Environment.NewLine, rejected));
            foreach (var (host, reason, hostNqn, subsystemNqn) in refusals)
            {
                var from = $"Connect from {host.Socket.LocalEndPoint} (host {hostNqn}) to {subsystemNqn} rejected: ";
                Assert.That(rejected.Count(l => l.StartsWith(from, StringComparison.Ordinal) && l.Contains(reason, StringComparison.Ordinal)), Is.EqualTo(1), $"{from}...{reason}");
            }
        }
        finally
        {
            hosts.ForEach(x => x.Dispose());
        }
    }
}
