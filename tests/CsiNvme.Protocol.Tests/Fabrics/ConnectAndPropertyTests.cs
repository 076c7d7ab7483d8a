using System.Text;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;

namespace CsiNvme.Protocol.Tests.Fabrics;

/// <summary>
/// Connect (NVMe-oF 1.1, 3.3, Figures 20–21; Linux struct nvmf_connect_command / nvmf_connect_data) and
/// Property Get/Set (Figures 24–26; struct nvmf_property_get_command / nvmf_property_set_command).
/// </summary>
public sealed class ConnectAndPropertyTests
{
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:0f8e2f4c-1a2b-4c3d-9e8f-001122334455";
    private const string SubNqn = "nqn.2026-11.io.csinvme:volume:a";

    /// <summary>A Connect laid out like Linux struct nvmf_connect_command: qid 2, sqsize 127, cattr 0x04 (--disable-sqflow), kato 5000.</summary>
    private static byte[] LinuxIoConnect()
    {
        var sqe = new byte[64];
        sqe[0] = 0x7F;
        sqe[1] = 0x40;
        Bytes.Put16(sqe, 2, 0x0009);
        sqe[4] = 0x01;
        Bytes.Put32(sqe, 32, 1024);
        sqe[39] = 0x01;
        Bytes.Put16(sqe, 40, 0);
        Bytes.Put16(sqe, 42, 2);
        Bytes.Put16(sqe, 44, 127);
        sqe[46] = 0x04;
        Bytes.Put32(sqe, 48, 5000);
        return sqe;
    }

    [Test]
    public void ConnectCommandFieldsAtTheirOffsets()
    {
        var sqe = SubmissionQueueEntry.Read(LinuxIoConnect());
        var connect = ConnectCommand.From(sqe);

        Assert.That(sqe.Opcode, Is.EqualTo((byte)AdminOpcode.Fabrics));
        Assert.That(sqe.FabricsCommandType, Is.EqualTo((byte)FabricsCommandType.Connect));
        Assert.That(sqe.DataPointer, Is.EqualTo(new SglDescriptor(0, ConnectData.Size, SglDescriptor.InCapsuleDataBlock)));
        Assert.That(connect, Is.EqualTo(new ConnectCommand(0, 2, 127, 0x04, 5000)));
        Assert.That(connect.SqFlowControlDisabled, Is.True);
    }

    [Test]
    public void SqFlowControlIsCattrBit2()
    {
        Assert.That(new ConnectCommand(0, 0, 31, 0x00, 0).SqFlowControlDisabled, Is.False);
        Assert.That(new ConnectCommand(0, 0, 31, 0x03, 0).SqFlowControlDisabled, Is.False);
        Assert.That(new ConnectCommand(0, 0, 31, 0x04, 0).SqFlowControlDisabled, Is.True);
    }

    [Test]
    public void ConnectCommandEncodesTheLinuxLayout()
    {
        var written = new byte[64];
        new ConnectCommand(0, 2, 127, 0x04, 5000)
            .ToSubmissionQueueEntry(0x0009, new SglDescriptor(0, ConnectData.Size, SglDescriptor.InCapsuleDataBlock))
            .Write(written);
        Assert.That(written, Is.EqualTo(LinuxIoConnect()));
    }

    [Test]
    public void ConnectDataLayout()
    {
        var data = new ConnectData(Guid.Parse("0f8e2f4c-1a2b-4c3d-9e8f-001122334455"), ConnectData.DynamicControllerId, SubNqn, HostNqn);
        var wire = Enumerable.Repeat((byte)0xEE, ConnectData.Size).ToArray();
        data.Write(wire);

        // uuid_t bytes in string order, as nvme-cli parses --hostid.
        Assert.That(wire[..16], Is.EqualTo(new byte[] { 0x0f, 0x8e, 0x2f, 0x4c, 0x1a, 0x2b, 0x4c, 0x3d, 0x9e, 0x8f, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55 }));
        Assert.That(Bytes.U16(wire, 16), Is.EqualTo(0xFFFF));
        Assert.That(wire[18..256], Is.All.EqualTo(0));
        Assert.That(wire[256..(256 + SubNqn.Length)], Is.EqualTo(Encoding.ASCII.GetBytes(SubNqn)));
        Assert.That(wire[(256 + SubNqn.Length)..512], Is.All.EqualTo(0));
        Assert.That(wire[512..(512 + HostNqn.Length)], Is.EqualTo(Encoding.ASCII.GetBytes(HostNqn)));
        Assert.That(wire[(512 + HostNqn.Length)..], Is.All.EqualTo(0));
    }

