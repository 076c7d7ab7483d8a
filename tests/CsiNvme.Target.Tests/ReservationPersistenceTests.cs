using CsCheck;
using CsiNvme.Protocol.Identify;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Subsystems;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Reservations that survive a restart of the target: every change is saved before its command completes, PTPL
/// decides what a power on keeps, and the saved form decodes to exactly the state that was saved.
/// </summary>
public sealed class ReservationPersistenceTests
{
    private const ulong KeyA = 0xA1;
    private const ulong KeyB = 0xB2;
    private const uint Nsid = 2;

    /// <summary>Adds namespace 2 to the harness subsystem with its reservations loaded from <paramref name="store"/>, as a start of the server does.</summary>
    private static async Task<TargetNamespace> AddPersistentNamespaceAsync(TargetHarness harness, MemoryReservationStore store, Guid uuid, bool powerOn = true)
    {
        var ns = new TargetNamespace(Nsid, harness.NewVolume(), uuid) { Reservations = await NamespaceReservations.LoadAsync(uuid, store, powerOn) };
        harness.Subsystem.AddNamespace(ns);
        return ns;
    }

    [Test]
    public async Task A_change_completes_only_once_saved_and_the_state_survives_a_restart_with_ptpl()
    {
        await using var harness = TargetHarness.Start();
        var store = new MemoryReservationStore();
        var uuid = Guid.NewGuid();
        await AddPersistentNamespaceAsync(harness, store, uuid);
        var hostB = NvmeHostIdentity.Create();
        using (var a = ReservationHost.Connect(harness, harness.Host))
        using (var b = ReservationHost.Connect(harness, hostB))
        {
            var rescap = IdentifyNamespace.Read(a.Admin.Identify((byte)IdentifyCns.Namespace, Nsid).Data).ReservationCapabilities;
            Assert.That(rescap, Is.EqualTo(0xFF), "PTPL supported where a store persists the state");

            store.Hold();
            var cid = a.Start(IoOpcode.ReservationRegister, new ReservationCommandFields(0, false, 0, ChangePtpl: 3), new ReservationKeys(0, KeyA), Nsid);
            a.Io.Socket.ReceiveTimeout = 500;
            Assert.That(() => a.Io.ReceivePdu(), Throws.InstanceOf<System.Net.Sockets.SocketException>(), "no completion before the save");
            a.Io.Socket.ReceiveTimeout = (int)TestHost.ReadTimeout.TotalMilliseconds;
            Assert.That(a.ReadStatus(Nsid), Is.EqualTo(NvmeStatus.Success), "the queue keeps serving while the save is pending");
            store.Release();
            Assert.That(a.Io.ReceiveCompletion(cid).Status, Is.EqualTo(NvmeStatus.Success));
            Assert.That(store.Saved(uuid), Is.Not.Null);

            Assert.That(b.Register(KeyB, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));
            Assert.That(a.Acquire(ReservationType.WriteExclusiveRegistrantsOnly, KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));
            var ptpl = a.Admin.Execute(TestHost.Command((byte)AdminOpcode.GetFeatures, a.Admin.NextCommandId(), Nsid, default, (uint)FeatureId.ReservationPersistence));
            Assert.That(ptpl.Dw0, Is.EqualTo(1u), "Get Features 83h: PTPL set by CPTPL");
        }

        // The server restarts: the namespace is recreated from the store.
        Assert.That(harness.Subsystem.RemoveNamespace(Nsid), Is.True);
        await AddPersistentNamespaceAsync(harness, store, uuid);
        using var c = ReservationHost.Connect(harness, NvmeHostIdentity.Create());
        using var b2 = ReservationHost.Connect(harness, hostB);
        var report = c.Report(Nsid);
        Assert.That(report.Type, Is.EqualTo(ReservationType.WriteExclusiveRegistrantsOnly));
        Assert.That(report.PersistThroughPowerLoss, Is.True);
        Assert.That(report.Generation, Is.EqualTo(2u));
        Assert.That(report.Hosts, Is.EqualTo(new[]
        {
            new RegisteredHost(0xFFFF, true, KeyA, harness.Host.Id),
            new RegisteredHost(0xFFFF, false, KeyB, hostB.Id),
        }));
        Assert.That(c.WriteStatus(Nsid), Is.EqualTo(NvmeStatus.ReservationConflict), "still enforced after the restart");
        Assert.That(b2.WriteStatus(Nsid), Is.EqualTo(NvmeStatus.Success), "a registrant writes");
    }

