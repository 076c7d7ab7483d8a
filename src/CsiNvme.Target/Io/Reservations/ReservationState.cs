using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Reservations;

namespace CsiNvme.Target.Io.Reservations;

/// <summary>A host registered with a namespace: its 128-bit host identifier (from Connect) and its reservation key.</summary>
public readonly record struct Registrant(Guid HostId, ulong Key);

/// <summary>A notification the controllers of <see cref="HostId"/> get (their Reservation Notification logs).</summary>
internal readonly record struct ReservationNotice(Guid HostId, ReservationNotificationType Type);

/// <summary>What a reservation command did: its status, whether the state changed, whom to notify and whose commands to abort.</summary>
internal readonly record struct ReservationOutcome(NvmeStatus Status, bool Changed, IReadOnlyList<ReservationNotice> Notices, IReadOnlyList<Guid> Preempted)
{
    public static readonly ReservationOutcome Unchanged = new(NvmeStatus.Success, false, [], []);

    public static ReservationOutcome Refused(NvmeStatus status) => new(status, false, [], []);
}

/// <summary>
/// The reservation state of one namespace (NVMe base 2.0, 8.19; NVM command set 1.0, 3.2.4–3.2.6) and the rules of
/// the Register, Acquire and Release commands, as a plain state machine: no locking, no I/O, no controllers. The
/// caller (<see cref="NamespaceReservations"/>) serializes calls, persists changes and delivers notifications.
/// </summary>
/// <remarks>
/// Registrants are hosts, keyed by host identifier: every controller of a host shares its registration (NVMe base 2.0,
/// 8.19.1). A reservation is held by one registrant, or, for the All Registrants types, by every registrant at once.
/// Where the specification leaves a choice the behaviour follows the Linux target (drivers/nvme/target/pr.c), the
/// peer Linux hosts are most often tested against: Ignore Existing Key is refused on Acquire and Release, and Replace
/// requires an existing registration.
/// </remarks>
public sealed class ReservationState
{
    private readonly List<Registrant> _registrants = [];

    public ReservationType Type { get; private set; }

    /// <summary>The holder of a reservation of a type other than the All Registrants ones; empty otherwise.</summary>
    public Guid Holder { get; private set; }

    /// <summary>GEN: bumped by every successful Register, Preempt and Clear (NVM command set 1.0, Figure 62).</summary>
    public uint Generation { get; private set; }

    /// <summary>The Persist Through Power Loss state (PTPLS).</summary>
    public bool PersistThroughPowerLoss { get; private set; }

    /// <summary>Registrants in registration order.</summary>
    public IReadOnlyList<Registrant> Registrants => _registrants;

    public static bool IsAllRegistrants(ReservationType type) =>
        type is ReservationType.WriteExclusiveAllRegistrants or ReservationType.ExclusiveAccessAllRegistrants;

    private static bool IsRegistrantsOnly(ReservationType type) =>
        type is ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.ExclusiveAccessRegistrantsOnly;

    /// <summary>Rebuilds a state from its parts (the persisted form); the parts must be consistent (see <see cref="ReservationStateCodec"/>).</summary>
    public static ReservationState From(ReservationType type, Guid holder, uint generation, bool persistThroughPowerLoss, IEnumerable<Registrant> registrants)
    {
        var state = new ReservationState
        {
            Type = type,
            Holder = type == ReservationType.None || IsAllRegistrants(type) ? Guid.Empty : holder,
            Generation = generation,
            PersistThroughPowerLoss = persistThroughPowerLoss,
        };
        state._registrants.AddRange(registrants);
        return state;
    }

    public bool IsRegistered(Guid host) => IndexOf(host) >= 0;

    /// <summary>True when <paramref name="host"/> holds the reservation (every registrant does under an All Registrants type).</summary>
    public bool IsHolder(Guid host) =>
        Type != ReservationType.None && (IsAllRegistrants(Type) ? IsRegistered(host) : Holder == host);

    /// <summary>Power on with PTPL cleared: reservations are released and registrants cleared (NVM command set 1.0, 3.2.5).</summary>
    public void PowerOn()
    {
        if (PersistThroughPowerLoss)
        {
            return;
        }

        _registrants.Clear();
        Type = ReservationType.None;
        Holder = Guid.Empty;
    }

    /// <summary>Sets PTPL (Set Features, Reservation Persistence); true when it changed.</summary>
    public bool SetPersistThroughPowerLoss(bool value)
    {
        var changed = PersistThroughPowerLoss != value;
        PersistThroughPowerLoss = value;
        return changed;
    }

