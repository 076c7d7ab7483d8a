using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Protocol.Tests.Tcp;

/// <summary>
/// NVMe/TCP PDU layouts (TCP transport 1.0, 3.6; the same layout as Linux include/linux/nvme-tcp.h:
/// struct nvme_tcp_hdr, nvme_tcp_icreq_pdu, nvme_tcp_icresp_pdu, nvme_tcp_data_pdu, nvme_tcp_r2t_pdu, nvme_tcp_term_pdu).
/// </summary>
public sealed class PduTests
{
    [TestCase(PduType.ICReq, 0x00)]
    [TestCase(PduType.ICResp, 0x01)]
    [TestCase(PduType.H2CTermReq, 0x02)]
    [TestCase(PduType.C2HTermReq, 0x03)]
    [TestCase(PduType.CapsuleCmd, 0x04)]
    [TestCase(PduType.CapsuleResp, 0x05)]
    [TestCase(PduType.H2CData, 0x06)]
    [TestCase(PduType.C2HData, 0x07)]
    [TestCase(PduType.R2T, 0x09)]
    public void PduTypeValuesMatchTheSpecification(PduType type, int value) =>
        Assert.That((int)type, Is.EqualTo(value));

    [Test]
    public void FlagBitsMatchTheSpecification()
    {
        // NVME_TCP_F_HDGST, NVME_TCP_F_DDGST, NVME_TCP_F_DATA_LAST, NVME_TCP_F_DATA_SUCCESS.
        Assert.That((int)PduFlags.HeaderDigest, Is.EqualTo(0x01));
        Assert.That((int)PduFlags.DataDigest, Is.EqualTo(0x02));
        Assert.That((int)PduFlags.LastPdu, Is.EqualTo(0x04));
        Assert.That((int)PduFlags.Success, Is.EqualTo(0x08));
    }

    [TestCase(TermReqFatalError.InvalidPduHeaderField, 0x01)]
    [TestCase(TermReqFatalError.PduSequenceError, 0x02)]
    [TestCase(TermReqFatalError.HeaderDigestError, 0x03)]
    [TestCase(TermReqFatalError.DataTransferOutOfRange, 0x04)]
    [TestCase(TermReqFatalError.DataTransferLimitExceeded, 0x05)]
    [TestCase(TermReqFatalError.UnsupportedParameter, 0x06)]
    public void FatalErrorStatusValuesMatchTheSpecification(TermReqFatalError fes, int value) =>
        Assert.That((int)fes, Is.EqualTo(value));

    [TestCase(PduType.ICReq, 128)]
    [TestCase(PduType.ICResp, 128)]
    [TestCase(PduType.H2CTermReq, 24)]
    [TestCase(PduType.C2HTermReq, 24)]
    [TestCase(PduType.CapsuleCmd, 72)]
    [TestCase(PduType.CapsuleResp, 24)]
    [TestCase(PduType.H2CData, 24)]
    [TestCase(PduType.C2HData, 24)]
    [TestCase(PduType.R2T, 24)]
    public void ExpectedHeaderLengthPerType(PduType type, int hlen) =>
        Assert.That(PduHeader.ExpectedHeaderLength(type), Is.EqualTo(hlen));

    [Test]
    public void UnknownPduTypeHasNoHeaderLength() =>
        Assert.That(PduHeader.ExpectedHeaderLength((PduType)0x08), Is.EqualTo(-1));

    [Test]
    public void CommonHeaderIsTypeFlagsHlenPdoThenLittleEndianPlen()
    {
        // A CapsuleCmd with header digest and 4 KiB in-capsule data: hlen 72, pdo 76, plen 72 + 4 + 4096.
        byte[] wire = [0x04, 0x01, 0x48, 0x4C, 0x4C, 0x10, 0x00, 0x00];
        var header = PduHeader.Read(wire);
        Assert.That(header, Is.EqualTo(new PduHeader(PduType.CapsuleCmd, PduFlags.HeaderDigest, 72, 76, 4172)));

        var written = new byte[PduHeader.Size];
        header.Write(written);
        Assert.That(written, Is.EqualTo(wire));
        Assert.That(PduHeader.Size, Is.EqualTo(8));
        Assert.That(PduHeader.DigestSize, Is.EqualTo(4));
    }

