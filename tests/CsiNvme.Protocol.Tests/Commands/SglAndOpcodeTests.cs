using CsiNvme.Protocol.Commands;

namespace CsiNvme.Protocol.Tests.Commands;

/// <summary>
/// SGL descriptors (NVMe base 2.0, 4.1.8, Figure 117; Linux struct nvme_sgl_desc: addr@0, length@8, rsvd[3], type@15)
/// and opcode values (Linux include/linux/nvme.h enums).
/// </summary>
public sealed class SglAndOpcodeTests
{
    [Test]
    public void InCapsuleDescriptorAsLinuxSendsIt()
    {
        // nvme_tcp_set_sg_inline: addr = ICDOFF (0), length = data length, type = NVME_SGL_FMT_DATA_DESC << 4 | NVME_SGL_FMT_OFFSET.
        byte[] wire = [0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0x01];
        var sgl = SglDescriptor.Read(wire);

        Assert.That(sgl, Is.EqualTo(new SglDescriptor(0, 1024, SglDescriptor.InCapsuleDataBlock)));
        Assert.That(sgl.DescriptorType, Is.EqualTo(0x0));
        Assert.That(sgl.SubType, Is.EqualTo(0x1));
    }

    [Test]
    public void TransportDescriptorAsLinuxSendsIt()
    {
        // nvme_tcp_set_sg_host_data: type = NVME_TRANSPORT_SGL_DATA_DESC << 4 | NVME_SGL_FMT_TRANSPORT_A.
        var wire = new byte[16];
        new SglDescriptor(0, 0x20000, SglDescriptor.TransportDataBlock).Write(wire);

        Assert.That(wire, Is.EqualTo(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0x5A }));
        var sgl = SglDescriptor.Read(wire);
        Assert.That(sgl.DescriptorType, Is.EqualTo(0x5));
        Assert.That(sgl.SubType, Is.EqualTo(0xA));
    }

    [Test]
    public void AddressIsA64BitLittleEndianField()
    {
        var wire = new byte[16];
        new SglDescriptor(0x0102_0304_0506_0708, 0x0A0B_0C0D, 0x01).Write(wire);
        Assert.That(wire, Is.EqualTo(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0, 0x01 }));
    }

    [Test]
    public void ReservedBytesAreClearedOnWrite()
    {
        var wire = Enumerable.Repeat((byte)0xEE, 16).ToArray();
        new SglDescriptor(0, 0, 0x01).Write(wire);
        Assert.That(wire[12..15], Is.All.EqualTo(0));
    }

    [TestCase(AdminOpcode.DeleteIoSq, 0x00)]
    [TestCase(AdminOpcode.CreateIoSq, 0x01)]
    [TestCase(AdminOpcode.GetLogPage, 0x02)]
    [TestCase(AdminOpcode.DeleteIoCq, 0x04)]
    [TestCase(AdminOpcode.CreateIoCq, 0x05)]
    [TestCase(AdminOpcode.Identify, 0x06)]
    [TestCase(AdminOpcode.Abort, 0x08)]
    [TestCase(AdminOpcode.SetFeatures, 0x09)]
    [TestCase(AdminOpcode.GetFeatures, 0x0A)]
    [TestCase(AdminOpcode.AsyncEventRequest, 0x0C)]
    [TestCase(AdminOpcode.KeepAlive, 0x18)]
    [TestCase(AdminOpcode.Fabrics, 0x7F)]
    public void AdminOpcodes(AdminOpcode opcode, int value) => Assert.That((int)opcode, Is.EqualTo(value));

    [TestCase(IoOpcode.Flush, 0x00)]
    [TestCase(IoOpcode.Write, 0x01)]
    [TestCase(IoOpcode.Read, 0x02)]
    [TestCase(IoOpcode.WriteUncorrectable, 0x04)]
    [TestCase(IoOpcode.Compare, 0x05)]
    [TestCase(IoOpcode.WriteZeroes, 0x08)]
    [TestCase(IoOpcode.DatasetManagement, 0x09)]
    [TestCase(IoOpcode.Fabrics, 0x7F)]
    public void IoOpcodes(IoOpcode opcode, int value) => Assert.That((int)opcode, Is.EqualTo(value));

    [TestCase(FabricsCommandType.PropertySet, 0x00)]
    [TestCase(FabricsCommandType.Connect, 0x01)]
    [TestCase(FabricsCommandType.PropertyGet, 0x04)]
    [TestCase(FabricsCommandType.AuthenticationSend, 0x05)]
    [TestCase(FabricsCommandType.AuthenticationReceive, 0x06)]
    [TestCase(FabricsCommandType.Disconnect, 0x08)]
    public void FabricsCommandTypes(FabricsCommandType type, int value) => Assert.That((int)type, Is.EqualTo(value));

    [TestCase(IdentifyCns.Namespace, 0x00)]
    [TestCase(IdentifyCns.Controller, 0x01)]
    [TestCase(IdentifyCns.ActiveNamespaceList, 0x02)]
    [TestCase(IdentifyCns.NamespaceIdDescriptorList, 0x03)]
    public void IdentifyCnsValues(IdentifyCns cns, int value) => Assert.That((int)cns, Is.EqualTo(value));

    [TestCase(LogPageId.ErrorInformation, 0x01)]
    [TestCase(LogPageId.SmartHealth, 0x02)]
    [TestCase(LogPageId.FirmwareSlot, 0x03)]
    [TestCase(LogPageId.ChangedNamespaceList, 0x04)]
    [TestCase(LogPageId.CommandsSupportedAndEffects, 0x05)]
    [TestCase(LogPageId.AsymmetricNamespaceAccess, 0x0C)]
    [TestCase(LogPageId.Discovery, 0x70)]
    public void LogPageIds(LogPageId id, int value) => Assert.That((int)id, Is.EqualTo(value));

    [TestCase(FeatureId.Arbitration, 0x01)]
    [TestCase(FeatureId.PowerManagement, 0x02)]
    [TestCase(FeatureId.TemperatureThreshold, 0x04)]
    [TestCase(FeatureId.VolatileWriteCache, 0x06)]
    [TestCase(FeatureId.NumberOfQueues, 0x07)]
    [TestCase(FeatureId.InterruptCoalescing, 0x08)]
    [TestCase(FeatureId.AsyncEventConfiguration, 0x0B)]
    [TestCase(FeatureId.KeepAliveTimer, 0x0F)]
    [TestCase(FeatureId.HostIdentifier, 0x81)]
    public void FeatureIds(FeatureId id, int value) => Assert.That((int)id, Is.EqualTo(value));
}