    [Test]
    public async Task Without_ptpl_a_power_on_clears_the_state_but_a_failover_keeps_it()
    {
        await using var harness = TargetHarness.Start();
        var store = new MemoryReservationStore();
        var uuid = Guid.NewGuid();
        await AddPersistentNamespaceAsync(harness, store, uuid);
        using (var a = ReservationHost.Connect(harness, harness.Host))
        {
            Assert.That(a.Register(KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));
            Assert.That(a.Acquire(ReservationType.ExclusiveAccess, KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));
        }

        Assert.That(store.Saves, Is.EqualTo(2), "saved even without PTPL, for a failover");
        harness.Subsystem.RemoveNamespace(Nsid);
        await AddPersistentNamespaceAsync(harness, store, uuid, powerOn: false);
        using (var b = ReservationHost.Connect(harness, NvmeHostIdentity.Create()))
        {
            Assert.That(b.Report(Nsid).Type, Is.EqualTo(ReservationType.ExclusiveAccess), "moved to another node: nothing was powered off");
        }

        harness.Subsystem.RemoveNamespace(Nsid);
        await AddPersistentNamespaceAsync(harness, store, uuid, powerOn: true);
        using var c = ReservationHost.Connect(harness, NvmeHostIdentity.Create());
        var report = c.Report(Nsid);
        Assert.That((report.Type, report.RegisteredCount, report.PersistThroughPowerLoss), Is.EqualTo((ReservationType.None, 0, false)), "PTPL clear: released and cleared on power on");
        Assert.That(report.Generation, Is.EqualTo(1u), "the generation counter survives (the Register; Acquire does not count)");
    }

    [Test]
    public async Task Set_features_changes_ptpl_only_where_it_can_persist_and_a_failed_save_is_retried()
    {
        await using var harness = TargetHarness.Start();
        var store = new MemoryReservationStore();
        var uuid = Guid.NewGuid();
        await AddPersistentNamespaceAsync(harness, store, uuid);
        using var a = ReservationHost.Connect(harness, harness.Host);

        NvmeStatus SetPtpl(uint nsid, uint value) =>
            a.Admin.Execute(TestHost.Command((byte)AdminOpcode.SetFeatures, a.Admin.NextCommandId(), nsid, default, (uint)FeatureId.ReservationPersistence, value)).Status;

        Assert.That(SetPtpl(1, 1), Is.EqualTo(NvmeStatus.InvalidField), "namespace 1 has no store");
        Assert.That(SetPtpl(Nsid, 1), Is.EqualTo(NvmeStatus.Success));
        Assert.That(ReservationStateCodec.Decode(store.Saved(uuid)).PersistThroughPowerLoss, Is.True, "durable when Set Features completed");
        var capabilities = a.Admin.Execute(TestHost.Command((byte)AdminOpcode.GetFeatures, a.Admin.NextCommandId(), Nsid, default, (uint)FeatureId.ReservationPersistence | (3u << 8)));
        Assert.That(capabilities.Dw0, Is.EqualTo(6u), "namespace specific, changeable");

        store.Failing = true;
        var failed = a.Register(KeyA, nsid: Nsid);
        Assert.That(failed, Is.EqualTo(NvmeStatus.NamespaceNotReady), "a failed save fails the command, retryably");
        Assert.That(failed.DoNotRetry, Is.False);
        store.Failing = false;
        Assert.That(a.Register(KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success), "the retry finds itself registered and saves the state");
        Assert.That(ReservationStateCodec.Decode(store.Saved(uuid)).Registrants.Single().Key, Is.EqualTo(KeyA));
    }

