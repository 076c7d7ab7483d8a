using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Logs;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Controllers;

/// <summary>
/// A controller's part of reservations: its Reservation Notification log and the event that announces it, the
/// Reservation Notification Mask and Reservation Persistence features, and ending the controller when its host is
/// preempted and aborted.
/// </summary>
internal sealed partial class Controller
{
    /// <summary>Notifications kept unread; one more is lost, which the host sees as a gap in the log page count.</summary>
    internal const int ReservationLogCapacity = 64;

    // Reservation Notification Mask (NVM command set 1.0, 4.1.3.3): bit 1 registration preempted, bit 2 reservation
    // released, bit 3 reservation preempted; a set bit suppresses the notification type.
    private const uint ReservationMaskBits = 0x0E;

    private readonly Queue<ReservationNotificationEntry> _reservationLog = new();
    private readonly Dictionary<uint, uint> _reservationMasks = new();
    private ulong _reservationLogCount;
    private bool _reservationNoticeMasked;

    /// <summary>
    /// Adds a notification to this controller's log, unless the host masked its type for the namespace, and raises
    /// "Reservation Log Page Available" (I/O command specific status, log 80h), masked until the host reads the log.
    /// </summary>
    internal void NotifyReservation(ReservationNotificationType type, uint namespaceId)
    {
        lock (_gate)
        {
            if ((_reservationMasks.GetValueOrDefault(namespaceId) & (1u << (int)type)) != 0)
            {
                return;
            }

            // The count never reads 0 on a real entry (NVMe base 2.0, Figure 249), so it skips 0 when it wraps.
            _reservationLogCount = _reservationLogCount == ulong.MaxValue ? 1 : _reservationLogCount + 1;
            if (_reservationLog.Count < ReservationLogCapacity)
            {
                _reservationLog.Enqueue(new ReservationNotificationEntry(_reservationLogCount, type, 0, namespaceId));
            }

            if (_reservationNoticeMasked)
            {
                return;
            }

            _reservationNoticeMasked = true;
            _pendingEvents.Enqueue(AsyncEvent.CompletionDw0(AsyncEvent.TypeIoCommandSpecific, AsyncEvent.IoSpecificReservationLogPageAvailable, (byte)LogPageId.ReservationNotification));
        }

        DeliverEvents();
    }

    /// <summary>
    /// The Reservation Notification log (NVMe base 2.0, 5.16.1.25): the oldest unread notification, which reading
    /// removes, with how many remain; all zeros when none is left.
    /// </summary>
    private byte[] BuildReservationNotificationLog(bool retainEvent)
    {
        var page = new byte[ReservationNotificationEntry.Size];
        lock (_gate)
        {
            if (_reservationLog.TryDequeue(out var entry))
            {
                (entry with { Available = (byte)Math.Min(byte.MaxValue, _reservationLog.Count) }).Write(page);
            }

            if (!retainEvent)
            {
                _reservationNoticeMasked = false;
            }
        }

        return page;
    }

    /// <summary>Set Features 82h (mask) and 83h (PTPL); both are namespace specific, NSID FFFFFFFFh meaning all.</summary>
    private void SetReservationFeature(NvmeTcpConnection connection, in SubmissionQueueEntry sqe)
    {
        var namespaces = NamespacesOf(sqe.NamespaceId);
        if (namespaces is null)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }

        if ((FeatureId)(byte)sqe.Cdw10 == FeatureId.ReservationNotificationMask)
        {
            if ((sqe.Cdw11 & ~ReservationMaskBits) != 0)
            {
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
                return;
            }

            lock (_gate)
            {
                foreach (var ns in namespaces)
                {
                    _reservationMasks[ns.NamespaceId] = sqe.Cdw11;
                }
            }

            connection.Complete(sqe.CommandId, NvmeStatus.Success);
            return;
        }

        // PTPL (CDW11 bit 0) can be set only where the state can persist; the change completes once it is durable.
        var persist = (sqe.Cdw11 & 1) != 0;
        if (persist && namespaces.Any(ns => !ns.Reservations.CanPersist))
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidField);
            return;
        }

        var saves = namespaces.Select(ns => ns.Reservations.WhenDurableAsync(ns.Reservations.SetPersistThroughPowerLoss(persist))).ToArray();
        if (saves.All(s => s.IsCompletedSuccessfully && s.Result))
        {
            connection.Complete(sqe.CommandId, NvmeStatus.Success);
            return;
        }

        // Admin commands have no deferred slots: the completion goes out of band, as an AER's does.
        var commandId = sqe.CommandId;
        _ = CompleteWhenSavedAsync(connection, commandId, saves);
    }

    private static async Task CompleteWhenSavedAsync(NvmeTcpConnection connection, ushort commandId, Task<bool>[] saves)
    {
        var saved = (await Task.WhenAll(saves).ConfigureAwait(false)).All(ok => ok);
        await connection.SendOutOfBandAsync(commandId, saved ? NvmeStatus.Success : NvmeStatus.NamespaceNotReady, 0).ConfigureAwait(false);
    }

    /// <summary>Get Features 82h and 83h for one namespace; SEL 3 (capabilities): namespace specific and changeable.</summary>
    private void GetReservationFeature(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, uint select)
    {
        const uint namespaceSpecificAndChangeable = 0x6;
        if (select == 3)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.Success, namespaceSpecificAndChangeable);
            return;
        }

        if (Subsystem.FindNamespace(sqe.NamespaceId) is not { } ns)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }

        uint value;
        if ((FeatureId)(byte)sqe.Cdw10 == FeatureId.ReservationNotificationMask)
        {
            lock (_gate)
            {
                value = _reservationMasks.GetValueOrDefault(ns.NamespaceId);
            }
        }
        else
        {
            value = ns.Reservations.PersistThroughPowerLoss ? 1u : 0u;
        }

        connection.Complete(sqe.CommandId, NvmeStatus.Success, value);
    }

    private IReadOnlyList<Subsystems.TargetNamespace>? NamespacesOf(uint namespaceId) =>
        namespaceId == 0xFFFF_FFFF
            ? Subsystem.Namespaces
            : Subsystem.FindNamespace(namespaceId) is { } ns ? [ns] : null;

    /// <summary>
    /// Ends this controller (every queue's connection is closed) and completes once each of its connections has
    /// stopped its receive loop and finished every command it had started, so none of them can still change a volume.
    /// </summary>
    internal Task ShutdownAndDrainAsync(string reason)
    {
        NvmeTcpConnection?[] queues;
        lock (_gate)
        {
            queues = [.. _ioQueues, _adminQueue];
        }

        Shutdown(reason);

        // A queue that attached between the copy above and the shutdown is in the target's list.
        var connections = queues.OfType<NvmeTcpConnection>()
            .Concat(_target.Connections.Where(c => ReferenceEquals(c.Controller, this)))
            .Distinct()
            .ToArray();
        foreach (var connection in connections)
        {
            connection.Close(reason);
        }

        return Task.WhenAll(connections.Select(c => c.WhenDrained));
    }
}
