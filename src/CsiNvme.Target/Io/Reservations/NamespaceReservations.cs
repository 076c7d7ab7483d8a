using CsiNvme.Protocol.Reservations;

namespace CsiNvme.Target.Io.Reservations;

/// <summary>
/// The reservations of one namespace: its <see cref="ReservationState"/> behind a lock, the snapshot the I/O path
/// checks without one, and the persistence of every change.
/// </summary>
/// <remarks>
/// Every change is saved to the <see cref="IReservationStore"/>, and a command that changed the state (or found it not
/// yet durable after a failed save) completes only once a save covering it succeeded: versions count the changes, and
/// saves are serialized and write the latest state, so one save can cover several commands. The state is saved
/// whatever PTPL says, so that in a cluster a new primary takes over the reservations as they were; PTPL decides what a
/// power on (a start of the server) does with them: kept when set, released and cleared when not (NVM command set 1.0,
/// 3.2.5). Without a store the namespace cannot persist: PTPL is neither reported (RESCAP bit 0) nor accepted.
/// </remarks>
public sealed class NamespaceReservations
{
    // RESCAP (NVM command set 1.0, Figure 97 byte 31): bits 1–6 the six reservation types, bit 7 IEKEY as defined in
    // revision 1.3 and later, bit 0 Persist Through Power Loss.
    private const byte CapabilityPersistThroughPowerLoss = 0x01;
    private const byte CapabilityAllTypesAndIekey = 0xFE;

    private readonly object _gate = new();
    private ReservationState _state;
    private readonly IReservationStore? _store;
    private readonly Guid _namespaceUuid;
    private readonly SemaphoreSlim _saving = new(1, 1);
    private AccessSnapshot? _access;
    private long _version;
    private long _durableVersion;

    /// <summary>Reservations kept in memory only (no PTPL).</summary>
    public NamespaceReservations()
        : this(Guid.Empty, new ReservationState(), null)
    {
    }

    private NamespaceReservations(Guid namespaceUuid, ReservationState state, IReservationStore? store)
    {
        _namespaceUuid = namespaceUuid;
        _state = state;
        _store = store;
        _access = AccessSnapshot.Of(state);
    }

    /// <summary>
    /// Loads the namespace's saved state from <paramref name="store"/>, which then receives every change.
    /// <paramref name="powerOn"/>: the target starts (a power on): without PTPL the loaded reservations are cleared.
    /// False when the namespace moves to another node of a cluster, where nothing was powered off.
    /// </summary>
    /// <exception cref="InvalidDataException">The saved state is corrupt.</exception>
    public static async Task<NamespaceReservations> LoadAsync(Guid namespaceUuid, IReservationStore store, bool powerOn = true, CancellationToken cancellationToken = default)
    {
        var blob = await store.LoadAsync(namespaceUuid, cancellationToken).ConfigureAwait(false);
        var state = blob is null ? new ReservationState() : ReservationStateCodec.Decode(blob);
        if (powerOn)
        {
            state.PowerOn();
        }

        return new NamespaceReservations(namespaceUuid, state, store);
    }

