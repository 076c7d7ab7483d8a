namespace CsiNvme.Target.Tests;

/// <summary>Connection initialization: ICReq / ICResp (TCP 1.0, 3.6.2.2 and 3.6.2.3).</summary>
public sealed class InitializeConnectionTests
{
    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public async Task ICRespEchoesDigestsWithFieldsLinuxAccepts(bool headerDigest, bool dataDigest)
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Open();
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, headerDigest, dataDigest, 0).Write(icreq);
        host.Send(icreq);

        var pdu = host.ReceivePdu();
        Assert.That(pdu.Type, Is.EqualTo(PduType.ICResp));
        Assert.That(pdu.Header.HeaderLength, Is.EqualTo(128));
        Assert.That(pdu.Header.PduLength, Is.EqualTo(128u));
        Assert.That(pdu.Header.DataOffset, Is.Zero);
        Assert.That(pdu.Header.Flags, Is.EqualTo(PduFlags.None), "IC PDUs are never digested");
        var resp = ICResp.Read(pdu.Bytes);
        Assert.Multiple(() =>
        {
            Assert.That(resp.ProtocolFormatVersion, Is.Zero, "PFV");
            Assert.That(resp.ControllerPduDataAlignment, Is.Zero, "CPDA");
            Assert.That(resp.HeaderDigest, Is.EqualTo(headerDigest), "HDGST_ENABLE echoed");
            Assert.That(resp.DataDigest, Is.EqualTo(dataDigest), "DDGST_ENABLE echoed");
            Assert.That(resp.MaxH2CData % 4, Is.Zero, "MAXH2CDATA is a multiple of 4");
            Assert.That(resp.MaxH2CData, Is.GreaterThanOrEqualTo(4096u));
            Assert.That(resp.MaxH2CData, Is.EqualTo((uint)harness.Target.Options.MaxH2CDataSize));
        });
    }

    [Test]
    public async Task UnsupportedProtocolVersionIsTerminatedWithUnsupportedParameter()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Open();
        var icreq = new byte[ICReq.Length];
        new ICReq(1, 0, false, false, 0).Write(icreq);
        host.Send(icreq);

        var term = host.ExpectTermination();
        Assert.That(term.FatalErrorStatus, Is.EqualTo(TermReqFatalError.UnsupportedParameter));
        Assert.That(term.FatalErrorInformation, Is.EqualTo(8u), "FEI points at PFV");
    }

    [Test]
    public async Task WrongICReqHeaderLengthIsTerminatedWithInvalidHeaderField()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Open();
        var icreq = new byte[ICReq.Length];
        new ICReq(0, 0, false, false, 0).Write(icreq);
        icreq[2] = 120;
        host.Send(icreq);

        var term = host.ExpectTermination();
        Assert.That(term.FatalErrorStatus, Is.EqualTo(TermReqFatalError.InvalidPduHeaderField));
        Assert.That(term.FatalErrorInformation, Is.EqualTo(2u), "FEI points at HLEN");
    }

    [Test]
    public async Task CapsuleBeforeICReqIsTerminated()
    {
        await using var harness = TargetHarness.Start();
        using var host = harness.Open();
        host.Send(host.BuildCapsule(TestHost.Command((byte)AdminOpcode.KeepAlive, 1, 0, default)));

        var term = host.ExpectTermination();
        Assert.That(term.FatalErrorStatus, Is.EqualTo(TermReqFatalError.InvalidPduHeaderField));
        Assert.That(term.FatalErrorInformation, Is.Zero, "FEI points at PDU-type");
    }

    [Test]
    public async Task SilentConnectionIsClosedAfterTheInitializeTimeout()
    {
        await using var harness = TargetHarness.Start(o => o.InitializeTimeout = TimeSpan.FromMilliseconds(300));
        using var host = harness.Open();
        Assert.That(host.WaitClosed(TimeSpan.FromSeconds(5)), Is.True);
        Assert.That(harness.WaitForConnectionCount(0, TimeSpan.FromSeconds(5)), Is.True);
    }
}
