using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Fabrics;

/// <summary>
/// The Fabrics Connect command (NVMe-oF 1.1, 3.3): creates a controller on an admin queue Connect, or attaches an I/O
/// queue to an existing controller. Errors use the Connect-specific status values so a host gets an answer it can
/// report ("invalid host", "invalid parameters") instead of a hang, and every refusal is logged exactly once, with the
/// host's address, host NQN, subsystem NQN and the reason (<see cref="NvmeTarget.LogConnectRejected"/>).
/// </summary>
internal static class ConnectHandler
{
    // Byte offsets reported in IPO for Connect Invalid Parameters (NVMe-oF 1.1, Figure 22).
    private const ushort QueueIdOffset = 42;
    private const ushort QueueSizeOffset = 44;
    private const ushort ControllerIdDataOffset = 16;
    private const ushort SubsystemNqnDataOffset = 256;

    public static void Handle(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data)
    {
        var connect = ConnectCommand.From(sqe);
        var target = connection.Target;

        // The NQNs are read first, whenever the data is there, so that every refusal below can name them.
        var request = data.Length >= ConnectData.Size ? ConnectData.Read(data) : null;
        var hostNqn = request?.HostNqn ?? "";
        var subsystemNqn = request?.SubsystemNqn ?? "";
        var commandId = sqe.CommandId;
        void Refuse(NvmeStatus status, uint dw0, string reason)
        {
            connection.Complete(commandId, status, dw0);
            target.LogConnectRejected(connection.RemoteEndPoint, hostNqn, subsystemNqn, reason);
        }

        if (connection.Controller is { } bound)
        {
            // A queue is connected once; a second Connect on it is out of sequence.
            Refuse(NvmeStatus.CommandSequenceError, 0, $"queue {connection.QueueId} of controller {bound.ControllerId} is connected already");
            return;
        }

        if (connect.RecordFormat != 0)
        {
            Refuse(NvmeStatus.ConnectIncompatibleFormat, 0, $"record format {connect.RecordFormat} (only 0 is defined)");
            return;
        }

        if (request is null)
        {
            Refuse(NvmeStatus.DataSglLengthInvalid, 0, $"{data.Length} bytes of Connect data instead of {ConnectData.Size}");
            return;
        }

        var subsystem = subsystemNqn == NvmeTarget.DiscoveryNqn ? target.DiscoverySubsystem : target.FindSubsystem(subsystemNqn);
        if (subsystem is null)
        {
            Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: true, SubsystemNqnDataOffset), "unknown subsystem");
            return;
        }

        // An empty host NQN is a host that did not say who it is (SPDK's perf tool unless given -q): like the Linux
        // and SPDK targets, a subsystem open to any host takes it, and one with an allowed list refuses it as a host
        // that is not on the list.
        if (!subsystem.IsHostAllowed(hostNqn))
        {
            Refuse(NvmeStatus.ConnectInvalidHost, 0, hostNqn.Length == 0
                ? "empty host NQN, and the subsystem allows only the hosts on its list"
                : "host not allowed");
            return;
        }

        // The secure channel (NVMe/TCP transport 1.0, 3.6.1.4) was opened with a PSK of one host for one subsystem: the
        // queue serves exactly that pair (the discovery controller too, for the host it names). A subsystem that
        // requires TLS takes no plaintext queue.
        if (connection.TlsIdentity is { } identity)
        {
            if (identity.HostNqn != hostNqn || (identity.SubsystemNqn != subsystemNqn && subsystemNqn != NvmeTarget.DiscoveryNqn))
            {
                Refuse(NvmeStatus.ConnectInvalidHost, 0, $"the TLS PSK identity names host {identity.HostNqn} and subsystem {identity.SubsystemNqn}");
                return;
            }
        }
        else if (subsystem.TlsRequired)
        {
            Refuse(NvmeStatus.ConnectInvalidHost, 0, "the subsystem requires TLS and the connection is plaintext");
            return;
        }

        var maxEntries = target.Options.MaxQueueEntries;
        if (connect.SubmissionQueueSize < 1 || connect.SubmissionQueueSize > maxEntries - 1)
        {
            Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: false, QueueSizeOffset),
                $"submission queue size {connect.SubmissionQueueSize + 1} outside 2..{maxEntries}");
            return;
        }

        var isDiscovery = ReferenceEquals(subsystem, target.DiscoverySubsystem);
        if (connect.QueueId == 0)
        {
            if (request.ControllerId != ConnectData.DynamicControllerId)
            {
                Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: true, ControllerIdDataOffset),
                    $"controller ID {request.ControllerId} asked for on an admin queue (only dynamic controllers, FFFFh)");
                return;
            }

            if (!target.TryAdmitHost(connection, hostNqn))
            {
                Refuse(NvmeStatus.ConnectControllerBusy, 0, $"the host holds the limit of {target.MaxConnectionsPerHost} connections per host");
                return;
            }

            var controller = new Controller(target, subsystem, isDiscovery, hostNqn, request.HostId, connect.KeepAliveTimeoutMs);
            var controllerId = subsystem.RegisterController(controller, target.Options.ControllerIdBase, target.Options.ControllerIdCount);
            if (controllerId == 0)
            {
                controller.Shutdown("no free controller id");
                Refuse(NvmeStatus.ConnectControllerBusy, 0, "no free controller id");
                return;
            }

            controller.AttachAdminQueue(controllerId, connection);
            connection.BindQueue(controller, 0, connect.SubmissionQueueSize + 1, sqFlowControlDisabled: false);
            var authentication = RequireAuthentication(connection, subsystem, hostNqn, isDiscovery);
            connection.Complete(sqe.CommandId, NvmeStatus.Success, controllerId | authentication);
            target.LogControllerCreated(controllerId, hostNqn, subsystem.Nqn, connect.KeepAliveTimeoutMs);
            return;
        }

        if (isDiscovery)
        {
            Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: false, QueueIdOffset), "I/O queue asked for on the discovery subsystem");
            return;
        }

        if (subsystem.FindController(request.ControllerId) is not Controller owner || owner.HostNqn != hostNqn)
        {
            Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: true, ControllerIdDataOffset),
                $"no controller {request.ControllerId} of this host on the subsystem");
            return;
        }

        if (!target.TryAdmitHost(connection, hostNqn))
        {
            Refuse(NvmeStatus.ConnectControllerBusy, 0, $"the host holds the limit of {target.MaxConnectionsPerHost} connections per host");
            return;
        }

        if (!owner.TryAttachIoQueue(connect.QueueId, connection))
        {
            target.ReleaseHost(connection);
            Refuse(NvmeStatus.ConnectInvalidParameters, InvalidParameterDw0(inData: false, QueueIdOffset),
                $"I/O queue {connect.QueueId} of controller {owner.ControllerId} is connected already or beyond the queues granted");
            return;
        }

        connection.BindQueue(owner, connect.QueueId, connect.SubmissionQueueSize + 1, connect.SqFlowControlDisabled);
        target.LogIoQueueConnected(owner.ControllerId, connect.QueueId, connect.SubmissionQueueSize + 1, connect.SqFlowControlDisabled);
        connection.Complete(sqe.CommandId, NvmeStatus.Success, owner.ControllerId | RequireAuthentication(connection, subsystem, hostNqn, isDiscovery: false));
    }

    /// <summary>
    /// Each queue of a host the subsystem has DH-HMAC-CHAP credentials for authenticates on its own (NVMe base 2.0,
    /// 8.13.1): the Connect response says so with AUTHREQ.ATR and the queue serves nothing else until then. A discovery
    /// controller requires nothing (a host without secrets must still find its subsystems), but hides the subsystems
    /// that require authentication until the host authenticated on it (<see cref="Controller.Authenticated"/>).
    /// </summary>
    private static uint RequireAuthentication(NvmeTcpConnection connection, Subsystem subsystem, string hostNqn, bool isDiscovery)
    {
        if (isDiscovery || hostNqn.Length == 0 || subsystem.FindHostCredentials(hostNqn) is null)
        {
            return 0;
        }

        connection.RequireAuthentication();
        return AuthenticationHandler.AuthenticationRequiredBit;
    }

    /// <summary>Connect Invalid Parameters' DW0: IATTR (bit 0: the field is in the data) and IPO (bits 31:16).</summary>
    private static uint InvalidParameterDw0(bool inData, ushort offset) => (inData ? 1u : 0u) | ((uint)offset << 16);
}
