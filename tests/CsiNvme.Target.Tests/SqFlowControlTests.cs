using CsiNvme.Protocol.Fabrics;
using CsiNvme.Protocol.Tcp;

namespace CsiNvme.Target.Tests;

/// <summary>
/// C2HData SUCCESS (TCP 1.0, 3.6.2.8): with SQ flow control disabled by the host (Connect CATTR bit 2) a successful
/// read completes with its data PDU alone; with flow control on, a CapsuleResp always follows.
/// </summary>
public sealed class SqFlowControlTests
{
    private const int Bs = TargetHarness.BlockSize;

    [Test]
    public async Task ReadCompletesInItsDataPduWhenTheHostDisabledSqFlowControl()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var connect = io.Connect(1, 127, 0, new ConnectData(harness.Host.Id, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn), attributes: 0x04);
        Assert.That(connect.Status.IsSuccess, Is.True, "I/O Connect with SQ flow control disabled");

        var data = new byte[4096];
        new Random(7).NextBytes(data);
        Assert.That(io.WriteInCapsule(1, 16, data, Bs).Status.IsSuccess, Is.True);

        var read = TestHost.Command((byte)IoOpcode.Read, 0x4242, 1, TestHost.Transport(4096), 16, 0, TestHost.BlockCountField(4096, Bs));
        io.SendCapsule(read);
        var pdu = io.ReceivePdu();
        Assert.That(pdu.Type, Is.EqualTo(PduType.C2HData));
        Assert.That(pdu.Header.Flags & (PduFlags.LastPdu | PduFlags.Success), Is.EqualTo(PduFlags.LastPdu | PduFlags.Success));
        Assert.That(pdu.AsDataTransfer().CommandId, Is.EqualTo((ushort)0x4242));
        Assert.That(pdu.Data.ToArray(), Is.EqualTo(data));

        // The next PDU answers the next command: no CapsuleResp of the read is left in between.
        var flush = io.Execute(TestHost.Command((byte)IoOpcode.Flush, 0x4243, 1, default));
        Assert.That(flush.Entry.CommandId, Is.EqualTo((ushort)0x4243));
        Assert.That(flush.Status.IsSuccess, Is.True);
    }

    [Test]
    public async Task FailedReadStillGetsACapsuleResponse()
    {
        await using var harness = TargetHarness.Start();
        using var admin = harness.ConnectAdmin();
        using var io = harness.Initialize();
        var connect = io.Connect(1, 127, 0, new ConnectData(harness.Host.Id, admin.ControllerId, TargetHarness.SubsystemNqn, harness.Host.Nqn), attributes: 0x04);
        Assert.That(connect.Status.IsSuccess, Is.True);

        var beyond = (ulong)(harness.Volume.SizeBytes / Bs);
        var read = io.Read(1, beyond, 4096, Bs);
        Assert.That(read.Status, Is.EqualTo(NvmeStatus.LbaOutOfRange));
        Assert.That(read.DataPdus, Is.EqualTo(0));
    }
}
