using System.Text;
using CsiNvme.Protocol.Identify;

namespace CsiNvme.Protocol.Tests.Identify;

/// <summary>
/// Identify Controller, CNS 01h (NVMe base 2.0, Figure 275; NVMe-oF 1.1, 4.1 for 1792..). Offsets checked against
/// Linux struct nvme_id_ctrl and SPDK struct spdk_nvme_ctrlr_data.
/// </summary>
public sealed class IdentifyControllerTests
{
    private static IdentifyController Sample() => new()
    {
        VendorId = 0x1B36,
        SerialNumber = "SN0123",
        ModelNumber = "CsiNvme",
        FirmwareRevision = "1.0",
        RecommendedArbitrationBurst = 6,
        IeeeOui = 0x5254_00,
        MultiPathCapabilities = 0x0B,
        MaxDataTransferSizeExponent = 5,
        ControllerId = 0x0102,
        Version = 0x0001_0400,
        OptionalAsyncEvents = (1u << 8) | (1u << 11),
        ControllerAttributes = 0x0000_0080,
        ControllerType = ControllerType.Io,
        AbortCommandLimit = 3,
        AsyncEventRequestLimit = 3,
        FirmwareUpdates = 0x03,
        LogPageAttributes = 0x04,
        ErrorLogPageEntries = 0x3F,
        WarningTemperature = 343,
        CriticalTemperature = 373,
        KeepAliveSupport = 10,
        AnaTransitionTime = 10,
        AnaCapabilities = 0x5F,
        AnaGroupIdMax = 0x80,
        AnaGroupCount = 0x40,
        SubmissionQueueEntrySize = 0x66,
        CompletionQueueEntrySize = 0x44,
        MaxOutstandingCommands = 128,
        NamespaceCount = 1024,
        OptionalNvmCommands = 0x002C,
        FusedOperations = 0x0001,
        FormatNvmAttributes = 0x04,
        VolatileWriteCache = 0x01,
        AtomicWriteUnitNormal = 7,
        AtomicWriteUnitPowerFail = 0,
        SglSupport = 0x0010_0001,
        MaxAllowedNamespaces = 1024,
        SubsystemNqn = "nqn.2026-11.io.csinvme:volume:a",
        IoQueueCommandCapsuleSize = 260,
        IoQueueResponseCapsuleSize = 1,
        InCapsuleDataOffset = 0,
        FabricsControllerAttributes = 0,
        MaxSglDataBlockDescriptors = 1,
        OptionalFabricsCommands = 0x0001,
        PowerState0MaxPower = 2500,
    };

    private static byte[] Written(IdentifyController controller)
    {
        var page = Enumerable.Repeat((byte)0xEE, IdentifyController.Size).ToArray();
        controller.Write(page);
        return page;
    }

