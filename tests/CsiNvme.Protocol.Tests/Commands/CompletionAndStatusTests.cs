using CsiNvme.Protocol.Commands;

namespace CsiNvme.Protocol.Tests.Commands;

/// <summary>
/// The 16-byte CQE (NVMe base 2.0, Figure 89; Linux struct nvme_completion) and the status field (Figure 92):
/// phase bit 0, SC bits 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15. Linux's NVME_SC_* constants are the field shifted
/// right by one (SCT &lt;&lt; 8 | SC, DNR 0x4000).
/// </summary>
public sealed class CompletionAndStatusTests
{
    [Test]
    public void CompletionFieldsAtTheirOffsets()
    {
        var cqe = new CompletionQueueEntry(0x0000_0007, 0xA5A5_A5A5, 0x001F, 0x0002, 0xBEEF, NvmeStatus.ConnectInvalidHost);
        var wire = new byte[16];
        cqe.Write(wire);

        byte[] expected =
        [
            0x07, 0x00, 0x00, 0x00,
            0xA5, 0xA5, 0xA5, 0xA5,
            0x1F, 0x00,
            0x02, 0x00,
            0xEF, 0xBE,
            0x08, 0x83,
        ];
        Assert.That(wire, Is.EqualTo(expected));
        Assert.That(CompletionQueueEntry.Read(wire), Is.EqualTo(cqe));
    }