    /// <summary>
    /// Replaces the state with the one saved in the store: a node that exported the namespace on an inaccessible path
    /// calls it when its path becomes the one that serves (a promotion), since another node changed the state since.
    /// Commands are not served meanwhile: the caller reloads before it makes the path accessible.
    /// </summary>
    /// <exception cref="InvalidDataException">The saved state is corrupt.</exception>
    public async Task ReloadAsync(bool powerOn = false, CancellationToken cancellationToken = default)
    {
        var store = _store ?? throw new InvalidOperationException("these reservations have no store to reload from");

        // Saves are held off, so none of an older state lands after the load.
        await _saving.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var blob = await store.LoadAsync(_namespaceUuid, cancellationToken).ConfigureAwait(false);
            var state = blob is null ? new ReservationState() : ReservationStateCodec.Decode(blob);
            if (powerOn)
            {
                state.PowerOn();
            }

            lock (_gate)
            {
                _state = state;
                _version++;
                Volatile.Write(ref _durableVersion, _version);
                Volatile.Write(ref _access, AccessSnapshot.Of(state));
            }
        }
        finally
        {
            _saving.Release();
        }
    }

    /// <summary>True when changes persist (a store is attached), so PTPL may be set.</summary>
    public bool CanPersist => _store is not null;

    /// <summary>RESCAP of Identify Namespace.</summary>
    public byte Capabilities => (byte)(CapabilityAllTypesAndIekey | (CanPersist ? CapabilityPersistThroughPowerLoss : 0));

    /// <summary>The current state, copied (for reports and tests).</summary>
    public ReservationState Snapshot()
    {
        lock (_gate)
        {
            return ReservationState.From(_state.Type, _state.Holder, _state.Generation, _state.PersistThroughPowerLoss, _state.Registrants);
        }
    }

    /// <summary>
    /// Whether the reservation forbids <paramref name="host"/> a command of the read or write group. Lock-free: one
    /// field read when no reservation is held.
    /// </summary>
    public bool Refuses(Guid host, bool isWrite)
    {
        var access = Volatile.Read(ref _access);
        return access is not null && access.Refuses(host, isWrite);
    }

    /// <summary>
    /// Runs a command against the state under the lock. Returns its outcome and the version that must be durable before
    /// the command completes successfully.
    /// </summary>
    internal (ReservationOutcome Outcome, long Version) Apply(Func<ReservationState, ReservationOutcome> command)
    {
        lock (_gate)
        {
            var outcome = command(_state);
            if (outcome.Changed)
            {
                _version++;
                Volatile.Write(ref _access, AccessSnapshot.Of(_state));
            }

            return (outcome, _version);
        }
    }

    /// <summary>Sets PTPL (Set Features, Reservation Persistence); returns the version to wait for.</summary>
    internal long SetPersistThroughPowerLoss(bool value)
    {
        lock (_gate)
        {
            if (_state.SetPersistThroughPowerLoss(value))
            {
                _version++;
            }

            return _version;
        }
    }

    internal bool PersistThroughPowerLoss
    {
        get
        {
            lock (_gate)
            {
                return _state.PersistThroughPowerLoss;
            }
        }
    }

    /// <summary>True when <paramref name="version"/> is already durable (or there is nothing to persist to).</summary>
    internal bool IsDurable(long version) => _store is null || Volatile.Read(ref _durableVersion) >= version;

    /// <summary>
    /// Completes with true once a save covering <paramref name="version"/> succeeded, false when the save failed (the
    /// state stays changed in memory and not durable; the next command saves it again).
    /// </summary>
    internal Task<bool> WhenDurableAsync(long version) =>
        // A store may do its I/O before its first await; that must never be on a connection's receive loop.
        IsDurable(version) ? s_durable : Task.Run(() => SaveUpToAsync(version));

    private static readonly Task<bool> s_durable = Task.FromResult(true);

    private async Task<bool> SaveUpToAsync(long version)
    {
        await _saving.WaitAsync().ConfigureAwait(false);
        try
        {
            if (IsDurable(version))
            {
                return true;
            }

            byte[] blob;
            long saving;
            lock (_gate)
            {
                blob = ReservationStateCodec.Encode(_state);
                saving = _version;
            }

            await _store!.SaveAsync(_namespaceUuid, blob).ConfigureAwait(false);
            Volatile.Write(ref _durableVersion, saving);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Reported to the host as a retryable failure of its command; the state is saved again by the next one.
            return false;
        }
        finally
        {
            _saving.Release();
        }
    }

    /// <summary>What the I/O path needs of a held reservation, replaced (never changed) at every change.</summary>
    private sealed class AccessSnapshot(ReservationType type, Guid holder, Guid[] registrants)
    {
        public static AccessSnapshot? Of(ReservationState state) =>
            state.Type == ReservationType.None
                ? null
                : new AccessSnapshot(state.Type, state.Holder, state.Registrants.Select(r => r.HostId).ToArray());

        public bool Refuses(Guid host, bool isWrite)
        {
            var registered = Array.IndexOf(registrants, host) >= 0;
            var holds = ReservationState.IsAllRegistrants(type) ? registered : holder == host;
            return ReservationState.Refuses(type, holds, registered, isWrite);
        }
    }
}
