using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Logs;

namespace CsiNvme.Protocol.Tests.Logs;

/// <summary>
/// SMART / Health log 02h (NVMe base 2.0, Figure 207; Linux struct nvme_smart_log), Changed Namespace List 04h and
/// Asynchronous Event completions (Figures 146–150; Linux NVME_AER_* values).
/// </summary>
public sealed class HealthLogTests
{
    [Test]
    public void SmartLogLayout()
    {
        var log = new SmartLog(0x04, 310, 100, 10, 2, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555);
        var d = Enumerable.Repeat((byte)0xEE, SmartLog.Size).ToArray();
        log.Write(d);

        Assert.Multiple(() =>
        {
            Assert.That(d[0], Is.EqualTo(0x04), "critical_warning@0");
            Assert.That(Bytes.U16(d, 1), Is.EqualTo(310), "temperature@1");
            Assert.That(d[3], Is.EqualTo(100), "avail_spare@3");
            Assert.That(d[4], Is.EqualTo(10), "spare_thresh@4");
            Assert.That(d[5], Is.EqualTo(2), "percent_used@5");
            Assert.That(Bytes.U64(d, 32), Is.EqualTo(0x1111ul), "data_units_read@32");
            Assert.That(Bytes.U64(d, 40), Is.EqualTo(0ul), "upper half of the 128-bit counter");
            Assert.That(Bytes.U64(d, 48), Is.EqualTo(0x2222ul), "data_units_written@48");
            Assert.That(Bytes.U64(d, 64), Is.EqualTo(0x3333ul), "host_reads@64");
            Assert.That(Bytes.U64(d, 80), Is.EqualTo(0x4444ul), "host_writes@80");
            Assert.That(Bytes.U64(d, 128), Is.EqualTo(0x5555ul), "power_on_hours@128");
        });

        int[] owned = [0, 1, 2, 3, 4, 5, .. Enumerable.Range(32, 8), .. Enumerable.Range(48, 8), .. Enumerable.Range(64, 8), .. Enumerable.Range(80, 8), .. Enumerable.Range(128, 8)];
        Assert.That(Bytes.NonZeroOffsets(d).Except(owned), Is.Empty);
        Assert.That(SmartLog.Read(d), Is.EqualTo(log));
    }

    [Test]
    public void ChangedNamespaceListIsSortedAndZeroTerminated()
    {
        var d = Enumerable.Repeat((byte)0xEE, ChangedNamespaceList.Size).ToArray();
        ChangedNamespaceList.Write(d, [7, 2, 5]);

        Assert.That(Bytes.U32(d, 0), Is.EqualTo(2u));
        Assert.That(Bytes.U32(d, 4), Is.EqualTo(5u));
        Assert.That(Bytes.U32(d, 8), Is.EqualTo(7u));
        Assert.That(d[12..], Is.All.EqualTo(0));
    }

    [Test]
    public void ChangedNamespaceListHoldsExactly1024()
    {
        var d = new byte[ChangedNamespaceList.Size];
        ChangedNamespaceList.Write(d, Enumerable.Range(1, 1024).Select(i => (uint)i).ToArray());
        Assert.That(Bytes.U32(d, 0), Is.EqualTo(1u));
        Assert.That(Bytes.U32(d, 4092), Is.EqualTo(1024u));
    }

    [Test]
    public void ChangedNamespaceListOverflowIsASingleFfffffff()
    {
        var d = Enumerable.Repeat((byte)0xEE, ChangedNamespaceList.Size).ToArray();
        ChangedNamespaceList.Write(d, Enumerable.Range(1, 1025).Select(i => (uint)i).ToArray());

        Assert.That(Bytes.U32(d, 0), Is.EqualTo(0xFFFF_FFFFu));
        Assert.That(d[4..], Is.All.EqualTo(0));
        Assert.That(ChangedNamespaceList.MaxEntries, Is.EqualTo(1024));
    }

    [Test]
    public void EmptyChangedNamespaceListIsAllZeros()
    {
        var d = Enumerable.Repeat((byte)0xEE, ChangedNamespaceList.Size).ToArray();
        ChangedNamespaceList.Write(d, []);
        Assert.That(d, Is.All.EqualTo(0));
    }

    [Test]
    public void AsyncEventTypesAndNotices()
    {
        Assert.That(AsyncEvent.TypeError, Is.EqualTo(0));
        Assert.That(AsyncEvent.TypeSmartHealth, Is.EqualTo(1));
        Assert.That(AsyncEvent.TypeNotice, Is.EqualTo(2));
        Assert.That(AsyncEvent.NoticeNamespaceAttributeChanged, Is.EqualTo(0x00));
        Assert.That(AsyncEvent.NoticeFirmwareActivation, Is.EqualTo(0x01));
        Assert.That(AsyncEvent.NoticeAnaChange, Is.EqualTo(0x03));
        Assert.That(AsyncEvent.NoticeDiscoveryLogChange, Is.EqualTo(0xF0));
    }

    [Test]
    public void AsyncEventCompletionDw0IsTypeInfoAndLogPage()
    {
        // Linux nvme_handle_aen_notice switches on (result & 0xff07): NVME_AER_NOTICE_NS_CHANGED = 0x0002,
        // NVME_AER_NOTICE_ANA = 0x0302, NVME_AER_NOTICE_DISC_CHANGED = 0xf002; the log page id is bits 23:16.
        Assert.That(AsyncEvent.CompletionDw0(AsyncEvent.TypeNotice, AsyncEvent.NoticeNamespaceAttributeChanged, (byte)LogPageId.ChangedNamespaceList),
            Is.EqualTo(0x0004_0002u));
        Assert.That(AsyncEvent.CompletionDw0(AsyncEvent.TypeNotice, AsyncEvent.NoticeAnaChange, (byte)LogPageId.AsymmetricNamespaceAccess),
            Is.EqualTo(0x000C_0302u));
        Assert.That(AsyncEvent.CompletionDw0(AsyncEvent.TypeNotice, AsyncEvent.NoticeDiscoveryLogChange, (byte)LogPageId.Discovery),
            Is.EqualTo(0x0070_F002u));
        Assert.That(AsyncEvent.CompletionDw0(AsyncEvent.TypeSmartHealth, 0x01, (byte)LogPageId.SmartHealth), Is.EqualTo(0x0002_0101u));
    }

    [Test]
    public void ErrorLogEntriesAre64Bytes() => Assert.That(ErrorLog.EntrySize, Is.EqualTo(64));
}
