using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Reservations;
using CsiNvme.Storage;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Io.Reservations;

/// <summary>
/// The reservation commands of the NVM command set (NVM command set 1.0, 3.2.4–3.2.6): Reservation Register (0Dh),
/// Report (0Eh), Acquire (11h) and Release (15h), and the reservation check of Read, Write, Flush, Write Zeroes and
/// Dataset Management.
/// </summary>
/// <remarks>
/// A command that changed the state completes only once the change is durable (<see cref="NamespaceReservations"/>),
/// through the connection's deferred completions, so the receive loop never waits for the metadata store.
/// Preempt and Abort ends every controller of each preempted host on the subsystem (its queues are closed, as a
/// transport loss would) and completes only after all their connections have stopped and every command they had
/// started has finished: once it completes, nothing the preempted hosts sent before can still reach the namespace.
/// Their hosts see their outstanding commands fail with the connection and retry them after reconnecting, where the
/// new reservation decides.
/// </remarks>
internal static class ReservationCommands
{
    public static bool IsReservationCommand(byte opcode) =>
        opcode is (byte)IoOpcode.ReservationRegister or (byte)IoOpcode.ReservationReport
            or (byte)IoOpcode.ReservationAcquire or (byte)IoOpcode.ReservationRelease;

    /// <summary>
    /// True when a reservation of the command's namespace (every namespace for NSID FFFFFFFFh) forbids the issuing host
    /// this read or write group command (NVMe base 2.0, 8.19.1).
    /// </summary>
    public static bool Conflicts(Controller controller, in SubmissionQueueEntry sqe)
    {
        var isWrite = sqe.Opcode != (byte)IoOpcode.Read;
        if (sqe.NamespaceId == 0xFFFF_FFFF)
        {
            // Indexed, not foreach: enumerating the interface would allocate on the I/O path.
            var namespaces = controller.Subsystem.Namespaces;
            for (var i = 0; i < namespaces.Count; i++)
            {
                if (namespaces[i].Reservations.Refuses(controller.HostId, isWrite))
                {
                    return true;
                }
            }

            return false;
        }

        return controller.Subsystem.FindNamespace(sqe.NamespaceId) is { } ns && ns.Reservations.Refuses(controller.HostId, isWrite);
    }

    public static void Execute(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> inCapsuleData)
    {
        var refusal = controller.Subsystem.IoRefusal;
        if (!refusal.IsSuccess)
        {
            // A path that does not serve I/O does not take reservation commands either (as Linux's target): where
            // several nodes export a volume, its reservations live with the node whose path is accessible.
            connection.Complete(sqe.CommandId, refusal);
            return;
        }

        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        if (ns is null)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }

        if (sqe.Opcode == (byte)IoOpcode.ReservationReport)
        {
            Report(connection, ns, sqe);
            return;
        }

