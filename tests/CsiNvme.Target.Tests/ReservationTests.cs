using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Logs;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// NVMe reservations over the wire (NVMe base 2.0, 8.19; NVM command set 1.0, 3.2.4–3.2.6): two hosts (two host
/// identifiers) on one namespace, every command, the access rules of each type, preemption, notifications and the
/// generation counter.
/// </summary>
public sealed class ReservationTests
{
    private const ulong KeyA = 0xA1A1;
    private const ulong KeyB = 0xB2B2;

    private static (ReservationHost A, ReservationHost B) TwoHosts(TargetHarness harness) =>
        (ReservationHost.Connect(harness, harness.Host), ReservationHost.Connect(harness, NvmeHostIdentity.Create()));

    [Test]
    public async Task Identify_reports_reservations_and_every_type()
    {
        await using var harness = TargetHarness.Start();
        using var a = ReservationHost.Connect(harness, harness.Host);
        var controller = IdentifyController.Read(a.Admin.Identify((byte)IdentifyCns.Controller).Data);
        Assert.That(controller.OptionalNvmCommands & (1 << 5), Is.Not.Zero, "ONCS bit 5: reservations");
        var ns = IdentifyNamespace.Read(a.Admin.Identify((byte)IdentifyCns.Namespace, 1).Data);
        Assert.That(ns.ReservationCapabilities, Is.EqualTo(0xFE), "RESCAP: all six types and IEKEY 1.3; no PTPL without a store");
        Assert.That(ns.MultiPathCapabilities & 1, Is.EqualTo(1), "NMIC: shared");
    }

    [Test]
    public async Task Register_and_report_list_both_hosts_with_their_128_bit_ids()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;

        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        var report = b.Report();
        Assert.That(report.Generation, Is.EqualTo(2u));
        Assert.That(report.Type, Is.EqualTo(ReservationType.None));
        Assert.That(report.RegisteredCount, Is.EqualTo(2));
        Assert.That(report.Hosts, Is.EqualTo(new[]
        {
            new RegisteredHost(0xFFFF, false, KeyA, a.Identity.Id),
            new RegisteredHost(0xFFFF, false, KeyB, b.Identity.Id),
        }));

        var regular = a.ReportRaw(extended: false);
        Assert.That(regular.Status, Is.EqualTo(NvmeStatus.HostIdentifierInconsistentFormat), "the 24-byte entries cannot hold a 128-bit host id");

