using CsiNvme.Protocol.Identify;

namespace CsiNvme.Protocol.Tests.Identify;

/// <summary>
/// Identify Namespace, CNS 00h (NVM command set 1.0, Figure 97; Linux struct nvme_id_ns), the Namespace
/// Identification Descriptor list, CNS 03h (NVMe base 2.0, Figure 279), and the Active Namespace ID list, CNS 02h.
/// </summary>
public sealed class IdentifyNamespaceTests
{
    private static readonly byte[] Nguid = Enumerable.Range(0x10, 16).Select(i => (byte)i).ToArray();
    private static readonly byte[] Eui64 = Enumerable.Range(0xE0, 8).Select(i => (byte)i).ToArray();

    private static IdentifyNamespace Sample() => new()
    {
        SizeBlocks = 0x0000_0001_0000_0000,
        CapacityBlocks = 0x0000_0001_0000_0000,
        UtilizationBlocks = 0x1234,
        Features = 0x09,
        FormattedLbaSize = 0,
        MultiPathCapabilities = 0x01,
        ReservationCapabilities = 0xFF,
        DeallocateFeatures = 0x09,
        AtomicWriteUnitNormal = 7,
        PreferredWriteGranularity = 7,
        PreferredDeallocateGranularity = 255,
        AnaGroupId = 5,
        Attributes = 0,
        Nguid = Nguid,
        Eui64 = Eui64,
        LbaDataSizeExponent = 12,
    };

    [Test]
    public void FieldsLandAtTheirSpecOffsets()
    {
        var d = Enumerable.Repeat((byte)0xEE, IdentifyNamespace.Size).ToArray();
        Sample().Write(d);

        Assert.Multiple(() =>
        {
            Assert.That(Bytes.U64(d, 0), Is.EqualTo(0x1_0000_0000ul), "NSZE@0");
            Assert.That(Bytes.U64(d, 8), Is.EqualTo(0x1_0000_0000ul), "NCAP@8");
            Assert.That(Bytes.U64(d, 16), Is.EqualTo(0x1234ul), "NUSE@16");
            Assert.That(d[24], Is.EqualTo(0x09), "NSFEAT@24");
            Assert.That(d[25], Is.EqualTo(0), "NLBAF@25: one format, 0-based");
            Assert.That(d[26], Is.EqualTo(0), "FLBAS@26");
            Assert.That(d[30], Is.EqualTo(1), "NMIC@30");
            Assert.That(d[31], Is.EqualTo(0xFF), "RESCAP@31");
            Assert.That(d[33], Is.EqualTo(0x09), "DLFEAT@33");
            Assert.That(Bytes.U16(d, 34), Is.EqualTo(7), "NAWUN@34");
            Assert.That(Bytes.U16(d, 64), Is.EqualTo(7), "NPWG@64");
            Assert.That(Bytes.U16(d, 66), Is.EqualTo(7), "NPWA@66");
            Assert.That(Bytes.U16(d, 68), Is.EqualTo(255), "NPDG@68");
            Assert.That(Bytes.U16(d, 70), Is.EqualTo(255), "NPDA@70");
            Assert.That(Bytes.U16(d, 72), Is.EqualTo(7), "NOWS@72");
            Assert.That(Bytes.U32(d, 92), Is.EqualTo(5u), "ANAGRPID@92");
            Assert.That(d[99], Is.EqualTo(0), "NSATTR@99");
            Assert.That(d[104..120], Is.EqualTo(Nguid), "NGUID@104");
            Assert.That(d[120..128], Is.EqualTo(Eui64), "EUI64@120");
            Assert.That(d[128..132], Is.EqualTo(new byte[] { 0x00, 0x00, 0x0C, 0x00 }), "LBAF0@128: MS 0, LBADS 12 in bits 23:16");
            Assert.That(d[132..], Is.All.EqualTo(0), "only one LBA format, nothing after it");
        });
    }

    [Test]
    public void DecodesAHandBuiltLinuxLayout()
    {
        var d = new byte[IdentifyNamespace.Size];
        Bytes.Put64(d, 0, 2048);
        Bytes.Put64(d, 8, 2048);
        Bytes.Put64(d, 16, 100);
        d[30] = 1;
        d[33] = 0x01;
        Bytes.Put32(d, 92, 9);
        Nguid.CopyTo(d, 104);
        Eui64.CopyTo(d, 120);
        Bytes.Put32(d, 128, (9u << 16) | 0x0000); // 512-byte blocks, no metadata, RP 0

        var ns = IdentifyNamespace.Read(d);
        Assert.That(ns.SizeBlocks, Is.EqualTo(2048ul));
        Assert.That(ns.CapacityBlocks, Is.EqualTo(2048ul));
        Assert.That(ns.UtilizationBlocks, Is.EqualTo(100ul));
        Assert.That(ns.MultiPathCapabilities, Is.EqualTo(1));
        Assert.That(ns.DeallocateFeatures, Is.EqualTo(1));
        Assert.That(ns.AnaGroupId, Is.EqualTo(9u));
        Assert.That(ns.Nguid, Is.EqualTo(Nguid));
        Assert.That(ns.Eui64, Is.EqualTo(Eui64));
        Assert.That(ns.LbaDataSizeExponent, Is.EqualTo(9));
    }