        var length = sqe.Opcode == (byte)IoOpcode.ReservationRelease ? ReservationKeys.ReleaseSize : ReservationKeys.RegisterOrAcquireSize;
        var sgl = sqe.DataPointer;
        if (sgl.Length < (uint)length)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.DataSglLengthInvalid);
            return;
        }

        if (sgl.Identifier == SglDescriptor.InCapsuleDataBlock)
        {
            if (sgl.Address + (ulong)length > (ulong)inCapsuleData.Length)
            {
                connection.Complete(sqe.CommandId, NvmeStatus.SglOffsetInvalid);
                return;
            }

            ExecuteWithData(connection, controller, sqe, inCapsuleData.Slice((int)sgl.Address, length), connection.BatchStartTimestamp);
            return;
        }

        if (sgl.Identifier == SglDescriptor.TransportDataBlock && inCapsuleData.IsEmpty && sgl.Length <= (uint)connection.MaxDataTransfer)
        {
            // Hosts that do not send small data in the capsule: the keys come by R2T and FinishDataOut calls back.
            connection.RequestData(sqe, ns, 0, (int)sgl.Length, fua: false, connection.BatchStartTimestamp);
            return;
        }

        connection.Complete(sqe.CommandId, NvmeStatus.SglDescriptorTypeInvalid);
    }

    /// <summary>Register, Acquire or Release once the keys are in.</summary>
    public static void ExecuteWithData(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data, long start)
    {
        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        if (ns is null)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }

        var host = controller.HostId;
        var fields = ReservationCommandFields.From(sqe.Cdw10);
        var keys = ReservationKeys.Read(data);
        var reservations = ns.Reservations;
        var (outcome, version) = (IoOpcode)sqe.Opcode switch
        {
            IoOpcode.ReservationRegister => reservations.Apply(state => state.Register(host, fields, keys, reservations.CanPersist)),
            IoOpcode.ReservationAcquire => reservations.Apply(state => state.Acquire(host, fields, keys)),
            _ => reservations.Apply(state => state.Release(host, fields, keys)),
        };

        if (!outcome.Status.IsSuccess)
        {
            connection.Complete(sqe.CommandId, outcome.Status);
            return;
        }

        Deliver(controller.Subsystem, ns.NamespaceId, outcome.Notices);
        var abort = sqe.Opcode == (byte)IoOpcode.ReservationAcquire && fields.Action == (byte)ReservationAcquireAction.PreemptAndAbort;
        var drains = abort ? EndControllersOf(controller.Subsystem, outcome.Preempted) : [];
        if (drains.Count == 0 && reservations.IsDurable(version))
        {
            connection.Complete(sqe.CommandId, NvmeStatus.Success);
            return;
        }

        var slot = connection.BeginDeferred(sqe.CommandId, IoKind.Flush, null, 0, start);
        if (slot < 0)
        {
            // Only a host with more commands outstanding than its queue holds gets here; the change stands and is
            // saved by the next command.
            connection.Complete(sqe.CommandId, NvmeStatus.CommandIdConflict);
            return;
        }

        connection.AddDeferredPart(slot);
        _ = CompleteWhenSettledAsync(connection, slot, reservations.WhenDurableAsync(version), drains);
        connection.EndDeferred(slot);
    }

    /// <summary>Reservation Report (NVM command set 1.0, 3.2.5): only the extended data structure (EDS set).</summary>
    private static void Report(NvmeTcpConnection connection, TargetNamespace ns, in SubmissionQueueEntry sqe)
    {
        // Over fabrics the host identifier is 128 bits, which only the extended structure holds (NVM command set 1.0,
        // 3.2.5: Host Identifier Inconsistent Format otherwise).
        if ((sqe.Cdw11 & 1) == 0)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.HostIdentifierInconsistentFormat);
            return;
        }

        var sgl = sqe.DataPointer;
        if (sgl.Identifier != SglDescriptor.TransportDataBlock)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.SglDescriptorTypeInvalid);
            return;
        }

        var requested = ((ulong)sqe.Cdw10 + 1) * 4;
        var length = (int)Math.Min(requested, Math.Min(sgl.Length, (uint)connection.MaxDataTransfer));
        var state = ns.Reservations.Snapshot();
        var hosts = state.Registrants
            .Select(r => new RegisteredHost(ReservationStatusExtended.DynamicControllerId, state.IsHolder(r.HostId), r.Key, r.HostId))
            .ToArray();
        ReservationStatusExtended.Write(connection.ReserveData(length), state.Generation, state.Type, state.PersistThroughPowerLoss, hosts);
        connection.CompleteWithReservedData(sqe.CommandId, length);
    }

    /// <summary>Puts each notice in the Reservation Notification log of every controller of its host on the subsystem.</summary>
    private static void Deliver(Subsystem subsystem, uint namespaceId, IReadOnlyList<ReservationNotice> notices)
    {
        if (notices.Count == 0)
        {
            return;
        }

        foreach (var each in subsystem.Controllers)
        {
            if (each is not Controller controller || controller.IsDiscovery)
            {
                continue;
            }

            foreach (var notice in notices)
            {
                if (notice.HostId == controller.HostId)
                {
                    controller.NotifyReservation(notice.Type, namespaceId);
                }
            }
        }
    }

    /// <summary>Ends every controller of the preempted hosts; the tasks complete when their connections have drained.</summary>
    private static List<Task> EndControllersOf(Subsystem subsystem, IReadOnlyList<Guid> hosts)
    {
        var drains = new List<Task>();
        if (hosts.Count == 0)
        {
            return drains;
        }

        foreach (var each in subsystem.Controllers)
        {
            if (each is Controller controller && hosts.Contains(controller.HostId))
            {
                drains.Add(controller.ShutdownAndDrainAsync("reservation preempted and aborted"));
            }
        }

        return drains;
    }

    private static async Task CompleteWhenSettledAsync(NvmeTcpConnection connection, int slot, Task<bool> durable, List<Task> drains)
    {
        var status = StorageStatus.Success;
        try
        {
            await Task.WhenAll(drains).ConfigureAwait(false);
            if (!await durable.ConfigureAwait(false))
            {
                status = StorageStatus.Unavailable;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            status = StorageStatus.Unavailable;
        }

        connection.OnCompleted((ulong)slot, status);
    }
}