        var shortReport = a.ReportRaw(length: 96);
        Assert.That(shortReport.Status, Is.EqualTo(NvmeStatus.Success));
        var (_, _, count, _, hosts) = ReservationStatusExtended.Parse(shortReport.Data);
        Assert.That((count, hosts.Count), Is.EqualTo((2, 0)), "REGCTL counts every registrant even when the entries do not fit");
    }

    [Test]
    public async Task Register_unregister_and_replace_check_the_current_key_unless_told_to_ignore_it()
    {
        await using var harness = TargetHarness.Start();
        using var a = ReservationHost.Connect(harness, harness.Host);
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success), "registering again with the same key");
        Assert.That(a.Register(KeyB), Is.EqualTo(NvmeStatus.ReservationConflict), "registering again with another key");
        Assert.That(a.Register(KeyB, currentKey: 7, ReservationRegisterAction.Replace), Is.EqualTo(NvmeStatus.ReservationConflict), "replace with a wrong key");
        Assert.That(a.Register(KeyB, currentKey: KeyA, ReservationRegisterAction.Replace), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Register(KeyA, currentKey: 7, ReservationRegisterAction.Replace, ignoreExistingKey: true), Is.EqualTo(NvmeStatus.Success), "IEKEY");
        Assert.That(a.Report().Hosts.Single().Key, Is.EqualTo(KeyA));
        Assert.That(a.Register(0, currentKey: 7, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.ReservationConflict));
        Assert.That(a.Register(0, currentKey: KeyA, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Register(0, currentKey: KeyA, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.ReservationConflict), "not registered any more");
        Assert.That(a.Register(1, action: (ReservationRegisterAction)3), Is.EqualTo(NvmeStatus.InvalidField), "reserved action");
        Assert.That(a.Register(1, changePtpl: 1), Is.EqualTo(NvmeStatus.InvalidField), "CPTPL 01b is reserved");
        Assert.That(a.Register(1, changePtpl: 3), Is.EqualTo(NvmeStatus.InvalidField), "PTPL without a store to persist to");
        Assert.That(a.Report().Generation, Is.EqualTo(5u), "register, register again, replace, replace, unregister");
        Assert.That(a.ReportRaw(nsid: 9).Status, Is.EqualTo(NvmeStatus.InvalidNamespaceOrFormat));
    }

    [Test]
    public async Task Keys_may_also_come_by_r2t()
    {
        await using var harness = TargetHarness.Start();
        using var a = ReservationHost.Connect(harness, harness.Host);
        var keys = new byte[ReservationKeys.RegisterOrAcquireSize];
        new ReservationKeys(0, KeyA).Write(keys);
        var cid = a.Io.NextCommandId();
        a.Io.SendCapsule(TestHost.Command((byte)IoOpcode.ReservationRegister, cid, 1, TestHost.Transport(keys.Length), new ReservationCommandFields(0, false, 0, 0).ToCdw10()));
        var r2t = a.Io.ReceivePdu();
        Assert.That(r2t.Type, Is.EqualTo(PduType.R2T));
        a.Io.Send(a.Io.BuildH2CData(cid, r2t.AsDataTransfer().TransferTag, 0, keys, last: true));
        Assert.That(a.Io.ReceiveCompletion(cid).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Report().Hosts.Single().Key, Is.EqualTo(KeyA));
    }

    // One row per reservation type and role of the other host (NVMe base 2.0, 8.19.1, Figure 426): may it read, may it
    // write (Write, Flush, Write Zeroes and Dataset Management alike)? The holder may always do both.
    [TestCase(ReservationType.WriteExclusive, true, true, false)]
    [TestCase(ReservationType.WriteExclusive, false, true, false)]
    [TestCase(ReservationType.ExclusiveAccess, true, false, false)]
    [TestCase(ReservationType.ExclusiveAccess, false, false, false)]
    [TestCase(ReservationType.WriteExclusiveRegistrantsOnly, true, true, true)]
    [TestCase(ReservationType.WriteExclusiveRegistrantsOnly, false, true, false)]
    [TestCase(ReservationType.ExclusiveAccessRegistrantsOnly, true, true, true)]
    [TestCase(ReservationType.ExclusiveAccessRegistrantsOnly, false, false, false)]
    [TestCase(ReservationType.WriteExclusiveAllRegistrants, true, true, true)]
    [TestCase(ReservationType.WriteExclusiveAllRegistrants, false, true, false)]
    [TestCase(ReservationType.ExclusiveAccessAllRegistrants, true, true, true)]
    [TestCase(ReservationType.ExclusiveAccessAllRegistrants, false, false, false)]
    public async Task Access_of_the_holder_and_of_another_host(ReservationType type, bool otherRegistered, bool otherReads, bool otherWrites)
    {
        await using var harness = TargetHarness.Start();
        var (holder, other) = TwoHosts(harness);
        using var _ = holder;
        using var __ = other;
        Assert.That(holder.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        if (otherRegistered)
        {
            Assert.That(other.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(holder.Acquire(type, KeyA), Is.EqualTo(NvmeStatus.Success));
        var report = holder.Report();
        Assert.That(report.Type, Is.EqualTo(type));
        Assert.That(report.Hosts.Single(h => h.HostId == holder.Identity.Id).HoldsReservation, Is.True);

        var conflict = NvmeStatus.ReservationConflict;
        Assert.Multiple(() =>
        {
            Assert.That(holder.ReadStatus(), Is.EqualTo(NvmeStatus.Success), "holder reads");
            Assert.That(holder.WriteStatus(), Is.EqualTo(NvmeStatus.Success), "holder writes");
            Assert.That(holder.FlushStatus(), Is.EqualTo(NvmeStatus.Success), "holder flushes");
            Assert.That(other.ReadStatus(), Is.EqualTo(otherReads ? NvmeStatus.Success : conflict), "other host reads");
            Assert.That(other.WriteStatus(), Is.EqualTo(otherWrites ? NvmeStatus.Success : conflict), "other host writes");
            Assert.That(other.FlushStatus(), Is.EqualTo(otherWrites ? NvmeStatus.Success : conflict), "other host flushes");
            Assert.That(other.WriteZeroesStatus(), Is.EqualTo(otherWrites ? NvmeStatus.Success : conflict), "other host writes zeroes");
            Assert.That(other.DeallocateStatus(), Is.EqualTo(otherWrites ? NvmeStatus.Success : conflict), "other host deallocates");
        });

        if (otherRegistered && ReservationState.IsAllRegistrants(type))
        {
            Assert.That(other.Report().Hosts.All(h => h.HoldsReservation), Is.True, "every registrant holds an All Registrants reservation");
        }

        // Released: everyone may do everything again.
        Assert.That(holder.Release(type, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(other.WriteStatus(), Is.EqualTo(NvmeStatus.Success));
        Assert.That(other.ReadStatus(), Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task A_reservation_conflict_reaches_every_controller_of_the_other_host_and_none_of_the_holder()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        using var a2 = ReservationHost.Connect(harness, a.Identity);
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a2.WriteStatus(), Is.EqualTo(NvmeStatus.Success), "a second controller of the holder's host writes: keys are per host");
        Assert.That(a2.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.Success), "and is the holder too");
        Assert.That(b.WriteStatus(), Is.EqualTo(NvmeStatus.ReservationConflict));
        Assert.That(b.WriteStatus().DoNotRetry, Is.True);
    }

    [Test]
    public async Task Acquire_rules()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.ReservationConflict), "not registered");
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyB), Is.EqualTo(NvmeStatus.ReservationConflict), "wrong key");
        Assert.That(a.Acquire((ReservationType)7, KeyA), Is.EqualTo(NvmeStatus.InvalidField), "no such type");
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.Success), "the holder again, same type");
        Assert.That(a.Acquire(ReservationType.ExclusiveAccess, KeyA), Is.EqualTo(NvmeStatus.ReservationConflict), "the holder, another type");
        Assert.That(b.Acquire(ReservationType.WriteExclusive, KeyB), Is.EqualTo(NvmeStatus.ReservationConflict), "held by another host");
        Assert.That(a.Report().Generation, Is.EqualTo(2u), "Acquire does not count");
    }

    [Test]
    public async Task Release_of_a_registrants_only_reservation_notifies_the_other_registrants()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        b.Admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 0x501F, 0, default));

        Assert.That(b.Release(ReservationType.WriteExclusiveRegistrantsOnly, KeyB), Is.EqualTo(NvmeStatus.Success), "a non-holder's release is a no-op");
        Assert.That(a.Release(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.InvalidField), "the type must match the one held");
        Assert.That(a.Release(ReservationType.WriteExclusiveRegistrantsOnly, KeyB), Is.EqualTo(NvmeStatus.ReservationConflict), "wrong key");
        Assert.That(a.Release(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Report().Type, Is.EqualTo(ReservationType.None));

        var aen = b.Admin.ReceiveCompletion(0x501F);
        Assert.That(aen.Dw0, Is.EqualTo(AsyncEvent.CompletionDw0(6, 0, 0x80)), "I/O command specific status, reservation log page available, log 80h");
        var notice = b.ReadNotification();
        Assert.That((notice.Type, notice.NamespaceId, notice.Available), Is.EqualTo((ReservationNotificationType.ReservationReleased, 1u, (byte)0)));
        Assert.That(notice.Count, Is.EqualTo(1ul));
        Assert.That(b.ReadNotification(), Is.EqualTo(default(ReservationNotificationEntry)), "read entries are gone: an empty page");
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.Empty), "the releasing host is not notified");
    }

    [Test]
    public async Task Clear_removes_everything_and_tells_the_other_registrants_their_reservation_was_preempted()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.ExclusiveAccess, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.ReadStatus(), Is.EqualTo(NvmeStatus.ReservationConflict));
        Assert.That(b.Release(ReservationType.None, KeyB, ReservationReleaseAction.Clear), Is.EqualTo(NvmeStatus.Success), "any registrant may clear");
        var report = a.Report();
        Assert.That((report.Type, report.RegisteredCount, report.Generation), Is.EqualTo((ReservationType.None, 0, 3u)));
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.ReservationPreempted));
        Assert.That(b.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.Empty));
        Assert.That(b.ReadStatus(), Is.EqualTo(NvmeStatus.Success));
    }

    [Test]
    public async Task Preempt_takes_the_reservation_removes_the_holder_registration_and_notifies_it()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        a.Admin.SendCapsule(TestHost.Command((byte)AdminOpcode.AsyncEventRequest, 0x601F, 0, default));

        Assert.That(b.Acquire(ReservationType.ExclusiveAccess, KeyB, ReservationAcquireAction.Preempt, preemptKey: 0), Is.EqualTo(NvmeStatus.InvalidField), "PRKEY 0 against a holder");
        Assert.That(b.Acquire(ReservationType.ExclusiveAccess, KeyB, ReservationAcquireAction.Preempt, preemptKey: 0x5555), Is.EqualTo(NvmeStatus.ReservationConflict), "no registrant has that key");
        Assert.That(b.Acquire(ReservationType.ExclusiveAccess, KeyB, ReservationAcquireAction.Preempt, preemptKey: KeyA), Is.EqualTo(NvmeStatus.Success));

        var report = b.Report();
        Assert.That(report.Type, Is.EqualTo(ReservationType.ExclusiveAccess));
        Assert.That(report.Hosts, Is.EqualTo(new[] { new RegisteredHost(0xFFFF, true, KeyB, b.Identity.Id) }));
        Assert.That(report.Generation, Is.EqualTo(3u));
        Assert.That(a.Admin.ReceiveCompletion(0x601F).Dw0, Is.EqualTo(AsyncEvent.CompletionDw0(6, 0, 0x80)));
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.RegistrationPreempted));
        Assert.That(a.WriteStatus(), Is.EqualTo(NvmeStatus.ReservationConflict), "the preempted host lost its access");
        Assert.That(a.ReadStatus(), Is.EqualTo(NvmeStatus.ReservationConflict));
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success), "it may register again");
        Assert.That(a.WriteStatus(), Is.EqualTo(NvmeStatus.ReservationConflict), "exclusive access: registrants are not holders");
    }

    [Test]
    public async Task Preempt_by_the_holder_changes_the_type_and_preempt_without_a_reservation_removes_registrations()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.WriteExclusive, KeyB, ReservationAcquireAction.Preempt, preemptKey: KeyA), Is.EqualTo(NvmeStatus.Success),
            "no reservation: PRKEY names the registrations to remove");
        Assert.That(b.Report().Hosts.Select(h => h.HostId), Is.EqualTo(new[] { b.Identity.Id }));
        Assert.That(b.Report().Type, Is.EqualTo(ReservationType.None));
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.RegistrationPreempted));

        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.ExclusiveAccessRegistrantsOnly, KeyB, ReservationAcquireAction.Preempt, preemptKey: KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Report().Type, Is.EqualTo(ReservationType.ExclusiveAccessRegistrantsOnly));
        Assert.That(b.Report().RegisteredCount, Is.EqualTo(2), "the holder changing its type removes nobody");
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.ReservationReleased), "a type change releases the old reservation");
    }

    [Test]
    public async Task Preempt_of_an_all_registrants_reservation_with_key_zero_removes_every_other_registrant()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusiveAllRegistrants, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.WriteExclusiveAllRegistrants, KeyB), Is.EqualTo(NvmeStatus.Success), "every registrant holds it");
        Assert.That(b.Acquire(ReservationType.WriteExclusive, KeyB, ReservationAcquireAction.Preempt, preemptKey: 0), Is.EqualTo(NvmeStatus.Success));
        var report = b.Report();
        Assert.That((report.Type, report.Hosts.Single().HostId), Is.EqualTo((ReservationType.WriteExclusive, b.Identity.Id)));
        Assert.That(a.WriteStatus(), Is.EqualTo(NvmeStatus.ReservationConflict));

        // An All Registrants reservation outlives its acquirer while other registrants remain.
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Release(ReservationType.WriteExclusive, KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.ExclusiveAccessAllRegistrants, KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(0, KeyB, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Report().Type, Is.EqualTo(ReservationType.ExclusiveAccessAllRegistrants));
        Assert.That(b.ReadStatus(), Is.EqualTo(NvmeStatus.ReservationConflict), "no longer a registrant");
        Assert.That(a.Register(0, KeyA, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Report().Type, Is.EqualTo(ReservationType.None), "the last registrant took it with it");
    }

    [Test]
    public async Task The_holder_unregistering_releases_a_registrants_only_reservation()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.ExclusiveAccessRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Register(0, KeyA, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Report().Type, Is.EqualTo(ReservationType.None));
        Assert.That(b.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.ReservationReleased));
    }

    [Test]
    public async Task The_notification_mask_suppresses_a_type_and_lost_notifications_show_as_a_gap()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        var mask = (uint)(1 << (int)ReservationNotificationType.RegistrationPreempted);
        var set = a.Admin.Execute(TestHost.Command((byte)AdminOpcode.SetFeatures, a.Admin.NextCommandId(), 1, default, (uint)FeatureId.ReservationNotificationMask, mask));
        Assert.That(set.Status, Is.EqualTo(NvmeStatus.Success));
        var get = a.Admin.Execute(TestHost.Command((byte)AdminOpcode.GetFeatures, a.Admin.NextCommandId(), 1, default, (uint)FeatureId.ReservationNotificationMask));
        Assert.That(get.Dw0, Is.EqualTo(mask));
        var invalid = a.Admin.Execute(TestHost.Command((byte)AdminOpcode.SetFeatures, a.Admin.NextCommandId(), 1, default, (uint)FeatureId.ReservationNotificationMask, 1));
        Assert.That(invalid.Status, Is.EqualTo(NvmeStatus.InvalidField), "bit 0 is reserved");

        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Acquire(ReservationType.WriteExclusive, KeyB, ReservationAcquireAction.Preempt, preemptKey: KeyA), Is.EqualTo(NvmeStatus.Success),
            "without a reservation, preempting only removes A's registration");
        Assert.That(a.ReadNotification().Type, Is.EqualTo(ReservationNotificationType.Empty), "masked");

        // More notifications than the log keeps: the ones past the capacity are lost and the count skips them.
        for (var i = 0; i < Controllers.Controller.ReservationLogCapacity + 2; i++)
        {
            Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
            Assert.That(a.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
            Assert.That(a.Release(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
            Assert.That(a.Register(0, KeyA, ReservationRegisterAction.Unregister), Is.EqualTo(NvmeStatus.Success));
        }

        var first = b.ReadNotification();
        Assert.That((first.Count, first.Available), Is.EqualTo((1ul, (byte)(Controllers.Controller.ReservationLogCapacity - 1))));
        ReservationNotificationEntry last = first;
        for (var i = 1; i < Controllers.Controller.ReservationLogCapacity; i++)
        {
            last = b.ReadNotification();
        }

        Assert.That(last.Count, Is.EqualTo((ulong)Controllers.Controller.ReservationLogCapacity));
        Assert.That(b.ReadNotification().Count, Is.Zero, "empty now");
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Release(ReservationType.WriteExclusiveRegistrantsOnly, KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.ReadNotification().Count, Is.EqualTo((ulong)Controllers.Controller.ReservationLogCapacity + 3), "two lost: the count has a gap");
    }

    [Test]
    public async Task Preempt_and_abort_ends_the_preempted_host_and_nothing_it_sent_lands_afterwards()
    {
        await using var harness = TargetHarness.Start();
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.WriteExclusive, KeyA), Is.EqualTo(NvmeStatus.Success));

        // A starts a write that needs R2T and sends only its first half.
        const int length = 64 * 1024;
        var data = Enumerable.Range(0, length).Select(i => (byte)(i * 7 + 1)).ToArray();
        var cid = a.Io.NextCommandId();
        a.Io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, cid, 1, TestHost.Transport(length), 100, 0, TestHost.BlockCountField(length, TargetHarness.BlockSize)));
        var r2t = a.Io.ReceivePdu().AsDataTransfer();
        a.Io.Send(a.Io.BuildH2CData(cid, r2t.TransferTag, 0, data.AsSpan(0, length / 2), last: false));
        // Commands of a queue run in order, so once a later Flush completed the first half is in.
        Assert.That(a.FlushStatus(), Is.EqualTo(NvmeStatus.Success));

        Assert.That(b.Acquire(ReservationType.ExclusiveAccess, KeyB, ReservationAcquireAction.PreemptAndAbort, preemptKey: KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Io.WaitClosed(TimeSpan.FromSeconds(10)), Is.True, "the preempted host's I/O queue is gone");
        Assert.That(a.Admin.WaitClosed(TimeSpan.FromSeconds(10)), Is.True, "and its admin queue");

        // Whatever A sends now is too late.
        try
        {
            a.Io.Send(a.Io.BuildH2CData(cid, r2t.TransferTag, length / 2, data.AsSpan(length / 2), last: true));
        }
        catch (System.Net.Sockets.SocketException)
        {
        }

        var onDisk = new byte[length];
        harness.Volume.Read(100L * TargetHarness.BlockSize, onDisk);
        Assert.That(onDisk.AsSpan(length / 2).ToArray().All(x => x == 0), Is.True, "the second half never landed");
        Assert.That(b.Report().Hosts.Single().HostId, Is.EqualTo(b.Identity.Id));
        Assert.That(b.WriteStatus(), Is.EqualTo(NvmeStatus.Success));

        // A comes back as a new controller: no longer registered, and B's exclusive access keeps it out.
        using var again = ReservationHost.Connect(harness, a.Identity);
        Assert.That(again.WriteStatus(), Is.EqualTo(NvmeStatus.ReservationConflict));
    }

    [Test]
    public async Task Preempt_and_abort_completes_only_after_the_preempted_host_writes_in_flight_finished()
    {
        DeferredVolume? deferred = null;
        await using var harness = TargetHarness.Start(exportAs: v => deferred = new DeferredVolume(v));
        var (a, b) = TwoHosts(harness);
        using var _ = a;
        using var __ = b;
        Assert.That(a.Register(KeyA), Is.EqualTo(NvmeStatus.Success));
        Assert.That(b.Register(KeyB), Is.EqualTo(NvmeStatus.Success));
        var writeCid = a.Io.NextCommandId();
        a.Io.SendCapsule(TestHost.Command((byte)IoOpcode.Write, writeCid, 1, TestHost.InCapsule(512), 0, 0, 0), new byte[512]);
        Assert.That(deferred!.WaitHeld(1, TimeSpan.FromSeconds(10)), Is.True, "A's write waits for its replicas");

        var preempt = b.Start(IoOpcode.ReservationAcquire, new ReservationCommandFields((byte)ReservationAcquireAction.PreemptAndAbort, false, (byte)ReservationType.WriteExclusive, 0), new ReservationKeys(KeyB, KeyA));
        b.Io.Socket.ReceiveTimeout = 500;
        Assert.That(() => b.Io.ReceivePdu(), Throws.InstanceOf<System.Net.Sockets.SocketException>(), "not complete while A's write is in flight");
        b.Io.Socket.ReceiveTimeout = (int)TestHost.ReadTimeout.TotalMilliseconds;

        deferred.ReleaseAll();
        Assert.That(b.Io.ReceiveCompletion(preempt).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(deferred.Held, Is.Zero);
    }
}
