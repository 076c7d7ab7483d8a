namespace CsiNvme.Host.Tests;

/// <summary>
/// <see cref="NvmeTcpHostOptions.DisableSqFlowControl"/> against our target: with SQ flow control disabled in the I/O
/// queue Connect (CATTR bit 2) successful reads complete in their last C2HData PDU (SUCCESS flag, TCP 1.0, 3.6.2.8) and
/// the data still checks out; with it on, every read gets a CapsuleResp. A relay counts the PDUs the target really sent.
/// </summary>
public sealed class SqFlowControlTests
{
    [TestCase(true)]
    [TestCase(false)]
    public async Task ReadsCompleteAndVerifyWithAndWithoutSqFlowControl(bool disable)
    {
        await using var target = TargetFixture.Start();
        await using var proxy = new TcpFaultProxy(target.Endpoint);
        // No Keep Alive, so every CapsuleResp counted on the wire belongs to the I/O below.
        await using var controller = await target.ConnectAsync(o => { o.DisableSqFlowControl = disable; o.KeepAliveTimeout = TimeSpan.Zero; }, proxy.Endpoint);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];

        // 4 KiB reads fit one C2HData PDU; 256 KiB ones may be split, and SUCCESS may only ride the last PDU.
        int[] sizes = [4096, 4096, 256 * 1024, 4096, 8192, 256 * 1024, 512, 4096];
        const int rounds = 4;
        var random = new Random(disable ? 1 : 2);
        var written = new List<(ulong Lba, byte[] Data)>();
        ulong lba = 0;
        for (var i = 0; i < sizes.Length * rounds; i++)
        {
            var data = new byte[sizes[i % sizes.Length]];
            random.NextBytes(data);
            written.Add((lba, data));
            lba += (ulong)(data.Length / ns.BlockSize);
        }

        var writes = await Task.WhenAll(written.Select(w => queue.WriteAsync(ns, w.Lba, w.Data).AsTask()));
        Assert.That(writes.Select(c => c.Status), Is.All.EqualTo(NvmeStatus.Success));

        var responsesBefore = proxy.CapsuleResponses;
        var buffers = written.Select(w => new byte[w.Data.Length]).ToArray();
        // Several reads outstanding at once so completions of different commands interleave on the connection.
        var reads = await Task.WhenAll(written.Select((w, i) => queue.ReadAsync(ns, w.Lba, buffers[i]).AsTask()));

        Assert.Multiple(() =>
        {
            Assert.That(reads.Select(c => c.Status), Is.All.EqualTo(NvmeStatus.Success));
            for (var i = 0; i < written.Count; i++)
            {
                Assert.That(buffers[i], Is.EqualTo(written[i].Data), $"read {i} ({written[i].Data.Length} bytes at LBA {written[i].Lba})");
            }

            Assert.That(proxy.C2HDataPdus, Is.GreaterThanOrEqualTo(written.Count));
            if (disable)
            {
                Assert.That(proxy.C2HDataWithSuccess, Is.EqualTo(written.Count), "one SUCCESS per read");
                Assert.That(proxy.CapsuleResponses - responsesBefore, Is.Zero, "no CapsuleResp for a successful read");
            }
            else
            {
                Assert.That(proxy.C2HDataWithSuccess, Is.Zero);
                Assert.That(proxy.CapsuleResponses - responsesBefore, Is.EqualTo(written.Count), "one CapsuleResp per read");
            }
        });
    }

    [Test]
    public async Task AFailedReadStillCompletesWithItsStatusWhenSqFlowControlIsDisabled()
    {
        await using var target = TargetFixture.Start();
        await using var proxy = new TcpFaultProxy(target.Endpoint);
        await using var controller = await target.ConnectAsync(o => { o.DisableSqFlowControl = true; o.KeepAliveTimeout = TimeSpan.Zero; }, proxy.Endpoint);
        var queue = controller.IoQueues[0];
        var ns = controller.Namespaces[0];
        var beyond = (ulong)(TargetFixture.VolumeSize / ns.BlockSize);

        var before = proxy.CapsuleResponses;
        var failed = await queue.ReadAsync(ns, beyond, new byte[4096]);
        Assert.That(failed.Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
        Assert.That(proxy.CapsuleResponses - before, Is.EqualTo(1), "an error is reported in a CapsuleResp");

        // The queue is still in step: the next read completes by SUCCESS.
        var ok = await queue.ReadAsync(ns, 0, new byte[4096]);
        Assert.That(ok.Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(proxy.C2HDataWithSuccess, Is.EqualTo(1));
    }
}
