using CsiNvme.Protocol.Commands;

namespace CsiNvme.Protocol.Tests.Commands;

/// <summary>The 64-byte SQE (NVMe base 2.0, Figure 88; Linux struct nvme_common_command / nvme_rw_command).</summary>
public sealed class SubmissionQueueEntryTests
{
    /// <summary>A Write as Linux builds it: nvme_rw_command with slba@40, length@48 (0-based), control@50 (FUA = bit 14).</summary>
    private static byte[] LinuxWrite()
    {
        var sqe = new byte[64];
        sqe[0] = 0x01;
        sqe[1] = 0x40;
        Bytes.Put16(sqe, 2, 0x2005);
        Bytes.Put32(sqe, 4, 3);
        Bytes.Put32(sqe, 8, 0xC2C2C2C2);
        Bytes.Put32(sqe, 12, 0xC3C3C3C3);
        Bytes.Put64(sqe, 16, 0x1111_2222_3333_4444);
        Bytes.Put64(sqe, 24, 0);
        Bytes.Put32(sqe, 32, 8192);
        sqe[39] = 0x5A;
        Bytes.Put64(sqe, 40, 0x0000_0001_0000_0010);
        Bytes.Put16(sqe, 48, 15);
        Bytes.Put16(sqe, 50, 1 << 14);
        Bytes.Put32(sqe, 52, 0xD5D5D5D5);
        Bytes.Put32(sqe, 56, 0xE6E6E6E6);
        Bytes.Put32(sqe, 60, 0xF7F7F7F7);
        return sqe;
    }

    [Test]
    public void DecodesEveryFieldAtItsOffset()
    {
        var sqe = SubmissionQueueEntry.Read(LinuxWrite());

        Assert.That(sqe.Opcode, Is.EqualTo(0x01));
        Assert.That(sqe.Flags, Is.EqualTo(0x40));
        Assert.That(sqe.CommandId, Is.EqualTo(0x2005));
        Assert.That(sqe.NamespaceId, Is.EqualTo(3u));
        Assert.That(sqe.Cdw2, Is.EqualTo(0xC2C2C2C2u));
        Assert.That(sqe.Cdw3, Is.EqualTo(0xC3C3C3C3u));
        Assert.That(sqe.MetadataPointer, Is.EqualTo(0x1111_2222_3333_4444ul));
        Assert.That(sqe.DataPointer, Is.EqualTo(new SglDescriptor(0, 8192, SglDescriptor.TransportDataBlock)));
        Assert.That(sqe.Cdw10, Is.EqualTo(0x10u));
        Assert.That(sqe.Cdw11, Is.EqualTo(1u));
        Assert.That(sqe.Cdw12, Is.EqualTo(15u | (1u << 30)));
        Assert.That(sqe.Cdw13, Is.EqualTo(0xD5D5D5D5u));
        Assert.That(sqe.Cdw14, Is.EqualTo(0xE6E6E6E6u));
        Assert.That(sqe.Cdw15, Is.EqualTo(0xF7F7F7F7u));
    }

    [Test]
    public void NvmHelpersDecodeSlbaNlbAndFua()
    {
        var sqe = SubmissionQueueEntry.Read(LinuxWrite());

        Assert.That(sqe.StartingLba, Is.EqualTo(0x1_0000_0010ul));
        Assert.That(sqe.BlockCount, Is.EqualTo(16u), "NLB is 0-based");
        Assert.That(sqe.ForceUnitAccess, Is.True);
    }

    [Test]
    public void BlockCountIgnoresTheUpperBitsOfCdw12AndFuaNeedsBit30()
    {
        var sqe = new SubmissionQueueEntry(0x02, 0x40, 1, 1, default, 0, 0, 0xBFFF_FFFF, 0, 0, 0);
        Assert.That(sqe.BlockCount, Is.EqualTo(65536u));
        Assert.That(sqe.ForceUnitAccess, Is.False);
    }

    [Test]
    public void FabricsCommandTypeIsByte4()
    {
        var raw = new byte[64];
        raw[0] = 0x7F;
        raw[4] = 0x04;
        Assert.That(SubmissionQueueEntry.Read(raw).FabricsCommandType, Is.EqualTo(0x04));
    }

    [Test]
    public void EncodesTheSameBytesItDecodes()
    {
        var wire = LinuxWrite();
        var written = new byte[64];
        SubmissionQueueEntry.Read(wire).Write(written);
        Assert.That(written, Is.EqualTo(wire));
    }

    [Test]
    public void WriteTouchesOnly64Bytes()
    {
        var buffer = Enumerable.Repeat((byte)0xEE, 80).ToArray();
        new SubmissionQueueEntry(0, 0, 0, 0, default, 0, 0, 0, 0, 0, 0).Write(buffer);
        Assert.That(buffer[..64], Is.All.EqualTo(0));
        Assert.That(buffer[64..], Is.All.EqualTo(0xEE));
    }
}