    /// <summary>Reservation Register (NVM command set 1.0, 3.2.5; NVMe base 2.0, 8.19.4 and 8.19.5).</summary>
    /// <param name="ptplSupported">False when the namespace cannot persist its state: CPTPL 11b is then refused.</param>
    internal ReservationOutcome Register(Guid host, ReservationCommandFields fields, ReservationKeys keys, bool ptplSupported)
    {
        // CPTPL 01b is reserved; 11b needs a place to persist to.
        if (fields.ChangePtpl == 1 || (fields.ChangePtpl == 3 && !ptplSupported))
        {
            return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        var index = IndexOf(host);
        var notices = new List<ReservationNotice>();
        switch ((ReservationRegisterAction)fields.Action)
        {
            case ReservationRegisterAction.Register:
                if (index >= 0)
                {
                    // Registering again with the same key is a no-op that succeeds; another key conflicts.
                    if (_registrants[index].Key != keys.Other)
                    {
                        return ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
                    }
                }
                else
                {
                    _registrants.Add(new Registrant(host, keys.Other));
                }

                break;
            case ReservationRegisterAction.Unregister:
                if (index < 0 || (!fields.IgnoreExistingKey && _registrants[index].Key != keys.Current))
                {
                    return ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
                }

                RemoveRegistrant(index, notices);
                break;
            case ReservationRegisterAction.Replace:
                if (index < 0 || (!fields.IgnoreExistingKey && _registrants[index].Key != keys.Current))
                {
                    return ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
                }

                _registrants[index] = new Registrant(host, keys.Other);
                break;
            default:
                return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        if (fields.ChangePtpl is 2 or 3)
        {
            PersistThroughPowerLoss = fields.ChangePtpl == 3;
        }

        Generation++;
        return new ReservationOutcome(NvmeStatus.Success, true, notices, []);
    }

    /// <summary>Reservation Acquire (NVM command set 1.0, 3.2.4; NVMe base 2.0, 8.19.6 and 8.19.7, Figure 428).</summary>
    internal ReservationOutcome Acquire(Guid host, ReservationCommandFields fields, ReservationKeys keys)
    {
        var type = (ReservationType)fields.Type;
        if (fields.IgnoreExistingKey || type is < ReservationType.WriteExclusive or > ReservationType.ExclusiveAccessAllRegistrants
            || fields.Action > (byte)ReservationAcquireAction.PreemptAndAbort)
        {
            return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        var index = IndexOf(host);
        if (index < 0 || _registrants[index].Key != keys.Current)
        {
            return ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
        }

        if ((ReservationAcquireAction)fields.Action == ReservationAcquireAction.Acquire)
        {
            if (Type == ReservationType.None)
            {
                SetHolder(host, type);
                return new ReservationOutcome(NvmeStatus.Success, true, [], []);
            }

            // The holder acquiring again with the same type succeeds; anything else conflicts.
            return IsHolder(host) && Type == type ? ReservationOutcome.Unchanged : ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
        }

        var outcome = Preempt(host, type, keys.Other);
        if (outcome.Status.IsSuccess)
        {
            Generation++;
        }

        return outcome;
    }

    /// <summary>Reservation Release (NVM command set 1.0, 3.2.6; NVMe base 2.0, 8.19.8 and 8.19.9).</summary>
    internal ReservationOutcome Release(Guid host, ReservationCommandFields fields, ReservationKeys keys)
    {
        if (fields.IgnoreExistingKey || fields.Action > (byte)ReservationReleaseAction.Clear)
        {
            return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        var index = IndexOf(host);
        if (index < 0 || _registrants[index].Key != keys.Current)
        {
            return ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
        }

        var notices = new List<ReservationNotice>();
        if ((ReservationReleaseAction)fields.Action == ReservationReleaseAction.Clear)
        {
            // Every registration and the reservation go; the other registrants learn their reservation was preempted.
            foreach (var registrant in _registrants)
            {
                if (registrant.HostId != host)
                {
                    notices.Add(new ReservationNotice(registrant.HostId, ReservationNotificationType.ReservationPreempted));
                }
            }

            _registrants.Clear();
            Type = ReservationType.None;
            Holder = Guid.Empty;
            Generation++;
            return new ReservationOutcome(NvmeStatus.Success, true, notices, []);
        }

        // Releasing without holding the reservation is a successful no-op; the type must match the one held.
        if (!IsHolder(host))
        {
            return ReservationOutcome.Unchanged;
        }

        if ((ReservationType)fields.Type != Type)
        {
            return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        var released = Type;
        Type = ReservationType.None;
        Holder = Guid.Empty;
        if (released is not (ReservationType.WriteExclusive or ReservationType.ExclusiveAccess))
        {
            NotifyOthers(host, ReservationNotificationType.ReservationReleased, notices);
        }

        return new ReservationOutcome(NvmeStatus.Success, true, notices, []);
    }

    /// <summary>
    /// Whether the reservation forbids <paramref name="host"/> a command of the read or the write group (NVMe base
    /// 2.0, 8.19.1, Figure 426). Writes include Flush, Write Zeroes and Dataset Management.
    /// </summary>
    public static bool Refuses(ReservationType type, bool isHolder, bool isRegistrant, bool isWrite) => type switch
    {
        ReservationType.None => false,
        _ when isHolder => false,
        ReservationType.WriteExclusive => isWrite,
        ReservationType.ExclusiveAccess => true,
        ReservationType.WriteExclusiveRegistrantsOnly or ReservationType.WriteExclusiveAllRegistrants => isWrite && !isRegistrant,
        _ => !isRegistrant,
    };

    private ReservationOutcome Preempt(Guid host, ReservationType type, ulong preemptKey)
    {
        var notices = new List<ReservationNotice>();
        var preempted = new List<Guid>();
        if (Type == ReservationType.None)
        {
            // No reservation: the registrations with PRKEY go (the issuer's own included, without a notice to it).
            return RemoveByKey(host, preemptKey, includeIssuer: true, notices, preempted)
                ? new ReservationOutcome(NvmeStatus.Success, true, notices, preempted)
                : ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
        }

        if (IsAllRegistrants(Type))
        {
            if (preemptKey == 0)
            {
                // PRKEY 0 under an All Registrants reservation: the issuer takes a new reservation and every other
                // registration goes.
                SetHolder(host, type);
                for (var i = _registrants.Count - 1; i >= 0; i--)
                {
                    if (_registrants[i].HostId != host)
                    {
                        preempted.Add(_registrants[i].HostId);
                        notices.Add(new ReservationNotice(_registrants[i].HostId, ReservationNotificationType.RegistrationPreempted));
                        _registrants.RemoveAt(i);
                    }
                }

                return new ReservationOutcome(NvmeStatus.Success, true, notices, preempted);
            }

            return RemoveByKey(host, preemptKey, includeIssuer: true, notices, preempted)
                ? new ReservationOutcome(NvmeStatus.Success, true, notices, preempted)
                : ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
        }

        var previousType = Type;
        if (Holder == host)
        {
            // The holder preempting itself changes the type.
            Type = type;
            if (previousType != type)
            {
                NotifyOthers(host, ReservationNotificationType.ReservationReleased, notices);
            }

            return new ReservationOutcome(NvmeStatus.Success, true, notices, []);
        }

        var holderIndex = IndexOf(Holder);
        if (holderIndex >= 0 && _registrants[holderIndex].Key == preemptKey)
        {
            // PRKEY is the holder's key: the issuer becomes the holder first, so no other host gets in between, then
            // every other registration with that key goes.
            SetHolder(host, type);
            RemoveByKey(host, preemptKey, includeIssuer: false, notices, preempted);
            if (previousType != type)
            {
                NotifyOthers(host, ReservationNotificationType.ReservationReleased, notices);
            }

            return new ReservationOutcome(NvmeStatus.Success, true, notices, preempted);
        }

        if (preemptKey == 0)
        {
            return ReservationOutcome.Refused(NvmeStatus.InvalidField);
        }

        return RemoveByKey(host, preemptKey, includeIssuer: true, notices, preempted)
            ? new ReservationOutcome(NvmeStatus.Success, true, notices, preempted)
            : ReservationOutcome.Refused(NvmeStatus.ReservationConflict);
    }

    /// <summary>Removes the registrations with <paramref name="key"/>; false when there was none.</summary>
    private bool RemoveByKey(Guid issuer, ulong key, bool includeIssuer, List<ReservationNotice> notices, List<Guid> preempted)
    {
        var found = false;
        for (var i = _registrants.Count - 1; i >= 0; i--)
        {
            var registrant = _registrants[i];
            if (registrant.Key != key || (!includeIssuer && registrant.HostId == issuer))
            {
                continue;
            }

            found = true;
            RemoveRegistrant(i, notices);
            if (registrant.HostId != issuer)
            {
                preempted.Add(registrant.HostId);
                notices.Add(new ReservationNotice(registrant.HostId, ReservationNotificationType.RegistrationPreempted));
            }
        }

        return found;
    }

    /// <summary>
    /// Removes a registration. A holder that goes takes its reservation with it, except under an All Registrants type
    /// while other registrants remain; a Registrants Only reservation going tells the remaining registrants.
    /// </summary>
    private void RemoveRegistrant(int index, List<ReservationNotice> notices)
    {
        var host = _registrants[index].HostId;
        _registrants.RemoveAt(index);
        if (Type == ReservationType.None)
        {
            return;
        }

        if (IsAllRegistrants(Type))
        {
            if (_registrants.Count == 0)
            {
                Type = ReservationType.None;
            }

            return;
        }

        if (Holder != host)
        {
            return;
        }

        var released = Type;
        Type = ReservationType.None;
        Holder = Guid.Empty;
        if (IsRegistrantsOnly(released))
        {
            NotifyOthers(host, ReservationNotificationType.ReservationReleased, notices);
        }
    }

    private void SetHolder(Guid host, ReservationType type)
    {
        Type = type;
        Holder = IsAllRegistrants(type) ? Guid.Empty : host;
    }

    private void NotifyOthers(Guid host, ReservationNotificationType type, List<ReservationNotice> notices)
    {
        foreach (var registrant in _registrants)
        {
            if (registrant.HostId != host)
            {
                notices.Add(new ReservationNotice(registrant.HostId, type));
            }
        }
    }

    private int IndexOf(Guid host)
    {
        for (var i = 0; i < _registrants.Count; i++)
        {
            if (_registrants[i].HostId == host)
            {
                return i;
            }
        }

        return -1;
    }
}