    [Test]
    public void LbadsIgnoresRelativePerformanceBits()
    {
        var d = new byte[IdentifyNamespace.Size];
        Bytes.Put32(d, 128, (2u << 24) | (12u << 16));
        Assert.That(IdentifyNamespace.Read(d).LbaDataSizeExponent, Is.EqualTo(12));
    }

    [Test]
    public void EqualityComparesIdentifierContents()
    {
        var a = Sample();
        var b = Sample() with { Nguid = (byte[])Nguid.Clone(), Eui64 = (byte[])Eui64.Clone() };
        Assert.That(b, Is.EqualTo(a));
        Assert.That(a with { Nguid = new byte[16] }, Is.Not.EqualTo(a));
    }

    [TestCase(NamespaceIdType.Eui64, 1)]
    [TestCase(NamespaceIdType.Nguid, 2)]
    [TestCase(NamespaceIdType.Uuid, 3)]
    [TestCase(NamespaceIdType.CommandSetIdentifier, 4)]
    public void NamespaceIdTypeValues(NamespaceIdType type, int value) => Assert.That((int)type, Is.EqualTo(value));

    [Test]
    public void DescriptorListLayout()
    {
        var uuid = Enumerable.Range(0x40, 16).Select(i => (byte)i).ToArray();
        var d = Enumerable.Repeat((byte)0xEE, NamespaceIdDescriptor.ListSize).ToArray();
        var used = NamespaceIdDescriptor.WriteList(d,
        [
            new NamespaceIdDescriptor(NamespaceIdType.Eui64, Eui64),
            new NamespaceIdDescriptor(NamespaceIdType.Nguid, Nguid),
            new NamespaceIdDescriptor(NamespaceIdType.Uuid, uuid),
        ]);

        // NIDT@0, NIDL@1, reserved 2..3, NID@4; the next descriptor follows immediately.
        Assert.That(used, Is.EqualTo(12 + 20 + 20));
        Assert.That(d[0..4], Is.EqualTo(new byte[] { 1, 8, 0, 0 }));
        Assert.That(d[4..12], Is.EqualTo(Eui64));
        Assert.That(d[12..16], Is.EqualTo(new byte[] { 2, 16, 0, 0 }));
        Assert.That(d[16..32], Is.EqualTo(Nguid));
        Assert.That(d[32..36], Is.EqualTo(new byte[] { 3, 16, 0, 0 }));
        Assert.That(d[36..52], Is.EqualTo(uuid));
        Assert.That(d[52..], Is.All.EqualTo(0), "a zero NIDT ends the list");

        var read = NamespaceIdDescriptor.ReadList(d);
        Assert.That(read.Select(x => x.Type), Is.EqualTo(new[] { NamespaceIdType.Eui64, NamespaceIdType.Nguid, NamespaceIdType.Uuid }));
        Assert.That(read[0].Value, Is.EqualTo(Eui64));
        Assert.That(read[1].Value, Is.EqualTo(Nguid));
        Assert.That(read[2].Value, Is.EqualTo(uuid));
    }

    [Test]
    public void EmptyDescriptorListIsAllZeros()
    {
        var d = Enumerable.Repeat((byte)0xEE, NamespaceIdDescriptor.ListSize).ToArray();
        Assert.That(NamespaceIdDescriptor.WriteList(d, []), Is.Zero);
        Assert.That(d, Is.All.EqualTo(0));
        Assert.That(NamespaceIdDescriptor.ReadList(d), Is.Empty);
    }

    [Test]
    public void ActiveListHasOnlyGreaterNsidsAscending()
    {
        var d = Enumerable.Repeat((byte)0xEE, ActiveNamespaceList.Size).ToArray();
        ActiveNamespaceList.Write(d, [9, 1, 5, 3, 7], greaterThan: 3);

        Assert.That(Bytes.U32(d, 0), Is.EqualTo(5u));
        Assert.That(Bytes.U32(d, 4), Is.EqualTo(7u));
        Assert.That(Bytes.U32(d, 8), Is.EqualTo(9u));
        Assert.That(d[12..], Is.All.EqualTo(0));
        Assert.That(ActiveNamespaceList.Read(d), Is.EqualTo(new uint[] { 5, 7, 9 }));
    }

    [Test]
    public void ActiveListFromZeroListsEverything()
    {
        var d = new byte[ActiveNamespaceList.Size];
        ActiveNamespaceList.Write(d, [2, 1], greaterThan: 0);
        Assert.That(ActiveNamespaceList.Read(d), Is.EqualTo(new uint[] { 1, 2 }));
    }

    [Test]
    public void ActiveListStopsAt1024Entries()
    {
        var d = new byte[ActiveNamespaceList.Size + 8];
        ActiveNamespaceList.Write(d, Enumerable.Range(1, 3000).Select(i => (uint)(3001 - i)), greaterThan: 10);

        var list = ActiveNamespaceList.Read(d.AsSpan(0, ActiveNamespaceList.Size));
        Assert.That(list, Has.Count.EqualTo(1024));
        Assert.That(list[0], Is.EqualTo(11u));
        Assert.That(list[^1], Is.EqualTo(1034u));
        Assert.That(d[ActiveNamespaceList.Size..], Is.All.EqualTo(0), "nothing beyond the 4 KiB page");
    }
}