    [Test]
    public void FieldsLandAtTheirSpecOffsets()
    {
        var d = Written(Sample());

        Assert.Multiple(() =>
        {
            Assert.That(Bytes.U16(d, 0), Is.EqualTo(0x1B36), "VID@0");
            Assert.That(Bytes.U16(d, 2), Is.EqualTo(0x1B36), "SSVID@2");
            Assert.That(Encoding.ASCII.GetString(d, 4, 20), Is.EqualTo("SN0123".PadRight(20)), "SN@4");
            Assert.That(Encoding.ASCII.GetString(d, 24, 40), Is.EqualTo("CsiNvme".PadRight(40)), "MN@24");
            Assert.That(Encoding.ASCII.GetString(d, 64, 8), Is.EqualTo("1.0".PadRight(8)), "FR@64");
            Assert.That(d[72], Is.EqualTo(6), "RAB@72");
            Assert.That(d[73..76], Is.EqualTo(new byte[] { 0x00, 0x54, 0x52 }), "IEEE@73");
            Assert.That(d[76], Is.EqualTo(0x0B), "CMIC@76");
            Assert.That(d[77], Is.EqualTo(5), "MDTS@77");
            Assert.That(Bytes.U16(d, 78), Is.EqualTo(0x0102), "CNTLID@78");
            Assert.That(Bytes.U32(d, 80), Is.EqualTo(0x0001_0400u), "VER@80");
            Assert.That(Bytes.U32(d, 92), Is.EqualTo(0x0000_0900u), "OAES@92");
            Assert.That(Bytes.U32(d, 96), Is.EqualTo(0x80u), "CTRATT@96");
            Assert.That(d[111], Is.EqualTo(1), "CNTRLTYPE@111");
            Assert.That(d[258], Is.EqualTo(3), "ACL@258");
            Assert.That(d[259], Is.EqualTo(3), "AERL@259");
            Assert.That(d[260], Is.EqualTo(3), "FRMW@260");
            Assert.That(d[261], Is.EqualTo(4), "LPA@261");
            Assert.That(d[262], Is.EqualTo(0x3F), "ELPE@262");
            Assert.That(Bytes.U16(d, 266), Is.EqualTo(343), "WCTEMP@266");
            Assert.That(Bytes.U16(d, 268), Is.EqualTo(373), "CCTEMP@268");
            Assert.That(Bytes.U16(d, 320), Is.EqualTo(10), "KAS@320");
            Assert.That(d[342], Is.EqualTo(10), "ANATT@342");
            Assert.That(d[343], Is.EqualTo(0x5F), "ANACAP@343");
            Assert.That(Bytes.U32(d, 344), Is.EqualTo(0x80u), "ANAGRPMAX@344");
            Assert.That(Bytes.U32(d, 348), Is.EqualTo(0x40u), "NANAGRPID@348");
            Assert.That(Bytes.U32(d, 352), Is.EqualTo(0u), "PELS@352 untouched");
            Assert.That(d[512], Is.EqualTo(0x66), "SQES@512");
            Assert.That(d[513], Is.EqualTo(0x44), "CQES@513");
            Assert.That(Bytes.U16(d, 514), Is.EqualTo(128), "MAXCMD@514");
            Assert.That(Bytes.U32(d, 516), Is.EqualTo(1024u), "NN@516");
            Assert.That(Bytes.U16(d, 520), Is.EqualTo(0x2C), "ONCS@520");
            Assert.That(Bytes.U16(d, 522), Is.EqualTo(1), "FUSES@522");
            Assert.That(d[524], Is.EqualTo(4), "FNA@524");
            Assert.That(d[525], Is.EqualTo(1), "VWC@525");
            Assert.That(Bytes.U16(d, 526), Is.EqualTo(7), "AWUN@526");
            Assert.That(Bytes.U16(d, 528), Is.EqualTo(0), "AWUPF@528");
            Assert.That(Bytes.U32(d, 536), Is.EqualTo(0x0010_0001u), "SGLS@536");
            Assert.That(Bytes.U32(d, 540), Is.EqualTo(1024u), "MNAN@540");
            Assert.That(AsciiField.ReadNullTerminated(d.AsSpan(768, 256)), Is.EqualTo("nqn.2026-11.io.csinvme:volume:a"), "SUBNQN@768");
            Assert.That(d[1023], Is.EqualTo(0), "SUBNQN is null padded");
            Assert.That(Bytes.U32(d, 1792), Is.EqualTo(260u), "IOCCSZ@1792");
            Assert.That(Bytes.U32(d, 1796), Is.EqualTo(1u), "IORCSZ@1796");
            Assert.That(Bytes.U16(d, 1800), Is.EqualTo(0), "ICDOFF@1800");
            Assert.That(d[1802], Is.EqualTo(0), "FCATT@1802");
            Assert.That(d[1803], Is.EqualTo(1), "MSDBD@1803");
            Assert.That(Bytes.U16(d, 1804), Is.EqualTo(1), "OFCS@1804");
            Assert.That(Bytes.U16(d, 2048), Is.EqualTo(2500), "PSD0.MP@2048");
        });
    }

    [Test]
    public void NothingOutsideTheModelledFieldsIsWritten()
    {
        var d = Written(Sample());
        int[] owned =
        [
            .. Enumerable.Range(0, 112), .. Enumerable.Range(258, 5), .. Enumerable.Range(266, 4), 320, 321,
            .. Enumerable.Range(342, 10), .. Enumerable.Range(512, 18), .. Enumerable.Range(536, 8),
            .. Enumerable.Range(768, 256), .. Enumerable.Range(1792, 14), 2048, 2049,
        ];
        var stray = Bytes.NonZeroOffsets(d).Except(owned).ToList();
        Assert.That(stray, Is.Empty, "bytes written outside the modelled fields");
    }

    [Test]
    public void DefaultsCarryFabricsQueueEntrySizes()
    {
        var d = Written(new IdentifyController());
        Assert.That(d[512], Is.EqualTo(0x66));
        Assert.That(d[513], Is.EqualTo(0x44));
        Assert.That(Bytes.NonZeroOffsets(d).Except(Enumerable.Range(4, 68)), Is.EquivalentTo(new[] { 512, 513 }));
    }