    [Test]
    public void DecodesAStatusFieldWithThePhaseTagSet()
    {
        var wire = new byte[16];
        Bytes.Put16(wire, 14, 0x0605); // ANA inaccessible, phase 1
        Assert.That(CompletionQueueEntry.Read(wire).Status, Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));
    }

    [TestCase(0x0001, 0, 0x00, false)]
    [TestCase(0x0100, 0, 0x80, false)]
    [TestCase(0x8100, 0, 0x80, true)]
    [TestCase(0x0308, 1, 0x84, false)]
    [TestCase(0x0604, 3, 0x02, false)]
    [TestCase(0x8E00, 7, 0x00, true)]
    [TestCase(0x01FE, 0, 0xFF, false)]
    public void FromStatusFieldSplitsScSctAndDnr(int field, int sct, int sc, bool dnr)
    {
        var status = NvmeStatus.FromStatusField((ushort)field);
        Assert.That((int)status.Type, Is.EqualTo(sct));
        Assert.That(status.Code, Is.EqualTo(sc));
        Assert.That(status.DoNotRetry, Is.EqualTo(dnr));
    }

    [Test]
    public void FromStatusFieldIgnoresCrdAndMore() =>
        Assert.That(NvmeStatus.FromStatusField(0x7000 | 0x0604), Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible));

    [Test]
    public void ToStatusFieldLeavesThePhaseTagClear()
    {
        for (var sc = 0; sc < 256; sc++)
        {
            Assert.That(new NvmeStatus(StatusCodeType.PathRelated, (byte)sc, true).ToStatusField() & 1, Is.Zero);
        }
    }

    // Expected = Linux NVME_SC_* value (SCT << 8 | SC) and whether the target should set DNR.
    private static IEnumerable<TestCaseData> KnownStatuses()
    {
        yield return new TestCaseData(NvmeStatus.Success, 0x000, false).SetName("Success");
        yield return new TestCaseData(NvmeStatus.InvalidOpcode, 0x001, true).SetName("InvalidOpcode");
        yield return new TestCaseData(NvmeStatus.InvalidField, 0x002, true).SetName("InvalidField");
        yield return new TestCaseData(NvmeStatus.CommandIdConflict, 0x003, true).SetName("CommandIdConflict");
        yield return new TestCaseData(NvmeStatus.DataTransferError, 0x004, true).SetName("DataTransferError");
        yield return new TestCaseData(NvmeStatus.InternalError, 0x006, true).SetName("InternalError");
        yield return new TestCaseData(NvmeStatus.AbortRequested, 0x007, true).SetName("AbortRequested");
        yield return new TestCaseData(NvmeStatus.InvalidNamespaceOrFormat, 0x00B, true).SetName("InvalidNamespaceOrFormat");
        yield return new TestCaseData(NvmeStatus.CommandSequenceError, 0x00C, true).SetName("CommandSequenceError");
        yield return new TestCaseData(NvmeStatus.InvalidSglSegmentDescriptor, 0x00D, true).SetName("InvalidSglSegmentDescriptor");
        yield return new TestCaseData(NvmeStatus.DataSglLengthInvalid, 0x00F, true).SetName("DataSglLengthInvalid");
        yield return new TestCaseData(NvmeStatus.SglDescriptorTypeInvalid, 0x011, true).SetName("SglDescriptorTypeInvalid");
        yield return new TestCaseData(NvmeStatus.SglOffsetInvalid, 0x016, true).SetName("SglOffsetInvalid");
        yield return new TestCaseData(NvmeStatus.HostIdentifierInconsistentFormat, 0x018, true).SetName("HostIdentifierInconsistentFormat");
        yield return new TestCaseData(NvmeStatus.KeepAliveTimerExpired, 0x019, true).SetName("KeepAliveTimerExpired");
        yield return new TestCaseData(NvmeStatus.TransientTransportError, 0x022, false).SetName("TransientTransportError");
        yield return new TestCaseData(NvmeStatus.LbaOutOfRange, 0x080, true).SetName("LbaOutOfRange");
        yield return new TestCaseData(NvmeStatus.CapacityExceeded, 0x081, true).SetName("CapacityExceeded");
        yield return new TestCaseData(NvmeStatus.NamespaceNotReady, 0x082, false).SetName("NamespaceNotReady");
        yield return new TestCaseData(NvmeStatus.InvalidQueueIdentifier, 0x101, true).SetName("InvalidQueueIdentifier");
        yield return new TestCaseData(NvmeStatus.InvalidQueueSize, 0x102, true).SetName("InvalidQueueSize");
        yield return new TestCaseData(NvmeStatus.AsyncEventRequestLimitExceeded, 0x105, true).SetName("AsyncEventRequestLimitExceeded");
        yield return new TestCaseData(NvmeStatus.InvalidLogPage, 0x109, true).SetName("InvalidLogPage");
        yield return new TestCaseData(NvmeStatus.FeatureIdNotSaveable, 0x10D, true).SetName("FeatureIdNotSaveable");
        yield return new TestCaseData(NvmeStatus.FeatureNotChangeable, 0x10E, true).SetName("FeatureNotChangeable");
        yield return new TestCaseData(NvmeStatus.ConnectIncompatibleFormat, 0x180, true).SetName("ConnectIncompatibleFormat");
        yield return new TestCaseData(NvmeStatus.ConnectControllerBusy, 0x181, true).SetName("ConnectControllerBusy");
        yield return new TestCaseData(NvmeStatus.ConnectInvalidParameters, 0x182, true).SetName("ConnectInvalidParameters");
        yield return new TestCaseData(NvmeStatus.ConnectRestartDiscovery, 0x183, true).SetName("ConnectRestartDiscovery");
        yield return new TestCaseData(NvmeStatus.ConnectInvalidHost, 0x184, true).SetName("ConnectInvalidHost");
        yield return new TestCaseData(NvmeStatus.WriteFault, 0x280, false).SetName("WriteFault");
        yield return new TestCaseData(NvmeStatus.UnrecoveredReadError, 0x281, false).SetName("UnrecoveredReadError");
        yield return new TestCaseData(NvmeStatus.AsymmetricAccessInaccessible, 0x302, false).SetName("AnaInaccessible");
        yield return new TestCaseData(NvmeStatus.AsymmetricAccessTransition, 0x303, false).SetName("AnaTransition");
    }

    [TestCaseSource(nameof(KnownStatuses))]
    public void StatusValuesMatchLinuxConstants(NvmeStatus status, int linuxValue, bool dnr)
    {
        Assert.That(((int)status.Type << 8) | status.Code, Is.EqualTo(linuxValue));
        Assert.That(status.DoNotRetry, Is.EqualTo(dnr));
        Assert.That(status.ToStatusField(), Is.EqualTo((ushort)(((linuxValue | (dnr ? 0x4000 : 0)) << 1) & 0xFFFF)));
    }

    [Test]
    public void PathRelatedStatusesUseSct3()
    {
        // A multipath host fails over only on SCT 3; anything else reaches the application.
        Assert.That(NvmeStatus.AsymmetricAccessInaccessible.Type, Is.EqualTo(StatusCodeType.PathRelated));
        Assert.That(NvmeStatus.AsymmetricAccessInaccessible.ToStatusField(), Is.EqualTo(0x0604));
    }

    [Test]
    public void OnlyGenericZeroIsSuccess()
    {
        Assert.That(NvmeStatus.Success.IsSuccess, Is.True);
        Assert.That(new NvmeStatus(StatusCodeType.CommandSpecific, 0, false).IsSuccess, Is.False);
        Assert.That(NvmeStatus.InvalidField.IsSuccess, Is.False);
    }

    [Test]
    public void StatusPrintsSctScAndDnr() =>
        Assert.That(NvmeStatus.ConnectInvalidHost.ToString(), Is.EqualTo("SCT 1 SC 84 DNR"));
}
