using System.Net;
using System.Net.Sockets;
using CsiNvme.Protocol.Tls;

namespace CsiNvme.Protocol.Tests.Tls;

public sealed class TlsPskTests
{
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:host-a";
    private const string SubsystemNqn = "nqn.2026-11.io.csinvme:vol-1";

    // The configured PSK of libnvme's own interchange test (test/psk.c), in its three forms.
    private static readonly byte[] _key32 = Convert.FromHexString("5512DBB6737D0106F65975B773DFB011FFC344BCF442E2DD6D8BC4870B5D5B03");

    [TestCase("NVMeTLSkey-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", null, 32)]
    [TestCase("NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", TlsPskHash.Sha256, 32)]
    [TestCase("NVMeTLSkey-1:02:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwP/w0S89ELi3W2LxIcLXVsDn8kXZQ==:", TlsPskHash.Sha384, 48)]
    public void Interchange_form_of_libnvme_reads_and_writes_back_unchanged(string text, TlsPskHash? hash, int length)
    {
        var psk = TlsPsk.Parse(text);
        Assert.That(psk.TransformHash, Is.EqualTo(hash));
        Assert.That(psk.KeyLength, Is.EqualTo(length));
        Assert.That(psk.Format(), Is.EqualTo(text));
        Assert.That(psk.ToString(), Does.Not.Contain("VRLb"), "the key never shows in ToString");
    }

    [TestCase("DHHC-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", "starts with NVMeTLSkey-1:")]
    [TestCase("NVMeTLSkey-1:03:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", "hash field")]
    [TestCase("NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9Lra:", "checksum")]
    [TestCase("NVMeTLSkey-1:01:not base64!:", "base64")]
    [TestCase("NVMeTLSkey-1:02:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:", "48 bytes")]
    public void Bad_interchange_forms_say_why_without_quoting_the_key(string text, string reason)
    {
        Assert.That(TlsPsk.TryParse(text, out _, out var error), Is.False);
        Assert.That(error, Does.Contain(reason));
        Assert.That(error, Does.Not.Contain("VRLb"));
    }

    [Test]
    public void Identities_print_and_parse_in_both_versions()
    {
        var psk = TlsPsk.Parse("NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:");
        var v0 = psk.IdentityFor(HostNqn, SubsystemNqn);
        Assert.That(v0.ToString(), Is.EqualTo($"NVMe0R01 {HostNqn} {SubsystemNqn}"));
        var v1 = psk.IdentityFor(HostNqn, SubsystemNqn, version: 1);
        Assert.That(v1.ToString(), Does.StartWith($"NVMe1R01 {HostNqn} {SubsystemNqn} "));
        Assert.That(v1.Digest, Has.Length.EqualTo(44), "base64 of a SHA-256 HMAC");
        foreach (var identity in new[] { v0, v1 })
        {
            Assert.That(TlsPskIdentity.TryParse(identity.ToString(), out var parsed), Is.True);
            Assert.That(parsed, Is.EqualTo(identity));
        }

        Assert.That(TlsPskIdentity.TryParse($"NVMe0G01 {HostNqn} {SubsystemNqn}", out _), Is.False, "generated PSKs are not served");
        Assert.That(TlsPskIdentity.TryParse($"NVMe0R03 {HostNqn} {SubsystemNqn}", out _), Is.False);
        Assert.That(TlsPskIdentity.TryParse($"NVMe0R01 {HostNqn}", out _), Is.False);
    }

    [Test]
    public void Tls_key_depends_on_key_identity_and_version_and_a_forged_digest_gets_none()
    {
        var psk = TlsPsk.Parse("NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:");
        var untransformed = TlsPsk.Parse("NVMeTLSkey-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:");
        var v0 = psk.IdentityFor(HostNqn, SubsystemNqn);
        var v1 = psk.IdentityFor(HostNqn, SubsystemNqn, 1);
        var keys = new[]
        {
            psk.TlsKeyFor(v0)!, psk.TlsKeyFor(v1)!, untransformed.TlsKeyFor(v0)!,
            psk.TlsKeyFor(psk.IdentityFor("nqn.2014-08.org.nvmexpress:uuid:host-b", SubsystemNqn))!,
        };
        Assert.That(keys.Select(k => k.Length), Is.All.EqualTo(32));
        Assert.That(keys.Select(Convert.ToHexString).Distinct().Count(), Is.EqualTo(keys.Length));
        Assert.That(psk.TlsKeyFor(v0), Is.EqualTo(keys[0]), "deterministic");
        Assert.That(psk.RetainedFor(HostNqn), Is.Not.EqualTo(_key32), "hash 01 transforms the configured key");
        Assert.That(untransformed.RetainedFor(HostNqn), Is.EqualTo(_key32), "hash 00 uses it as it is");
        Assert.That(psk.TlsKeyFor(v1 with { Digest = "AAAA" + v1.Digest![4..] }), Is.Null);
        Assert.That(psk.TlsKeyFor(v0 with { Hash = TlsPskHash.Sha384 }), Is.Null);
        Assert.That(TlsPsk.Generate(TlsPskHash.Sha384).TlsKeyFor(TlsPsk.Generate(TlsPskHash.Sha384).IdentityFor(HostNqn, SubsystemNqn, 1)), Is.Null,
            "a version 1 identity is bound to its key by the digest");
    }