    [Test]
    public void DecodesAHandBuiltLinuxLayout()
    {
        // Laid out field by field as struct nvme_id_ctrl: kas@320, hctma, mntmt, mxtmt, sanicap, hmminds, hmmaxd,
        // nsetidmax@338, endgidmax@340, anatt@342, anacap@343, anagrpmax@344, nanagrpid@348, pels@352.
        var d = new byte[IdentifyController.Size];
        Bytes.Put16(d, 0, 0x8086);
        Bytes.PutAscii(d, 4, "ABC                 ");
        Bytes.PutAscii(d, 24, "Linux                                   ");
        Bytes.PutAscii(d, 64, "6.8     ");
        d[76] = 0x0A;
        d[77] = 8;
        Bytes.Put16(d, 78, 7);
        Bytes.Put32(d, 92, 0x8000_0000);
        d[111] = 2;
        Bytes.Put16(d, 320, 50);
        Bytes.Put16(d, 338, 0xAAAA);
        Bytes.Put16(d, 340, 0xBBBB);
        d[342] = 3;
        d[343] = 0x47;
        Bytes.Put32(d, 344, 16);
        Bytes.Put32(d, 348, 8);
        Bytes.Put32(d, 352, 0xCCCC_CCCC);
        d[512] = 0x66;
        d[513] = 0x44;
        Bytes.Put16(d, 514, 256);
        Bytes.Put32(d, 516, 32);
        Bytes.Put16(d, 520, 0x0C);
        d[525] = 1;
        Bytes.Put32(d, 536, 0x0010_0005);
        Bytes.Put32(d, 540, 32);
        Bytes.PutAscii(d, 768, "nqn.2014-08.org.nvmexpress.discovery");
        Bytes.Put32(d, 1792, 4);
        Bytes.Put32(d, 1796, 1);
        Bytes.Put16(d, 1800, 0);
        d[1803] = 1;

        var c = IdentifyController.Read(d);
        Assert.Multiple(() =>
        {
            Assert.That(c.VendorId, Is.EqualTo(0x8086));
            Assert.That(c.SerialNumber, Is.EqualTo("ABC"));
            Assert.That(c.ModelNumber, Is.EqualTo("Linux"));
            Assert.That(c.FirmwareRevision, Is.EqualTo("6.8"));
            Assert.That(c.MultiPathCapabilities, Is.EqualTo(0x0A));
            Assert.That(c.MaxDataTransferSizeExponent, Is.EqualTo(8));
            Assert.That(c.ControllerId, Is.EqualTo(7));
            Assert.That(c.OptionalAsyncEvents, Is.EqualTo(0x8000_0000u));
            Assert.That(c.ControllerType, Is.EqualTo(ControllerType.Discovery));
            Assert.That(c.KeepAliveSupport, Is.EqualTo(50));
            Assert.That(c.AnaTransitionTime, Is.EqualTo(3));
            Assert.That(c.AnaCapabilities, Is.EqualTo(0x47));
            Assert.That(c.AnaGroupIdMax, Is.EqualTo(16u));
            Assert.That(c.AnaGroupCount, Is.EqualTo(8u));
            Assert.That(c.MaxOutstandingCommands, Is.EqualTo(256));
            Assert.That(c.NamespaceCount, Is.EqualTo(32u));
            Assert.That(c.OptionalNvmCommands, Is.EqualTo(0x0C));
            Assert.That(c.VolatileWriteCache, Is.EqualTo(1));
            Assert.That(c.SglSupport, Is.EqualTo(0x0010_0005u));
            Assert.That(c.MaxAllowedNamespaces, Is.EqualTo(32u));
            Assert.That(c.SubsystemNqn, Is.EqualTo("nqn.2014-08.org.nvmexpress.discovery"));
            Assert.That(c.IoQueueCommandCapsuleSize, Is.EqualTo(4u));
            Assert.That(c.IoQueueResponseCapsuleSize, Is.EqualTo(1u));
            Assert.That(c.MaxSglDataBlockDescriptors, Is.EqualTo(1));
        });
    }

    [TestCase(ControllerType.Unspecified, 0)]
    [TestCase(ControllerType.Io, 1)]
    [TestCase(ControllerType.Discovery, 2)]
    [TestCase(ControllerType.Administrative, 3)]
    public void ControllerTypeValues(ControllerType type, int value) => Assert.That((int)type, Is.EqualTo(value));

    [Test]
    public void TextFieldsAreSpacePaddedAndTruncated()
    {
        var d = Written(new IdentifyController { SerialNumber = new string('x', 25), ModelNumber = "caf\u00e9" });
        Assert.That(Encoding.ASCII.GetString(d, 4, 20), Is.EqualTo(new string('x', 20)));
        Assert.That(Encoding.ASCII.GetString(d, 24, 40), Is.EqualTo("caf?".PadRight(40)), "non-ASCII is replaced, never left raw");
    }

    [Test]
    public void SubsystemNqnMustLeaveRoomForTheTerminator() =>
        Assert.That(() => Written(new IdentifyController { SubsystemNqn = new string('n', 256) }), Throws.ArgumentException);
}
