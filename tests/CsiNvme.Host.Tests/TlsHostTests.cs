using CsiNvme.Protocol.Tls;

namespace CsiNvme.Host.Tests;

/// <summary>The host library over the NVMe/TCP TLS secure channel against the target, in both queue models.</summary>
public sealed class TlsHostTests
{
    [TestCase(true, TlsPskHash.Sha256, 1)]
    [TestCase(false, TlsPskHash.Sha384, 0)]
    public async Task A_tls_controller_writes_and_reads_back_at_depth(bool dedicatedThreads, TlsPskHash hash, int identityVersion)
    {
        await using var target = TargetFixture.Start(dedicatedQueueThreads: dedicatedThreads);
        var psk = TlsPsk.Generate(hash);
        target.Subsystem.SetHostTlsPsk(target.Host.Nqn, psk);
        target.Subsystem.SetTlsRequired(true);
        await using var controller = await target.ConnectAsync(o =>
        {
            o.TlsPsk = psk;
            o.TlsIdentityVersion = identityVersion;
            o.IoQueueCount = 2;
            o.DataDigest = true;
        });

        var queue = controller.IoQueues[1];
        var ns = controller.Namespaces[0];
        var written = Enumerable.Range(0, 32).Select(i => { var b = new byte[i % 2 == 0 ? 4096 : 256 * 1024]; Random.Shared.NextBytes(b); return b; }).ToArray();
        var lbas = Enumerable.Range(0, written.Length).Select(i => (ulong)(i * 512)).ToArray();
        foreach (var completion in await Task.WhenAll(written.Select((data, i) => queue.WriteAsync(ns, lbas[i], data).AsTask())))
        {
            Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
        }

        var buffers = written.Select(w => new byte[w.Length]).ToArray();
        foreach (var completion in await Task.WhenAll(buffers.Select((buffer, i) => queue.ReadAsync(ns, lbas[i], buffer).AsTask())))
        {
            Assert.That(completion.Status, Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(buffers, Is.EqualTo(written));
        Assert.That(target.Subsystem.ControllerCount, Is.EqualTo(1));
    }

    [Test]
    public async Task A_wrong_psk_fails_to_connect()
    {
        await using var target = TargetFixture.Start();
        target.Subsystem.SetHostTlsPsk(target.Host.Nqn, TlsPsk.Generate());
        Assert.That(async () => await target.ConnectAsync(o => o.TlsPsk = TlsPsk.Generate()), Throws.Exception);
    }
}
