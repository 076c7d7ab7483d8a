using System.Buffers.Binary;

namespace CsiNvme.Protocol.Logs;

/// <summary>ANA states (NVMe base 2.0, 8.1.3, Figure 215 ANAS field).</summary>
public enum AnaState : byte
{
    Optimized = 0x01,
    NonOptimized = 0x02,
    Inaccessible = 0x03,
    PersistentLoss = 0x04,
    Change = 0x0F,
}

/// <summary>One ANA group: its id, state and member namespaces.</summary>
public sealed record AnaGroup(uint GroupId, ulong ChangeCount, AnaState State, IReadOnlyList<uint> NamespaceIds);

/// <summary>
/// Asymmetric Namespace Access log, log id 0Ch (NVMe base 2.0, 5.16.1.13, Figures 214–215): a 16-byte header
/// (CHGCNT@0, NGRPS@8) then per group a 32-byte descriptor (ANAGRPID@0, NNSID@4, CHGCNT@8, ANAS@16) followed by
/// its NSIDs ascending. With RGO (LSP bit 0) the NSID lists are omitted.
/// </summary>
public static class AnaLog
{
    public const int HeaderSize = 16;
    public const int GroupDescriptorSize = 32;

    public static byte[] Build(ulong changeCount, IReadOnlyList<AnaGroup> groups, bool groupsOnly)
    {
        var size = HeaderSize + groups.Sum(g => GroupDescriptorSize + (groupsOnly ? 0 : 4 * g.NamespaceIds.Count));
        var page = new byte[size];
        BinaryPrimitives.WriteUInt64LittleEndian(page, changeCount);
        BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(8), (ushort)groups.Count);
        var offset = HeaderSize;
        foreach (var group in groups)
        {
            var d = page.AsSpan(offset);
            BinaryPrimitives.WriteUInt32LittleEndian(d, group.GroupId);
            BinaryPrimitives.WriteUInt32LittleEndian(d[4..], groupsOnly ? 0u : (uint)group.NamespaceIds.Count);
            BinaryPrimitives.WriteUInt64LittleEndian(d[8..], group.ChangeCount);
            d[16] = (byte)group.State;
            offset += GroupDescriptorSize;
            if (!groupsOnly)
            {
                foreach (var nsid in group.NamespaceIds.Order())
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(offset), nsid);
                    offset += 4;
                }
            }
        }

        return page;
    }

    public static (ulong ChangeCount, IReadOnlyList<AnaGroup> Groups) Parse(ReadOnlySpan<byte> page)
    {
        var changeCount = BinaryPrimitives.ReadUInt64LittleEndian(page);
        var count = BinaryPrimitives.ReadUInt16LittleEndian(page[8..]);
        var groups = new List<AnaGroup>();
        var offset = HeaderSize;
        for (var i = 0; i < count; i++)
        {
            var d = page[offset..];
            var nns = BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
            var nsids = new List<uint>();
            for (var n = 0; n < nns; n++)
            {
                nsids.Add(BinaryPrimitives.ReadUInt32LittleEndian(d[(GroupDescriptorSize + 4 * n)..]));
            }

            groups.Add(new AnaGroup(BinaryPrimitives.ReadUInt32LittleEndian(d), BinaryPrimitives.ReadUInt64LittleEndian(d[8..]), (AnaState)(d[16] & 0x0F), nsids));
            offset += GroupDescriptorSize + 4 * (int)nns;
        }

        return (changeCount, groups);
    }
}
