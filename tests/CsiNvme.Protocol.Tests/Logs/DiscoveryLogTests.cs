using System.Text;
using CsiNvme.Protocol.Logs;

namespace CsiNvme.Protocol.Tests.Logs;

/// <summary>
/// Discovery log page 70h (NVMe-oF 1.1, 5.3, Figures 37–38; Linux struct nvmf_disc_rsp_page_hdr /
/// nvmf_disc_rsp_page_entry).
/// </summary>
public sealed class DiscoveryLogTests
{
    private static DiscoveryLogEntry Entry(string nqn, ushort port) => new(
        TransportType.Tcp,
        AddressFamily.IPv4,
        DiscoverySubsystemType.NvmSubsystem,
        DiscoveryLogEntry.SecureChannelNotRequired,
        port,
        0xFFFF,
        32,
        0,
        "4420",
        nqn,
        "127.0.0.1");

    [Test]
    public void EnumValuesMatchTheSpecification()
    {
        Assert.That((int)TransportType.Rdma, Is.EqualTo(1));
        Assert.That((int)TransportType.FibreChannel, Is.EqualTo(2));
        Assert.That((int)TransportType.Tcp, Is.EqualTo(3));
        Assert.That((int)AddressFamily.IPv4, Is.EqualTo(1));
        Assert.That((int)AddressFamily.IPv6, Is.EqualTo(2));
        Assert.That((int)DiscoverySubsystemType.ReferralDiscovery, Is.EqualTo(1));
        Assert.That((int)DiscoverySubsystemType.NvmSubsystem, Is.EqualTo(2));
        Assert.That((int)DiscoverySubsystemType.CurrentDiscovery, Is.EqualTo(3));
        Assert.That(DiscoveryLogEntry.SecureChannelNotRequired, Is.EqualTo(0x02));
    }

    [Test]
    public void HeaderAndEntryLayout()
    {
        var page = DiscoveryLog.Build(0x0102_0304_0506_0708, [Entry("nqn.2026-11.io.csinvme:volume:a", 1), Entry("nqn.2026-11.io.csinvme:volume:b", 2)]);

        Assert.That(page, Has.Length.EqualTo(1024 + 2 * 1024));
        Assert.That(Bytes.U64(page, 0), Is.EqualTo(0x0102_0304_0506_0708ul), "GENCTR@0");
        Assert.That(Bytes.U64(page, 8), Is.EqualTo(2ul), "NUMREC@8");
        Assert.That(Bytes.U16(page, 16), Is.EqualTo(0), "RECFMT@16");
        Assert.That(page[18..1024], Is.All.EqualTo(0));

        var e = page[2048..3072];
        Assert.Multiple(() =>
        {
            Assert.That(e[0], Is.EqualTo(3), "TRTYPE@0");
            Assert.That(e[1], Is.EqualTo(1), "ADRFAM@1");
            Assert.That(e[2], Is.EqualTo(2), "SUBTYPE@2");
            Assert.That(e[3], Is.EqualTo(2), "TREQ@3");
            Assert.That(Bytes.U16(e, 4), Is.EqualTo(2), "PORTID@4");
            Assert.That(Bytes.U16(e, 6), Is.EqualTo(0xFFFF), "CNTLID@6");
            Assert.That(Bytes.U16(e, 8), Is.EqualTo(32), "ASQSZ@8");
            Assert.That(Bytes.U16(e, 10), Is.EqualTo(0), "EFLAGS@10");
            Assert.That(e[12..32], Is.All.EqualTo(0));
            Assert.That(Encoding.ASCII.GetString(e, 32, 32).TrimEnd(' ', '\0'), Is.EqualTo("4420"), "TRSVCID@32");
            Assert.That(e[64..256], Is.All.EqualTo(0));
            Assert.That(AsciiField.ReadNullTerminated(e.AsSpan(256, 256)), Is.EqualTo("nqn.2026-11.io.csinvme:volume:b"), "SUBNQN@256");
            Assert.That(Encoding.ASCII.GetString(e, 512, 256).TrimEnd(' ', '\0'), Is.EqualTo("127.0.0.1"), "TRADDR@512");
            Assert.That(e[768..], Is.All.EqualTo(0), "TSAS: no TLS");
        });
    }

    [Test]
    public void ParsesAHandBuiltLinuxLayout()
    {
        var page = new byte[2048];
        Bytes.Put64(page, 0, 7);
        Bytes.Put64(page, 8, 1);
        var e = page.AsSpan(1024);
        e[0] = 3;
        e[1] = 2;
        e[2] = 3;
        e[3] = 0x02;
        Bytes.Put16(e, 4, 9);
        Bytes.Put16(e, 6, 0xFFFF);
        Bytes.Put16(e, 8, 128);
        Bytes.Put16(e, 10, 0x0003);
        Bytes.PutAscii(e, 32, "8009");
        Bytes.PutAscii(e, 256, "nqn.2014-08.org.nvmexpress.discovery");
        Bytes.PutAscii(e, 512, "::1");

        var (generation, count, entries) = DiscoveryLog.Parse(page);
        Assert.That(generation, Is.EqualTo(7ul));
        Assert.That(count, Is.EqualTo(1ul));
        Assert.That(entries, Has.Count.EqualTo(1));
        Assert.That(entries[0], Is.EqualTo(new DiscoveryLogEntry(
            TransportType.Tcp, AddressFamily.IPv6, DiscoverySubsystemType.CurrentDiscovery, 0x02, 9, 0xFFFF, 128, 0x0003,
            "8009", "nqn.2014-08.org.nvmexpress.discovery", "::1")));
    }

    [Test]
    public void ParseOfTheHeaderAloneGivesTheCountButNoEntries()
    {
        // libnvme first reads only the 1024-byte header to learn NUMREC.
        var page = DiscoveryLog.Build(3, [Entry("nqn.a", 1), Entry("nqn.b", 1), Entry("nqn.c", 1)]);
        var (generation, count, entries) = DiscoveryLog.Parse(page.AsSpan(0, 1024));
        Assert.That(generation, Is.EqualTo(3ul));
        Assert.That(count, Is.EqualTo(3ul));
        Assert.That(entries, Is.Empty);
    }

    [Test]
    public void ParseStopsAtNumrecEvenIfThePageIsLonger()
    {
        var page = DiscoveryLog.Build(1, [Entry("nqn.a", 1), Entry("nqn.b", 1)]);
        Bytes.Put64(page, 8, 1);
        Assert.That(DiscoveryLog.Parse(page).Entries, Has.Count.EqualTo(1));
    }

    [Test]
    public void EmptyLogIsJustTheHeader()
    {
        var page = DiscoveryLog.Build(0, []);
        Assert.That(page, Has.Length.EqualTo(1024));
        Assert.That(page, Is.All.EqualTo(0));
    }
}