    /// <summary>
    /// An identity Debian 13's nvme-cli (libnvme 1.13) put into the kernel keyring for this key, host and subsystem:
    /// version 1, with the digest in libnvme's older HKDF-Expand-Label encoding. The target must accept it.
    /// </summary>
    [Test]
    public void A_version_1_identity_of_debian_13_libnvme_is_recognised_by_its_digest()
    {
        var psk = TlsPsk.Parse("NVMeTLSkey-1:01:oYXUqFrRuo3kfn+eQUcFLJraMo2w7ouO9hCADwCo9GTc5H3q:");
        const string host = "nqn.2014-08.org.nvmexpress:uuid:9d144636-8482-4943-a433-575d1d466fea";
        const string subsystem = "nqn.2026-11.io.csinvme:tls-volume";
        const string seen = $"NVMe1R01 {host} {subsystem} 19n+IWUXongkJzta7zS4yE9BM6AfBy/VADht9vtiwwc=";
        Assert.That(psk.IdentityFor(host, subsystem, 1, legacyEncoding: true).ToString(), Is.EqualTo(seen));
        Assert.That(psk.IdentityFor(host, subsystem, 1).ToString(), Is.Not.EqualTo(seen), "RFC 8446 encoding gives another digest");
        Assert.That(TlsPskIdentity.TryParse(seen, out var identity), Is.True);
        Assert.That(psk.TlsKeyFor(identity), Is.Not.Null);
    }

    [TestCase(TlsPskHash.Sha256, 0, "TLS_AES_128_GCM_SHA256")]
    [TestCase(TlsPskHash.Sha384, 1, "TLS_AES_256_GCM_SHA384")]
    public async Task OpenSsl_client_and_server_agree_on_the_psk_and_carry_data(TlsPskHash hash, int version, string suite)
    {
        var psk = TlsPsk.Generate(hash);
        var identity = psk.IdentityFor(HostNqn, SubsystemNqn, version, legacyEncoding: hash == TlsPskHash.Sha384);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync();
        using var serverTls = TlsChannel.ForServer(server, presented => presented == identity ? psk.TlsKeyFor(presented) : null);
        using var clientTls = TlsChannel.ForClient(client, psk, identity);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Task.WhenAll(serverTls.HandshakeAsync(timeout.Token), clientTls.HandshakeAsync(timeout.Token));
        Assert.That(serverTls.PeerIdentity, Is.EqualTo(identity));
        Assert.That(serverTls.CipherSuite, Is.EqualTo(suite));

        // More than one record and more than one chunk each way.
        var payload = new byte[200_000];
        Random.Shared.NextBytes(payload);
        var send = clientTls.SendAsync(payload, timeout.Token).AsTask();
        var received = new byte[payload.Length];
        for (var filled = 0; filled < received.Length;)
        {
            filled += await serverTls.ReceiveAsync(received.AsMemory(filled), timeout.Token);
        }

        await send;
        Assert.That(received, Is.EqualTo(payload));
        serverTls.Send(payload.AsSpan(0, 1000));
        var back = new byte[1000];
        for (var filled = 0; filled < back.Length;)
        {
            filled += clientTls.Receive(back.AsSpan(filled), client.SafeHandle, 0);
        }

        Assert.That(back, Is.EqualTo(payload[..1000]));
    }

    [Test]
    public async Task A_wrong_psk_fails_the_handshake_on_both_sides()
    {
        var right = TlsPsk.Generate();
        var wrong = TlsPsk.Generate();
        var identity = right.IdentityFor(HostNqn, SubsystemNqn);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync();
        using var serverTls = TlsChannel.ForServer(server, right.TlsKeyFor);
        using var clientTls = TlsChannel.ForClient(client, wrong, wrong.IdentityFor(HostNqn, SubsystemNqn));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var serverSide = serverTls.HandshakeAsync(timeout.Token);
        var clientSide = clientTls.HandshakeAsync(timeout.Token);
        Assert.That(async () => await serverSide, Throws.InstanceOf<TlsException>());
        server.Shutdown(SocketShutdown.Both);
        Assert.That(async () => await clientSide, Throws.InstanceOf<TlsException>());
        Assert.That(identity.ToString(), Is.EqualTo(wrong.IdentityFor(HostNqn, SubsystemNqn).ToString()), "same identity, other key");
    }
}
