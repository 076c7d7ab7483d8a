using System.Security.Cryptography;
using CsiNvme.Protocol.Authentication;
using CsiNvme.Protocol.Logs;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// DH-HMAC-CHAP in the target (NVMe base 2.0, 8.13): the Connect response asks for authentication, nothing else is
/// served before it, each queue authenticates, a wrong or missing secret ends the controller, re-authentication, and the
/// discovery log hiding what a host has not proven it may use. The host side is <see cref="DhchapHostTransaction"/>
/// driven over a raw connection; the Linux host's side is in the guest tests.
/// </summary>
public sealed class AuthenticationTests
{
    private static readonly DhchapSecret HostSecret = DhchapSecret.Generate(DhchapHash.Sha256);
    private static readonly DhchapSecret ControllerSecret = DhchapSecret.Generate(null, 48);

    [Test]
    public async Task ConnectAsksForAuthenticationAndNothingElseIsServedBeforeIt()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = harness.Initialize();
        var connect = admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(connect.Dw0 & (1u << 17), Is.Not.Zero, "AUTHREQ.ATR");
        Assert.That(admin.GetProperty(0).Status, Is.EqualTo(NvmeStatus.AuthenticationRequired), "Property Get before authentication");
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.AuthenticationRequired), "Identify before authentication");

        Assert.That(Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret).Error, Is.Null);
        admin.Enable();
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.Success), "Identify after authentication");
    }

    [Test]
    public async Task EveryIoQueueAuthenticatesBeforeItsIo()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret, ControllerSecret, DhchapHash.Sha384, DhchapDhGroup.Ffdhe3072));
        using var admin = ConnectAuthenticated(harness, harness.Host, HostSecret, ControllerSecret);
        using var io = harness.Initialize();
        var connect = io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Dw0 & (1u << 17), Is.Not.Zero, "the I/O queue's Connect asks for authentication too");

        var data = RandomNumberGenerator.GetBytes(4096);
        Assert.That(io.WriteInCapsule(1, 0, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.AuthenticationRequired));
        var transaction = Authenticate(io, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, ControllerSecret);
        Assert.That(transaction.Error, Is.Null);
        Assert.That(transaction.ControllerAuthenticated, Is.True, "bidirectional");
        Assert.That(transaction.Hash, Is.EqualTo(DhchapHash.Sha384));
        Assert.That(transaction.DhGroup, Is.EqualTo(DhchapDhGroup.Ffdhe3072));
        Assert.That(io.WriteInCapsule(1, 0, data, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 0, data.Length, TargetHarness.BlockSize).Data, Is.EqualTo(data));
    }

    [TestCase(DhchapHash.Sha256, DhchapDhGroup.Null)]
    [TestCase(DhchapHash.Sha256, DhchapDhGroup.Ffdhe2048)]
    [TestCase(DhchapHash.Sha384, DhchapDhGroup.Ffdhe4096)]
    [TestCase(DhchapHash.Sha512, DhchapDhGroup.Ffdhe6144)]
    [TestCase(DhchapHash.Sha512, DhchapDhGroup.Ffdhe8192)]
    public async Task EveryHashAndGroupAuthenticatesBothWays(DhchapHash hash, DhchapDhGroup group)
    {
        await using var harness = TargetHarness.Start();
        var hostSecret = DhchapSecret.Generate(hash);
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(hostSecret, ControllerSecret, hash, group));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        var transaction = Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, hostSecret, ControllerSecret);

        Assert.That(transaction.Error, Is.Null);
        Assert.That((transaction.Hash, transaction.DhGroup), Is.EqualTo(((DhchapHash?)hash, (DhchapDhGroup?)group)));
        Assert.That(transaction.ControllerAuthenticated, Is.True);
        admin.Enable();
    }

    [Test]
    public async Task AWrongSecretIsRefusedAndTheControllerTornDown()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        var transaction = Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, DhchapSecret.Generate(DhchapHash.Sha256));

        Assert.That(transaction.Error, Does.Contain("AUTH_Failure1"));
        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True, "the controller is torn down");
        Assert.That(harness.Subsystem.ControllerCount, Is.Zero);
        Assert.That(harness.Logs.Matching("does not match its secret"), Is.Not.Empty);
        Assert.That(harness.Logs.Messages.Select(m => m.Message), Has.None.Contains(HostSecret.Format()[10..40]), "secrets are never logged");
    }

    [Test]
    public async Task AHostThatAsksTheControllerToAuthenticateWithoutAControllerSecretIsRefused()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        var transaction = Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, ControllerSecret);

        Assert.That(transaction.Error, Does.Contain("AUTH_Failure1"));
        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True);
    }

    [Test]
    public async Task AControllerWithAnotherControllerSecretFailsTheHostsCheck()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret, DhchapSecret.Generate(null)));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        var transaction = Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, ControllerSecret);

        Assert.That(transaction.Error, Does.Contain("controller's response does not match"));
        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True, "AUTH_Failure2 ends the controller");
    }

    [Test]
    public async Task TheVolumesDhGroupIsRequiredNotDowngraded()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret, dhGroup: DhchapDhGroup.Ffdhe2048));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        var transaction = Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, groups: [DhchapDhGroup.Null]);

        Assert.That(transaction.Error, Does.Contain(nameof(DhchapFailureReason.DhGroupUnusable)));
    }

    [Test]
    public async Task AHostThatNeverAuthenticatesIsDisconnectedAfterTheConnectTimeout()
    {
        await using var harness = TargetHarness.Start(o => o.ConnectTimeout = TimeSpan.FromSeconds(1));
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);

        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(15)), Is.True);
        Assert.That(harness.Subsystem.ControllerCount, Is.Zero);
    }

    [Test]
    public async Task ReauthenticationKeepsServingAndAFailedOneEndsTheController()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = ConnectAuthenticated(harness, harness.Host, HostSecret);

        Assert.That(Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, transactionId: 7).Error, Is.Null, "re-authentication");
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.Success));

        // The volume's secret was rotated; the host re-authenticates with the new one, then once more with the old.
        var rotated = DhchapSecret.Generate(DhchapHash.Sha256);
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(rotated));
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.Success), "a rotation leaves authenticated queues alone");
        Assert.That(Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, rotated, transactionId: 8).Error, Is.Null);
        Assert.That(Authenticate(admin, harness.Host.Nqn, TargetHarness.SubsystemNqn, HostSecret, transactionId: 9).Error, Does.Contain("AUTH_Failure1"));
        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True);
    }

    [Test]
    public async Task ASpoofedHostNqnWithoutTheSecretGetsNoDataAndNoDiscoveryEntry()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:open", "sn-open", allowAnyHost: true));
        var spoofer = new NvmeHostIdentity(harness.Host.Nqn, Guid.NewGuid());

        using (var discovery = ConnectDiscovery(harness, spoofer))
        {
            Assert.That(DiscoveredNqns(discovery), Is.EquivalentTo(new[] { "nqn.2024-01.io.csinvme:open" }), "the protected subsystem is hidden");
            var guess = Authenticate(discovery, spoofer.Nqn, NvmeTarget.DiscoveryNqn, DhchapSecret.Generate(DhchapHash.Sha256));
            Assert.That(guess.Error, Does.Contain("AUTH_Failure1"), "a guessed secret fails on discovery too");
        }

        using var admin = harness.Initialize();
        Assert.That(admin.ConnectAdmin(TargetHarness.SubsystemNqn, spoofer.Nqn, spoofer.Id).Dw0 & (1u << 17), Is.Not.Zero);
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.AuthenticationRequired));
        using var io = harness.Initialize();
        io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, spoofer.Nqn, spoofer.Id);
        Assert.That(io.Read(1, 0, 4096, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.AuthenticationRequired));
    }

    [Test]
    public async Task ADiscoveryControllerListsWhatTheProvenSecretOpens()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        var other = harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:other", "sn-other", allowAnyHost: false, [harness.Host.Nqn]));
        other.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(DhchapSecret.Generate(DhchapHash.Sha512), hash: DhchapHash.Sha512));

        using var discovery = ConnectDiscovery(harness, harness.Host);
        Assert.That(DiscoveredNqns(discovery), Is.Empty, "no secret proven yet");
        Assert.That(Authenticate(discovery, harness.Host.Nqn, NvmeTarget.DiscoveryNqn, HostSecret).Error, Is.Null);
        Assert.That(DiscoveredNqns(discovery), Is.EquivalentTo(new[] { TargetHarness.SubsystemNqn }), "only the subsystem of the proven secret");
    }

    [Test]
    public async Task MalformedAuthenticationCommandsGetAnErrorAndTheTargetKeepsServing()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostCredentials(harness.Host.Nqn, DhchapCredentials.Create(HostSecret));
        using var admin = harness.Initialize();
        admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        var message = new DhchapHostTransaction(harness.Host.Nqn, TargetHarness.SubsystemNqn, 1, HostSecret).Negotiate();

        var wrongProtocol = new AuthenticationCommand(0xEA, 1, 1, (uint)message.Length).ToSubmissionQueueEntry(admin.NextCommandId(), send: true, TestHost.InCapsule(message.Length));
        Assert.That(admin.Execute(wrongProtocol, message).Status, Is.EqualTo(NvmeStatus.InvalidField));
        var shortData = AuthenticationCommand.Dhchap((uint)message.Length + 1).ToSubmissionQueueEntry(admin.NextCommandId(), send: true, TestHost.InCapsule(message.Length));
        Assert.That(admin.Execute(shortData, message).Status, Is.EqualTo(NvmeStatus.DataSglLengthInvalid));
        var garbage = RandomNumberGenerator.GetBytes(40);
        Assert.That(Send(admin, garbage).Status, Is.EqualTo(NvmeStatus.Success), "a garbage message is an AUTH_Failure1 at the next receive");
        var failure = Receive(admin);
        Assert.That(DhchapFailure.TryRead(failure.Data, out var parsed) && parsed.Id == AuthMessageId.Failure1, Is.True);
        Assert.That(admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True);

        using var next = ConnectAuthenticated(harness, harness.Host, HostSecret);
        Assert.That(next.Identify(1).Status, Is.EqualTo(NvmeStatus.Success), "the target keeps serving");
    }

    // ---- helpers ----

    internal static TestHost ConnectAuthenticated(TargetHarness harness, NvmeHostIdentity host, DhchapSecret secret, DhchapSecret? controllerSecret = null)
    {
        var admin = harness.Initialize();
        var connect = admin.ConnectAdmin(TargetHarness.SubsystemNqn, host.Nqn, host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        var transaction = Authenticate(admin, host.Nqn, TargetHarness.SubsystemNqn, secret, controllerSecret);
        Assert.That(transaction.Error, Is.Null, "authentication");
        admin.Enable();
        return admin;
    }

    /// <summary>One DH-HMAC-CHAP transaction as the Linux host runs it: negotiate, read the challenge, reply, read Success1, maybe Success2.</summary>
    internal static DhchapHostTransaction Authenticate(TestHost queue, string hostNqn, string subsystemNqn, DhchapSecret secret,
        DhchapSecret? controllerSecret = null, ushort transactionId = 1, IEnumerable<DhchapDhGroup>? groups = null)
    {
        var transaction = new DhchapHostTransaction(hostNqn, subsystemNqn, transactionId, secret, controllerSecret, groups: groups);
        Assert.That(Send(queue, transaction.Negotiate()).Status, Is.EqualTo(NvmeStatus.Success), "AUTH_Negotiate");
        if (!transaction.TryAnswerChallenge(Receive(queue).Data, out var reply))
        {
            if (reply is not null)
            {
                Send(queue, reply);
            }

            return transaction;
        }

        Assert.That(Send(queue, reply!).Status, Is.EqualTo(NvmeStatus.Success), "DH-HMAC-CHAP_Reply");
        var done = transaction.TryCompleteSuccess1(Receive(queue).Data, out var last);
        if (last is not null)
        {
            Assert.That(Send(queue, last).Status, Is.EqualTo(NvmeStatus.Success), done ? "Success2" : "Failure2");
        }

        return transaction;
    }

    internal static Completion Send(TestHost queue, byte[] message) =>
        queue.Execute(AuthenticationCommand.Dhchap((uint)message.Length).ToSubmissionQueueEntry(queue.NextCommandId(), send: true, TestHost.InCapsule(message.Length)), message);

    internal static Completion Receive(TestHost queue)
    {
        var completion = queue.Execute(AuthenticationCommand.Dhchap(DhchapHostTransaction.ReceiveBufferSize)
            .ToSubmissionQueueEntry(queue.NextCommandId(), send: false, TestHost.Transport(DhchapHostTransaction.ReceiveBufferSize)));
        Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success), "Authentication Receive");
        return completion;
    }

    private static TestHost ConnectDiscovery(TargetHarness harness, NvmeHostIdentity host)
    {
        var discovery = harness.Initialize();
        var connect = discovery.ConnectAdmin(NvmeTarget.DiscoveryNqn, host.Nqn, host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(connect.Dw0 & (1u << 17), Is.Zero, "discovery never requires authentication");
        discovery.Enable();
        return discovery;
    }

    private static IEnumerable<string> DiscoveredNqns(TestHost discovery)
    {
        var page = discovery.GetLogPage((byte)LogPageId.Discovery, 8192);
        Assert.That(page.Status, Is.EqualTo(NvmeStatus.Success));
        return DiscoveryLog.Parse(page.Data).Entries.Select(e => e.SubsystemNqn).Distinct().ToArray();
    }
}
