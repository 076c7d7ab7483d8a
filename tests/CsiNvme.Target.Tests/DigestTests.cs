namespace CsiNvme.Target.Tests;

/// <summary>
/// Header and data digests (TCP 1.0, 3.6.2.2 and 3.6.2.6). <see cref="TestHost.ReceivePdu"/> checks the flags and
/// CRC32C of every PDU the target sends, so every exchange here also verifies the target's digests.
/// </summary>
public sealed class DigestTests
{
    private const int Bs = TargetHarness.BlockSize;

    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public async Task EveryPduCarriesCorrectDigests(bool headerDigest, bool dataDigest)
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(headerDigest, dataDigest);
        Assert.That(admin.Identify(1).Status, Is.EqualTo(NvmeStatus.Success));
        using var io = harness.ConnectIo(admin, 1, headerDigest, dataDigest);

        var small = new byte[4096];
        Random.Shared.NextBytes(small);
        var large = new byte[96 * 1024];
        Random.Shared.NextBytes(large);
        Assert.That(io.WriteInCapsule(1, 0, small, Bs).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.WriteWithR2T(1, 64, large, Bs, 32 * 1024).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Read(1, 0, small.Length, Bs).Data, Is.EqualTo(small));
        Assert.That(io.Read(1, 64, large.Length, Bs).Data, Is.EqualTo(large));
    }

    [Test]
    public async Task CorruptDataDigestOnAnInCapsuleWriteFailsOnlyThatCommand()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(true, true);
        using var io = harness.ConnectIo(admin, 1, true, true);
        var data = new byte[4096];
        Random.Shared.NextBytes(data);

        var sqe = TestHost.Command((byte)IoOpcode.Write, 0xC0DE, 1, TestHost.InCapsule(data.Length), 16, 0, TestHost.BlockCountField(data.Length, Bs));
        io.Send(io.BuildCapsule(sqe, data, corruptDataDigest: true));
        var failed = io.ReceiveCompletion(0xC0DE);
        Assert.That(failed.Status.Type, Is.EqualTo(StatusCodeType.Generic));
        Assert.That(failed.Status.Code, Is.EqualTo(0x22), "Transient Transport Error");
        Assert.That(failed.Status.DoNotRetry, Is.False, "the host may retry");
        Assert.That(io.Read(1, 16, data.Length, Bs).Data, Is.All.Zero, "nothing was written");

        Assert.That(io.WriteInCapsule(1, 16, data, Bs).Status, Is.EqualTo(NvmeStatus.Success), "the connection survives");
        Assert.That(io.Read(1, 16, data.Length, Bs).Data, Is.EqualTo(data));
    }

    [Test]
    public async Task CorruptDataDigestOnH2CDataFailsOnlyThatCommand()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin(false, true);
        using var io = harness.ConnectIo(admin, 1, false, true);
        var data = new byte[64 * 1024];
        Random.Shared.NextBytes(data);

        const ushort cid = 0x4242;
        io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, cid, 1, TestHost.Transport(data.Length), 0, 0, TestHost.BlockCountField(data.Length, Bs)));
        var r2t = io.ReceivePdu().AsDataTransfer();
        io.Send(io.BuildH2CData(cid, r2t.TransferTag, 0, data.AsSpan(0, 32 * 1024), last: false, corruptDataDigest: true));
        io.Send(io.BuildH2CData(cid, r2t.TransferTag, 32 * 1024, data.AsSpan(32 * 1024), last: true));
        var failed = io.ReceiveCompletion(cid);
        Assert.That(failed.Status.Code, Is.EqualTo(0x22), "Transient Transport Error");

        Assert.That(io.WriteWithR2T(1, 0, data, Bs, 32 * 1024).Status, Is.EqualTo(NvmeStatus.Success), "the connection survives");
        Assert.That(io.Read(1, 0, data.Length, Bs).Data, Is.EqualTo(data));
    }
}