    [Test]
    public async Task A_node_whose_path_is_inaccessible_refuses_reservation_commands_and_reloads_the_state_when_promoted()
    {
        await using var harness = TargetHarness.Start();
        var store = new MemoryReservationStore();
        var uuid = Guid.NewGuid();
        await AddPersistentNamespaceAsync(harness, store, uuid);

        // A second subsystem exporting the same namespace stands for another storage node, whose path is inaccessible.
        const string otherNqn = "nqn.2024-01.io.csinvme:other-node";
        var other = harness.Target.AddSubsystem(new Subsystem(otherNqn, "sn-other", allowAnyHost: true) { AnaGroupId = 2 });
        var otherNamespace = new TargetNamespace(Nsid, harness.NewVolume(), uuid) { Reservations = await NamespaceReservations.LoadAsync(uuid, store, powerOn: false) };
        other.AddNamespace(otherNamespace);
        other.SetAnaState(Protocol.Logs.AnaState.Inaccessible);

        using var a = ReservationHost.Connect(harness, harness.Host);
        Assert.That(a.Register(KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));
        Assert.That(a.Acquire(ReservationType.ExclusiveAccess, KeyA, nsid: Nsid), Is.EqualTo(NvmeStatus.Success));

        using var admin = harness.Initialize();
        Assert.That(admin.ConnectAdmin(otherNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        admin.Enable();
        using var io = harness.Initialize();
        Assert.That(io.ConnectIo(1, admin.ControllerId, otherNqn, harness.Host.Nqn, harness.Host.Id).Status, Is.EqualTo(NvmeStatus.Success));
        Assert.That(io.Execute(TestHost.Command((byte)IoOpcode.ReservationReport, io.NextCommandId(), Nsid, TestHost.Transport(4096), 1023, 1)).Status,
            Is.EqualTo(NvmeStatus.AsymmetricAccessInaccessible), "a path status: the host's multipath goes to the accessible path");

        // Promotion: the node reloads what the other node saved, then serves.
        await otherNamespace.Reservations.ReloadAsync();
        other.SetAnaState(Protocol.Logs.AnaState.Optimized);
        var reloaded = io.Execute(TestHost.Command((byte)IoOpcode.ReservationReport, io.NextCommandId(), Nsid, TestHost.Transport(4096), 1023, 1));
        Assert.That(reloaded.Status, Is.EqualTo(NvmeStatus.Success));
        var parsed = ReservationStatusExtended.Parse(reloaded.Data);
        Assert.That((parsed.Type, parsed.Hosts.Single().HostId, parsed.Hosts.Single().HoldsReservation), Is.EqualTo((ReservationType.ExclusiveAccess, harness.Host.Id, true)));
        Assert.That(io.Read(Nsid, 0, TargetHarness.BlockSize, TargetHarness.BlockSize).Status, Is.EqualTo(NvmeStatus.Success), "the holder reads on the new path");
    }

    private static readonly Gen<ReservationState> States =
        Gen.Select(Gen.Guid.Array[0, 12], Gen.ULong, Gen.UInt, Gen.Bool, Gen.Enum<ReservationType>(), Gen.Int[0, 100])
            .Select((hosts, keySeed, generation, ptpl, type, pick) =>
            {
                var distinct = hosts.Distinct().ToArray();
                var registrants = distinct.Select((h, i) => new Registrant(h, keySeed * (ulong)(i + 1))).ToArray();
                if (registrants.Length == 0)
                {
                    type = ReservationType.None;
                }

                var holder = type == ReservationType.None || ReservationState.IsAllRegistrants(type) ? Guid.Empty : registrants[pick % registrants.Length].HostId;
                return ReservationState.From(type, holder, generation, ptpl, registrants);
            });

    private static void AssertSame(ReservationState actual, ReservationState expected)
    {
        Assert.That(actual.Type, Is.EqualTo(expected.Type));
        Assert.That(actual.Holder, Is.EqualTo(expected.Holder));
        Assert.That(actual.Generation, Is.EqualTo(expected.Generation));
        Assert.That(actual.PersistThroughPowerLoss, Is.EqualTo(expected.PersistThroughPowerLoss));
        Assert.That(actual.Registrants, Is.EqualTo(expected.Registrants));
    }

    [Test]
    public void The_state_blob_round_trips() =>
        States.Sample(state => AssertSame(ReservationStateCodec.Decode(ReservationStateCodec.Encode(state)), state));

    [Test]
    public void A_damaged_blob_is_refused_never_misread() =>
        Gen.Select(States, Gen.Int, Gen.Byte[1, 255]).Sample((state, at, flip) =>
        {
            var blob = ReservationStateCodec.Encode(state);
            blob[(int)((uint)at % (uint)blob.Length)] ^= flip;
            Assert.That(() => ReservationStateCodec.Decode(blob), Throws.InstanceOf<InvalidDataException>());
        });

    [Test]
    public void A_truncated_or_foreign_blob_is_refused() =>
        Gen.Select(States, Gen.Int, Gen.Byte.Array[0, 64]).Sample((state, cut, garbage) =>
        {
            var blob = ReservationStateCodec.Encode(state);
            var truncated = blob.AsSpan(0, (int)((uint)cut % (uint)blob.Length)).ToArray();
            Assert.That(() => ReservationStateCodec.Decode(truncated), Throws.InstanceOf<InvalidDataException>());
            Assert.That(() => ReservationStateCodec.Decode(garbage), Throws.InstanceOf<InvalidDataException>());
        });
}