    [Test]
    public void ConnectDataDecodesAHandBuiltImage()
    {
        var wire = new byte[ConnectData.Size];
        for (var i = 0; i < 16; i++)
        {
            wire[i] = (byte)(0xA0 + i);
        }

        Bytes.Put16(wire, 16, 0x0003);
        Bytes.PutAscii(wire, 256, SubNqn);
        Bytes.PutAscii(wire, 512, HostNqn);

        var data = ConnectData.Read(wire);
        Assert.That(data.HostId, Is.EqualTo(Guid.Parse("a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf")));
        Assert.That(data.ControllerId, Is.EqualTo(3));
        Assert.That(data.SubsystemNqn, Is.EqualTo(SubNqn));
        Assert.That(data.HostNqn, Is.EqualTo(HostNqn));
    }

    [Test]
    public void ConnectDataOffsets()
    {
        Assert.That(ConnectData.Size, Is.EqualTo(1024));
        Assert.That(ConnectData.SubsystemNqnOffset, Is.EqualTo(256));
        Assert.That(ConnectData.HostNqnOffset, Is.EqualTo(512));
        Assert.That(ConnectData.NqnFieldSize, Is.EqualTo(256));
    }

    [Test]
    public void PropertyGetOfCapAsLinuxSendsIt()
    {
        // nvmf_reg_read64: fctype 4, attrib 1 (8 bytes)@40, offset@44.
        var raw = new byte[64];
        raw[0] = 0x7F;
        raw[4] = 0x04;
        raw[40] = 0x01;
        Bytes.Put32(raw, 44, PropertyOffset.Capabilities);

        var property = PropertyCommand.From(SubmissionQueueEntry.Read(raw));
        Assert.That(property, Is.EqualTo(new PropertyCommand(true, 0x00, 0)));
    }

    [Test]
    public void PropertySetOfCcAsLinuxSendsIt()
    {
        // nvmf_reg_write32: fctype 0, attrib 0 (4 bytes), offset 0x14, value@48 (le64).
        var raw = new byte[64];
        raw[0] = 0x7F;
        raw[4] = 0x00;
        Bytes.Put32(raw, 44, PropertyOffset.ControllerConfiguration);
        Bytes.Put64(raw, 48, 0x0046_0001);

        var property = PropertyCommand.From(SubmissionQueueEntry.Read(raw));
        Assert.That(property, Is.EqualTo(new PropertyCommand(false, 0x14, 0x0046_0001)));
    }

    [Test]
    public void PropertyValueSpansCdw12AndCdw13()
    {
        var raw = new byte[64];
        raw[40] = 0x01;
        Bytes.Put64(raw, 48, 0x8877_6655_4433_2211);
        Assert.That(PropertyCommand.From(SubmissionQueueEntry.Read(raw)).Value, Is.EqualTo(0x8877_6655_4433_2211ul));
    }

    [Test]
    public void PropertyAttribOnlyLooksAtBits2To0()
    {
        var raw = new byte[64];
        raw[40] = 0xF9; // bits 2:0 = 001b
        Assert.That(PropertyCommand.From(SubmissionQueueEntry.Read(raw)).EightBytes, Is.True);
        raw[40] = 0xF8;
        Assert.That(PropertyCommand.From(SubmissionQueueEntry.Read(raw)).EightBytes, Is.False);
    }

    [Test]
    public void PropertyOffsets()
    {
        Assert.That(PropertyOffset.Capabilities, Is.EqualTo(0x00u));
        Assert.That(PropertyOffset.Version, Is.EqualTo(0x08u));
        Assert.That(PropertyOffset.ControllerConfiguration, Is.EqualTo(0x14u));
        Assert.That(PropertyOffset.ControllerStatus, Is.EqualTo(0x1Cu));
        Assert.That(PropertyOffset.SubsystemReset, Is.EqualTo(0x20u));
    }
}
