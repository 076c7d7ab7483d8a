using CsCheck;
using CsiNvme.Protocol.Reservations;

namespace CsiNvme.Protocol.Tests.Reservations;

/// <summary>The reservation wire structures decode what they encode, and hold the fields where the specification puts them.</summary>
public sealed class ReservationWireTests
{
    private static readonly Gen<RegisteredHost> Host =
        Gen.Select(Gen.UShort, Gen.Bool, Gen.ULong, Gen.Guid, (c, h, k, id) => new RegisteredHost(c, h, k, id));

    [Test]
    public void The_extended_report_round_trips() =>
        Gen.Select(Gen.UInt, Gen.Enum<ReservationType>(), Gen.Bool, Host.Array[0, 20]).Sample((generation, type, ptpl, hosts) =>
        {
            var data = new byte[ReservationStatusExtended.HeaderSize + hosts.Length * ReservationStatusExtended.EntrySize];
            ReservationStatusExtended.Write(data, generation, type, ptpl, hosts);
            var parsed = ReservationStatusExtended.Parse(data);
            Assert.That((parsed.Generation, parsed.Type, parsed.RegisteredCount, parsed.PersistThroughPowerLoss), Is.EqualTo((generation, type, hosts.Length, ptpl)));
            Assert.That(parsed.Hosts, Is.EqualTo(hosts));
        });

    [Test]
    public void A_short_transfer_keeps_the_count_and_the_entries_that_fit()
    {
        var hosts = new[] { new RegisteredHost(0xFFFF, true, 0x1122334455667788, Guid.Parse("00112233-4455-6677-8899-aabbccddeeff")), new RegisteredHost(0xFFFF, false, 2, Guid.NewGuid()) };
        var data = new byte[ReservationStatusExtended.HeaderSize + ReservationStatusExtended.EntrySize + 10];
        ReservationStatusExtended.Write(data, 7, ReservationType.WriteExclusiveRegistrantsOnly, true, hosts);
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(data), Is.EqualTo(7u), "GEN@0");
        Assert.That(data[4], Is.EqualTo(3), "RTYPE@4");
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(5)), Is.EqualTo(2), "REGCTL@5 counts every registrant");
        Assert.That(data[9], Is.EqualTo(1), "PTPLS@9");
        var entry = data.AsSpan(64);
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(entry), Is.EqualTo(0xFFFF), "CNTLID@0");
        Assert.That(entry[2], Is.EqualTo(1), "RCSTS@2");
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]), Is.EqualTo(0x1122334455667788ul), "RKEY@8");
        Assert.That(Convert.ToHexStringLower(entry.Slice(16, 16)), Is.EqualTo("00112233445566778899aabbccddeeff"), "HOSTID@16 in wire order");
        Assert.That(data.AsSpan(128).ToArray(), Is.All.Zero, "the second entry does not fit");
        Assert.That(ReservationStatusExtended.Parse(data).Hosts, Is.EqualTo(hosts.Take(1)));
    }

    [Test]
    public void The_notification_entry_round_trips() =>
        Gen.Select(Gen.ULong, Gen.Enum<ReservationNotificationType>(), Gen.Byte, Gen.UInt, (count, type, available, nsid) => new ReservationNotificationEntry(count, type, available, nsid))
            .Sample(entry =>
            {
                var page = new byte[ReservationNotificationEntry.Size];
                entry.Write(page);
                Assert.That(ReservationNotificationEntry.Read(page), Is.EqualTo(entry));
                Assert.That((page[8], page[9], BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(12))), Is.EqualTo(((byte)entry.Type, entry.Available, entry.NamespaceId)));
            });

    [Test]
    public void Command_fields_and_keys_round_trip() =>
        Gen.Select(Gen.Byte[0, 7], Gen.Bool, Gen.Byte, Gen.Byte[0, 3], Gen.ULong, Gen.ULong).Sample((action, iekey, type, cptpl, current, other) =>
        {
            var fields = new ReservationCommandFields(action, iekey, type, cptpl);
            Assert.That(ReservationCommandFields.From(fields.ToCdw10()), Is.EqualTo(fields));
            var keys = new ReservationKeys(current, other);
            var data = new byte[ReservationKeys.RegisterOrAcquireSize];
            keys.Write(data);
            Assert.That(ReservationKeys.Read(data), Is.EqualTo(keys));
            Assert.That(ReservationKeys.Read(data.AsSpan(0, ReservationKeys.ReleaseSize)), Is.EqualTo(new ReservationKeys(current, 0)));
        });
}
