using CsiNvme.Protocol.Logs;
using CsiNvme.Protocol.Tls;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// The NVMe/TCP TLS secure channel (NVMe/TCP transport 1.0, 3.6) on the target's port, with an OpenSSL TLS 1.3 PSK
/// client, in both connection models (the TargetIoModel run parameter).
/// </summary>
public sealed class TlsTests
{
    private const int Bs = TargetHarness.BlockSize;

    private static TestHost OpenTls(TargetHarness harness, TlsPsk psk, int version = 0, NvmeHostIdentity? host = null, string? subsystemNqn = null) =>
        TestHost.OpenTls(harness.Endpoint, psk, psk.IdentityFor((host ?? harness.Host).Nqn, subsystemNqn ?? TargetHarness.SubsystemNqn, version));

    [TestCase(TlsPskHash.Sha256, 0)]
    [TestCase(TlsPskHash.Sha256, 1)]
    [TestCase(TlsPskHash.Sha384, 0)]
    [TestCase(TlsPskHash.Sha384, 1)]
    public async Task A_host_with_its_psk_connects_over_tls_and_its_data_round_trips(TlsPskHash hash, int version)
    {
        await using var harness = TargetHarness.Start();
        var psk = TlsPsk.Generate(hash);
        harness.Subsystem.SetHostTlsPsk(harness.Host.Nqn, psk);
        harness.Subsystem.SetTlsRequired(true);

        using var admin = OpenTls(harness, psk, version);
        admin.Negotiate(headerDigest: true, dataDigest: true);
        var connect = admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.Success));
        admin.ControllerId = (ushort)connect.Dw0;
        admin.Enable();

        using var io = OpenTls(harness, psk, version);
        io.Negotiate(headerDigest: false, dataDigest: false);
        Assert.That(io.ConnectIo(1, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));

        var small = new byte[4096];
        Random.Shared.NextBytes(small);
        Assert.That(io.WriteInCapsule(1, 8, small, Bs).Status, Is.EqualTo(NvmeStatus.Success));
        var large = new byte[512 * 1024];
        Random.Shared.NextBytes(large);
        Assert.That(io.WriteWithR2T(1, 1024, large, Bs, 128 * 1024).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 8, small.Length, Bs).Data, Is.EqualTo(small));
        Assert.That(io.Read(1, 1024, large.Length, Bs).Data, Is.EqualTo(large));
        Assert.That(harness.Logs.Matching("TLS 1.3 secure channel"), Is.Not.Empty);
    }

    [Test]
    public async Task A_plaintext_connect_to_a_subsystem_that_requires_tls_is_refused()
    {
        await using var harness = TargetHarness.Start();
        harness.Subsystem.SetHostTlsPsk(harness.Host.Nqn, TlsPsk.Generate());
        harness.Subsystem.SetTlsRequired(true);

        using var plain = harness.Initialize();
        var connect = plain.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.ConnectInvalidHost));
        Assert.That(harness.Logs.WaitFor(TimeSpan.FromSeconds(10), 1, "requires TLS"), Is.True, "the refusal is logged");

        // Without the requirement the same host connects in plaintext.
        harness.Subsystem.SetTlsRequired(false);
        using var again = harness.ConnectAdmin();
    }

    [Test]
    public async Task Turning_tls_required_on_tears_down_plaintext_controllers()
    {
        await using var harness = TargetHarness.Start();
        using var plain = harness.ConnectAdmin();
        harness.Subsystem.SetTlsRequired(true);
        Assert.That(plain.WaitClosed(TimeSpan.FromSeconds(10)), Is.True);
    }

    [Test]
    public async Task A_wrong_or_unknown_psk_fails_the_handshake_and_the_target_keeps_serving()
    {
        await using var harness = TargetHarness.Start();
        var psk = TlsPsk.Generate();
        harness.Subsystem.SetHostTlsPsk(harness.Host.Nqn, psk);
        harness.Subsystem.SetTlsRequired(true);

        Assert.That(() => OpenTls(harness, TlsPsk.Generate()), Throws.InstanceOf<TlsException>(), "another key under the same identity");
        Assert.That(() => OpenTls(harness, psk, host: NvmeHostIdentity.Create()), Throws.InstanceOf<TlsException>(), "a host without a PSK");
        Assert.That(() => OpenTls(harness, psk, subsystemNqn: "nqn.2024-01.io.csinvme:nothing"), Throws.InstanceOf<TlsException>(), "an unknown subsystem");
        // The client gives up on its side of the handshake before the target's loop has logged its refusal.
        Assert.That(harness.Logs.WaitFor(TimeSpan.FromSeconds(10), 1, "TLS handshake with"), Is.True, "the refused handshake is logged");
        Assert.That(harness.WaitForConnectionCount(0, TimeSpan.FromSeconds(10)), Is.True);

        using var admin = OpenTls(harness, psk);
        admin.Negotiate(false, false);
        Assert.That(admin.ConnectAdmin(TargetHarness.SubsystemNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task A_secure_channel_serves_only_the_host_and_subsystem_its_identity_names()
    {
        await using var harness = TargetHarness.Start();
        var other = NvmeHostIdentity.Create();
        harness.Subsystem.AllowHost(other.Nqn);
        var psk = TlsPsk.Generate();
        harness.Subsystem.SetHostTlsPsk(harness.Host.Nqn, psk);

        using var tls = OpenTls(harness, psk);
        tls.Negotiate(false, false);
        var connect = tls.ConnectAdmin(TargetHarness.SubsystemNqn, other.Nqn, other.Id);
        Assert.That(connect.Status, Is.EqualTo(NvmeStatus.ConnectInvalidHost), "the channel of one host does not carry another's Connect");
    }

    [Test]
    public async Task The_discovery_log_says_tls_13_is_required_for_such_subsystems_only()
    {
        await using var harness = TargetHarness.Start();
        var open = harness.Target.AddSubsystem(new Subsystem("nqn.2024-01.io.csinvme:open", "open-sn", allowAnyHost: true));
        harness.Subsystem.SetHostTlsPsk(harness.Host.Nqn, TlsPsk.Generate());
        harness.Subsystem.SetTlsRequired(true);

        using var discovery = harness.Initialize();
        Assert.That(discovery.ConnectAdmin(NvmeTarget.DiscoveryNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        discovery.Enable();
        var (_, _, entries) = DiscoveryLog.Parse(discovery.GetLogPage((byte)LogPageId.Discovery, 4096).Data);
        var tls = entries.Single(e => e.SubsystemNqn == TargetHarness.SubsystemNqn);
        var plain = entries.Single(e => e.SubsystemNqn == open.Nqn);
        Assert.That((tls.TransportRequirements, tls.SecurityType), Is.EqualTo((DiscoveryLogEntry.SecureChannelRequired, DiscoveryLogEntry.SecurityTypeTls13)));
        Assert.That((plain.TransportRequirements, plain.SecurityType), Is.EqualTo((DiscoveryLogEntry.SecureChannelNotRequired, (byte)0)));
    }
}
