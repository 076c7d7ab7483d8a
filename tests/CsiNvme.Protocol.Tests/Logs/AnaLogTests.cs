using CsiNvme.Protocol.Logs;

namespace CsiNvme.Protocol.Tests.Logs;

/// <summary>
/// ANA log page 0Ch (NVMe base 2.0, 5.16.1.13, Figures 214–215; Linux struct nvme_ana_rsp_hdr / nvme_ana_group_desc):
/// header CHGCNT@0, NGRPS@8, 16 bytes; each group ANAGRPID@0, NNSID@4, CHGCNT@8, ANAS@16, then NSIDs from byte 32.
/// </summary>
public sealed class AnaLogTests
{
    private static readonly AnaGroup[] Groups =
    [
        new(1, 0x11, AnaState.Optimized, [3, 1]),
        new(2, 0x22, AnaState.Inaccessible, [2]),
    ];

    [TestCase(AnaState.Optimized, 0x01)]
    [TestCase(AnaState.NonOptimized, 0x02)]
    [TestCase(AnaState.Inaccessible, 0x03)]
    [TestCase(AnaState.PersistentLoss, 0x04)]
    [TestCase(AnaState.Change, 0x0F)]
    public void StateValues(AnaState state, int value) => Assert.That((int)state, Is.EqualTo(value));

    [Test]
    public void LayoutWithNamespaceLists()
    {
        var page = AnaLog.Build(0xABCD, Groups, groupsOnly: false);

        Assert.That(page, Has.Length.EqualTo(16 + 32 + 8 + 32 + 4));
        Assert.That(Bytes.U64(page, 0), Is.EqualTo(0xABCDul), "CHGCNT@0");
        Assert.That(Bytes.U16(page, 8), Is.EqualTo(2), "NGRPS@8");
        Assert.That(page[10..16], Is.All.EqualTo(0));

        Assert.That(Bytes.U32(page, 16), Is.EqualTo(1u), "group 1 ANAGRPID");
        Assert.That(Bytes.U32(page, 20), Is.EqualTo(2u), "group 1 NNSID");
        Assert.That(Bytes.U64(page, 24), Is.EqualTo(0x11ul), "group 1 CHGCNT");
        Assert.That(page[32], Is.EqualTo(0x01), "group 1 ANAS");
        Assert.That(page[33..48], Is.All.EqualTo(0));
        Assert.That(Bytes.U32(page, 48), Is.EqualTo(1u), "NSIDs ascending");
        Assert.That(Bytes.U32(page, 52), Is.EqualTo(3u));

        Assert.That(Bytes.U32(page, 56), Is.EqualTo(2u), "group 2 ANAGRPID");
        Assert.That(Bytes.U32(page, 60), Is.EqualTo(1u), "group 2 NNSID");
        Assert.That(Bytes.U64(page, 64), Is.EqualTo(0x22ul));
        Assert.That(page[72], Is.EqualTo(0x03));
        Assert.That(Bytes.U32(page, 88), Is.EqualTo(2u));
    }

    [Test]
    public void ReturnGroupsOnlyOmitsTheNamespaceLists()
    {
        var page = AnaLog.Build(5, Groups, groupsOnly: true);

        Assert.That(page, Has.Length.EqualTo(16 + 2 * 32));
        Assert.That(Bytes.U32(page, 20), Is.EqualTo(0u), "NNSID is 0 with RGO");
        Assert.That(Bytes.U32(page, 48), Is.EqualTo(2u), "second descriptor follows the first directly");
        Assert.That(Bytes.U32(page, 52), Is.EqualTo(0u));

        var (_, groups) = AnaLog.Parse(page);
        Assert.That(groups.Select(g => (g.GroupId, g.State, g.NamespaceIds.Count)),
            Is.EqualTo(new[] { (1u, AnaState.Optimized, 0), (2u, AnaState.Inaccessible, 0) }));
    }

    [Test]
    public void ParsesAHandBuiltLinuxLayout()
    {
        var page = new byte[16 + 32 + 12];
        Bytes.Put64(page, 0, 9);
        Bytes.Put16(page, 8, 1);
        Bytes.Put32(page, 16, 4);
        Bytes.Put32(page, 20, 3);
        Bytes.Put64(page, 24, 77);
        page[32] = 0x02;
        Bytes.Put32(page, 48, 10);
        Bytes.Put32(page, 52, 11);
        Bytes.Put32(page, 56, 12);

        var (changeCount, groups) = AnaLog.Parse(page);
        Assert.That(changeCount, Is.EqualTo(9ul));
        Assert.That(groups, Has.Count.EqualTo(1));
        Assert.That(groups[0].GroupId, Is.EqualTo(4u));
        Assert.That(groups[0].ChangeCount, Is.EqualTo(77ul));
        Assert.That(groups[0].State, Is.EqualTo(AnaState.NonOptimized));
        Assert.That(groups[0].NamespaceIds, Is.EqualTo(new uint[] { 10, 11, 12 }));
    }

    [Test]
    public void ParseTakesTheStateFromBits3To0()
    {
        var page = AnaLog.Build(0, [new AnaGroup(1, 0, AnaState.Change, [])], groupsOnly: false);
        page[32] |= 0xF0;
        Assert.That(AnaLog.Parse(page).Groups[0].State, Is.EqualTo(AnaState.Change));
    }
}
