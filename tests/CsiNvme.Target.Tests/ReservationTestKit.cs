using System.Collections.Concurrent;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.TestSupport;

namespace CsiNvme.Target.Tests;

/// <summary>One host on the test subsystem: an admin queue and one I/O queue, and the reservation commands as calls.</summary>
internal sealed class ReservationHost : IDisposable
{
    private const int Bs = TargetHarness.BlockSize;

    private ReservationHost(NvmeHostIdentity identity, TestHost admin, TestHost io)
    {
        Identity = identity;
        Admin = admin;
        Io = io;
    }

    public NvmeHostIdentity Identity { get; }

    public TestHost Admin { get; }

    public TestHost Io { get; }

    /// <summary>Connects <paramref name="identity"/> (allowed on the subsystem first) with one I/O queue.</summary>
    public static ReservationHost Connect(TargetHarness harness, NvmeHostIdentity identity)
    {
        harness.Subsystem.AllowHost(identity.Nqn);
        var admin = harness.ConnectAdmin(host: identity);
        var io = harness.ConnectIo(admin, 1, host: identity);
        return new ReservationHost(identity, admin, io);
    }

    public NvmeStatus Register(ulong newKey, ulong currentKey = 0, ReservationRegisterAction action = ReservationRegisterAction.Register,
        bool ignoreExistingKey = false, byte changePtpl = 0, uint nsid = 1) =>
        Send(IoOpcode.ReservationRegister, new ReservationCommandFields((byte)action, ignoreExistingKey, 0, changePtpl), new ReservationKeys(currentKey, newKey), nsid);

    public NvmeStatus Acquire(ReservationType type, ulong key, ReservationAcquireAction action = ReservationAcquireAction.Acquire, ulong preemptKey = 0, uint nsid = 1) =>
        Send(IoOpcode.ReservationAcquire, new ReservationCommandFields((byte)action, false, (byte)type, 0), new ReservationKeys(key, preemptKey), nsid);

    public NvmeStatus Release(ReservationType type, ulong key, ReservationReleaseAction action = ReservationReleaseAction.Release, uint nsid = 1) =>
        Send(IoOpcode.ReservationRelease, new ReservationCommandFields((byte)action, false, (byte)type, 0), new ReservationKeys(key, 0), nsid);

    /// <summary>Sends a Register/Acquire/Release capsule without waiting for its completion; returns its command id.</summary>
    public ushort Start(IoOpcode opcode, ReservationCommandFields fields, ReservationKeys keys, uint nsid = 1)
    {
        var length = opcode == IoOpcode.ReservationRelease ? ReservationKeys.ReleaseSize : ReservationKeys.RegisterOrAcquireSize;
        var data = new byte[length];
        keys.Write(data);
        var cid = Io.NextCommandId();
        Io.SendCapsule(TestHost.Command((byte)opcode, cid, nsid, TestHost.InCapsule(length), fields.ToCdw10()), data);
        return cid;
    }

    public NvmeStatus Send(IoOpcode opcode, ReservationCommandFields fields, ReservationKeys keys, uint nsid = 1) =>
        Io.ReceiveCompletion(Start(opcode, fields, keys, nsid)).Status;

    public Completion ReportRaw(bool extended = true, int length = 4096, uint nsid = 1) =>
        Io.Execute(TestHost.Command((byte)IoOpcode.ReservationReport, Io.NextCommandId(), nsid, TestHost.Transport(length),
            (uint)(length / 4 - 1), extended ? 1u : 0u));

    public (uint Generation, ReservationType Type, int RegisteredCount, bool PersistThroughPowerLoss, List<RegisteredHost> Hosts) Report(uint nsid = 1)
    {
        var report = ReportRaw(nsid: nsid);
        Assert.That(report.Status, Is.EqualTo(NvmeStatus.Success), "Reservation Report");
        return ReservationStatusExtended.Parse(report.Data);
    }

    public NvmeStatus ReadStatus(uint nsid = 1) => Io.Read(nsid, 0, Bs, Bs).Status;

    public NvmeStatus WriteStatus(uint nsid = 1) => Io.WriteInCapsule(nsid, 0, new byte[Bs], Bs).Status;

    public NvmeStatus FlushStatus(uint nsid = 1) => Io.Execute(TestHost.Command((byte)IoOpcode.Flush, Io.NextCommandId(), nsid, default)).Status;

    public NvmeStatus WriteZeroesStatus(uint nsid = 1) =>
        Io.Execute(TestHost.Command((byte)IoOpcode.WriteZeroes, Io.NextCommandId(), nsid, default, 0, 0, 0)).Status;

    public NvmeStatus DeallocateStatus(uint nsid = 1)
    {
        var range = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(range.AsSpan(4), 1);
        return Io.Execute(TestHost.Command((byte)IoOpcode.DatasetManagement, Io.NextCommandId(), nsid, TestHost.InCapsule(16), 0, 1u << 2), range).Status;
    }

    /// <summary>Reads one Reservation Notification log page (which consumes the entry it returns).</summary>
    public ReservationNotificationEntry ReadNotification()
    {
        var page = Admin.GetLogPage((byte)LogPageId.ReservationNotification, ReservationNotificationEntry.Size);
        Assert.That(page.Status, Is.EqualTo(NvmeStatus.Success), "Get Log Page 80h");
        return ReservationNotificationEntry.Read(page.Data);
    }

    public void Dispose()
    {
        Io.Dispose();
        Admin.Dispose();
    }
}

/// <summary>A reservation store in memory; <see cref="Hold"/> keeps saves pending until <see cref="Release"/>, like a slow metadata store.</summary>
internal sealed class MemoryReservationStore : IReservationStore
{
    private readonly ConcurrentDictionary<Guid, byte[]> _saved = new();
    private TaskCompletionSource? _gate;

    public int Saves;

    public byte[]? Saved(Guid id) => _saved.GetValueOrDefault(id);

    public void Hold() => _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Release() => Interlocked.Exchange(ref _gate, null)?.TrySetResult();

    /// <summary>The next saves fail (a metadata store that is down).</summary>
    public bool Failing { get; set; }

    public Task<byte[]?> LoadAsync(Guid namespaceUuid, CancellationToken cancellationToken = default) =>
        Task.FromResult(_saved.GetValueOrDefault(namespaceUuid));

    public async Task SaveAsync(Guid namespaceUuid, ReadOnlyMemory<byte> state, CancellationToken cancellationToken = default)
    {
        if (_gate is { } gate)
        {
            await gate.Task;
        }

        if (Failing)
        {
            throw new IOException("the store is down");
        }

        _saved[namespaceUuid] = state.ToArray();
        Interlocked.Increment(ref Saves);
    }
}