    [Test]
    public void ICReqDecodesTheLinuxHostLayout()
    {
        // struct nvme_tcp_icreq_pdu: hdr, pfv@8 (le16), hpda@10, digest@11, maxr2t@12 (le32), rsvd2[112].
        // Linux sends PFV 0, HPDA 0, MAXR2T 0 and the digest bits it wants.
        var wire = new byte[128];
        wire[0] = 0x00;
        wire[2] = 128;
        wire[4] = 128;
        wire[11] = 0x03;

        var icreq = ICReq.Read(wire);
        Assert.That(icreq, Is.EqualTo(new ICReq(0, 0, HeaderDigest: true, DataDigest: true, MaxR2T: 0)));
        Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.ICReq, PduFlags.None, 128, 0, 128)));
    }

    [Test]
    public void ICReqFieldsAtTheirOffsets()
    {
        var wire = new byte[128];
        wire[8] = 0x34;
        wire[9] = 0x12;
        wire[10] = 0x07;
        wire[11] = 0x02;
        Bytes.Put32(wire, 12, 0xA1B2C3D4);

        Assert.That(ICReq.Read(wire), Is.EqualTo(new ICReq(0x1234, 7, false, true, 0xA1B2C3D4)));
    }

    [Test]
    public void ICReqWritesAFull128BytePdu()
    {
        var wire = Enumerable.Repeat((byte)0xEE, 160).ToArray();
        new ICReq(0, 0, HeaderDigest: true, DataDigest: false, MaxR2T: 0).Write(wire);

        var expected = new byte[128];
        expected[2] = 128;
        expected[4] = 128;
        expected[11] = 0x01;
        Assert.That(wire[..128], Is.EqualTo(expected));
        Assert.That(wire[128..], Is.All.EqualTo(0xEE), "wrote past the PDU");
    }

    [Test]
    public void ICRespMatchesWhatLinuxAccepts()
    {
        // struct nvme_tcp_icresp_pdu: hdr, pfv@8, cpda@10, digest@11, maxdata@12. Linux requires type 1, plen 128,
        // PFV 0, CPDA 0, the digest bits it asked for, MAXH2CDATA a multiple of 4 and at least 4096.
        var wire = new byte[128];
        new ICResp(0, 0, HeaderDigest: false, DataDigest: true, MaxH2CData: 0x40000).Write(wire);

        Assert.That(wire[0], Is.EqualTo(0x01), "type");
        Assert.That(wire[1], Is.EqualTo(0x00), "flags");
        Assert.That(wire[2], Is.EqualTo(128), "hlen");
        Assert.That(wire[3], Is.EqualTo(0), "pdo");
        Assert.That(Bytes.U32(wire, 4), Is.EqualTo(128u), "plen");
        Assert.That(Bytes.U16(wire, 8), Is.EqualTo(0), "pfv");
        Assert.That(wire[10], Is.EqualTo(0), "cpda");
        Assert.That(wire[11], Is.EqualTo(0x02), "digest");
        Assert.That(Bytes.U32(wire, 12), Is.EqualTo(0x40000u), "maxh2cdata");
        Assert.That(wire[16..], Is.All.EqualTo(0));
    }

    [Test]
    public void ICRespDecodesTheLinuxTargetLayout()
    {
        // nvmet answers with MAXH2CDATA 0x400000 and echoes both digests.
        var wire = new byte[128];
        wire[0] = 0x01;
        wire[2] = 128;
        wire[4] = 128;
        wire[10] = 0x00;
        wire[11] = 0x03;
        Bytes.Put32(wire, 12, 0x400000);

        Assert.That(ICResp.Read(wire), Is.EqualTo(new ICResp(0, 0, true, true, 0x400000)));
    }

    [Test]
    public void C2HDataHeaderLayout()
    {
        // struct nvme_tcp_data_pdu: hdr, command_id@8, ttag@10, data_offset@12, data_length@16, rsvd[4]@20.
        // nvmet sets pdo = hlen (+ header digest) and plen = pdo + data (+ data digest).
        var wire = Enumerable.Repeat((byte)0xEE, 32).ToArray();
        new DataTransferHeader(0x1234, 0, 0x2000, 0x1000).Write(wire, PduType.C2HData, PduFlags.LastPdu | PduFlags.Success, 24, 24 + 0x1000);

        byte[] expected =
        [
            0x07, 0x0C, 0x18, 0x18, 0x18, 0x10, 0x00, 0x00,
            0x34, 0x12, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        Assert.That(wire[..24], Is.EqualTo(expected));
        Assert.That(wire[24..], Is.All.EqualTo(0xEE));
    }

    [Test]
    public void R2THeaderLayout()
    {
        // struct nvme_tcp_r2t_pdu: hdr, command_id@8, ttag@10, r2t_offset@12, r2t_length@16, rsvd[4]; no data, pdo 0.
        var wire = new byte[24];
        new DataTransferHeader(0xC001, 0x0042, 8192, 65536).Write(wire, PduType.R2T, PduFlags.None, 0, 24);

        Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.R2T, PduFlags.None, 24, 0, 24)));
        Assert.That(Bytes.U16(wire, 8), Is.EqualTo(0xC001));
        Assert.That(Bytes.U16(wire, 10), Is.EqualTo(0x0042));
        Assert.That(Bytes.U32(wire, 12), Is.EqualTo(8192u));
        Assert.That(Bytes.U32(wire, 16), Is.EqualTo(65536u));
        Assert.That(Bytes.U32(wire, 20), Is.EqualTo(0u));
    }

    [Test]
    public void H2CDataDecodesTheLinuxHostLayout()
    {
        // Linux nvme_tcp_setup_h2c_data_pdu: flags LAST (+ digests), hlen 24, pdo 24 (+4 with header digest),
        // ttag copied from the R2T, data_offset, data_length.
        byte[] wire =
        [
            0x06, 0x05, 0x18, 0x1C, 0x1C, 0x02, 0x00, 0x00,
            0x05, 0x00, 0x07, 0x00, 0x00, 0x10, 0x00, 0x00,
            0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];

        Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.H2CData, PduFlags.HeaderDigest | PduFlags.LastPdu, 24, 28, 540)));
        Assert.That(DataTransferHeader.Read(wire), Is.EqualTo(new DataTransferHeader(5, 7, 4096, 512)));
    }

    [Test]
    public void TermReqLayoutWithShortOffendingHeader()
    {
        // struct nvme_tcp_term_pdu: hdr, fes@8 (le16), feil@10, feiu@12, rsvd[10], then the offending header.
        var offending = Enumerable.Range(1, 24).Select(i => (byte)i).ToArray();
        var wire = Enumerable.Repeat((byte)0xEE, 200).ToArray();
        var length = new TermReq(TermReqFatalError.InvalidPduHeaderField, 0x00000003).Write(wire, PduType.C2HTermReq, offending);

        Assert.That(length, Is.EqualTo(48));
        Assert.That(PduHeader.Read(wire), Is.EqualTo(new PduHeader(PduType.C2HTermReq, PduFlags.None, 24, 0, 48)));
        Assert.That(Bytes.U16(wire, 8), Is.EqualTo(0x0001));
        Assert.That(Bytes.U32(wire, 10), Is.EqualTo(3u));
        Assert.That(wire[14..24], Is.All.EqualTo(0));
        Assert.That(wire[24..48], Is.EqualTo(offending));
        Assert.That(wire[48..], Is.All.EqualTo(0xEE));
        Assert.That(TermReq.Read(wire), Is.EqualTo(new TermReq(TermReqFatalError.InvalidPduHeaderField, 3)));
    }

    [TestCase(0, 24)]
    [TestCase(8, 32)]
    [TestCase(72, 96)]
    [TestCase(128, 152)]
    [TestCase(129, 152)]
    [TestCase(300, 152)]
    public void TermReqPlenIs24PlusAtMost128BytesOfHeader(int offendingLength, int plen)
    {
        var wire = new byte[400];
        var offending = Enumerable.Repeat((byte)0xAB, offendingLength).ToArray();
        var length = new TermReq(TermReqFatalError.PduSequenceError, 0).Write(wire, PduType.H2CTermReq, offending);

        Assert.That(length, Is.EqualTo(plen));
        var header = PduHeader.Read(wire);
        Assert.That(header.PduLength, Is.EqualTo((uint)plen));
        Assert.That(header.HeaderLength, Is.EqualTo(24));
        Assert.That(header.DataOffset, Is.EqualTo(0), "PDO is reserved in TermReq PDUs");
        Assert.That(wire[24..plen], Is.All.EqualTo(0xAB));
        Assert.That(wire[plen..], Is.All.EqualTo(0));
    }
}
