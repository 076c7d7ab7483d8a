using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Fabrics;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Fabrics;

/// <summary>
/// The Fabrics Connect command (NVMe-oF 1.1, 3.3): creates a controller on an admin queue Connect, or attaches an I/O
/// queue to an existing controller. Errors use the Connect-specific status values so a host gets an answer it can
/// report ("invalid host", "invalid parameters") instead of a hang.
/// </summary>
internal static class ConnectHandler
{
    // Byte offsets reported in IPO for Connect Invalid Parameters (NVMe-oF 1.1, Figure 22).
    private const ushort QueueIdOffset = 42;
    private const ushort QueueSizeOffset = 44;
    private const ushort ControllerIdDataOffset = 16;
    private const ushort SubsystemNqnDataOffset = 256;
    private const ushort HostNqnDataOffset = 512;

    public static void Handle(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data)
    {
        var connect = ConnectCommand.From(sqe);
        if (connect.RecordFormat != 0)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.ConnectIncompatibleFormat);
            return;
        }

        if (data.Length < ConnectData.Size)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.DataSglLengthInvalid);
            return;
        }

        var request = ConnectData.Read(data);
        var target = connection.Target;
        var subsystem = request.SubsystemNqn == NvmeTarget.DiscoveryNqn ? target.DiscoverySubsystem : target.FindSubsystem(request.SubsystemNqn);
        if (subsystem is null)
        {
            InvalidParameter(connection, sqe.CommandId, inData: true, SubsystemNqnDataOffset);
            target.LogConnectRejected(connection.RemoteEndPoint, request.HostNqn, request.SubsystemNqn, "unknown subsystem");
            return;
        }

        if (request.HostNqn.Length == 0)
        {
            InvalidParameter(connection, sqe.CommandId, inData: true, HostNqnDataOffset);
            return;
        }

        if (!subsystem.IsHostAllowed(request.HostNqn))
        {
            connection.Complete(sqe.CommandId, NvmeStatus.ConnectInvalidHost);
            target.LogConnectRejected(connection.RemoteEndPoint, request.HostNqn, request.SubsystemNqn, "host not allowed");
            return;
        }

        var maxEntries = target.Options.MaxQueueEntries;
        if (connect.SubmissionQueueSize < 1 || connect.SubmissionQueueSize > maxEntries - 1)
        {
            InvalidParameter(connection, sqe.CommandId, inData: false, QueueSizeOffset);
            return;
        }

        var isDiscovery = ReferenceEquals(subsystem, target.DiscoverySubsystem);
        if (connect.QueueId == 0)
        {
            if (request.ControllerId != ConnectData.DynamicControllerId)
            {
                InvalidParameter(connection, sqe.CommandId, inData: true, ControllerIdDataOffset);
                return;
            }

            var controller = new Controller(target, subsystem, isDiscovery, request.HostNqn, request.HostId, connect.KeepAliveTimeoutMs);
            var controllerId = subsystem.RegisterController(controller, target.Options.ControllerIdBase, target.Options.ControllerIdCount);
            if (controllerId == 0)
            {
                controller.Shutdown("no free controller id");
                connection.Complete(sqe.CommandId, NvmeStatus.ConnectControllerBusy);
                target.LogConnectRejected(connection.RemoteEndPoint, request.HostNqn, request.SubsystemNqn, "no free controller id");
                return;
            }

            controller.AttachAdminQueue(controllerId, connection);
            connection.BindQueue(controller, 0, connect.SubmissionQueueSize + 1, sqFlowControlDisabled: false);
            connection.Complete(sqe.CommandId, NvmeStatus.Success, controllerId);
            target.LogControllerCreated(controllerId, request.HostNqn, subsystem.Nqn, connect.KeepAliveTimeoutMs);
            return;
        }

        if (isDiscovery)
        {
            InvalidParameter(connection, sqe.CommandId, inData: false, QueueIdOffset);
            return;
        }

        if (subsystem.FindController(request.ControllerId) is not Controller owner || owner.HostNqn != request.HostNqn)
        {
            InvalidParameter(connection, sqe.CommandId, inData: true, ControllerIdDataOffset);
            return;
        }

        if (!owner.TryAttachIoQueue(connect.QueueId, connection))
        {
            InvalidParameter(connection, sqe.CommandId, inData: false, QueueIdOffset);
            return;
        }

        connection.BindQueue(owner, connect.QueueId, connect.SubmissionQueueSize + 1, connect.SqFlowControlDisabled);
        target.LogIoQueueConnected(owner.ControllerId, connect.QueueId, connect.SubmissionQueueSize + 1, connect.SqFlowControlDisabled);
        connection.Complete(sqe.CommandId, NvmeStatus.Success, owner.ControllerId);
    }

    /// <summary>Connect Invalid Parameters with IATTR (bit 0: the field is in the data) and IPO (bits 31:16) in DW0.</summary>
    private static void InvalidParameter(NvmeTcpConnection connection, ushort commandId, bool inData, ushort offset) =>
        connection.Complete(commandId, NvmeStatus.ConnectInvalidParameters, (inData ? 1u : 0u) | ((uint)offset << 16));
}
