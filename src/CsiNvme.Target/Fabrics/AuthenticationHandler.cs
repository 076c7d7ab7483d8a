using CsiNvme.Protocol.Authentication;
using CsiNvme.Protocol.Commands;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Fabrics;

/// <summary>
/// Authentication Send and Authentication Receive (NVMe base 2.0, 6.2 and 6.3) on an admin or I/O queue: they carry the
/// DH-HMAC-CHAP messages of the queue's <see cref="DhchapControllerTransaction"/>. A queue that must authenticate is
/// served nothing else until the transaction succeeds (<see cref="NvmeStatus.AuthenticationRequired"/>); a failed
/// transaction ends the whole controller once its last answer is sent, as nvmet does with a controller fatal error.
/// </summary>
internal static class AuthenticationHandler
{
    /// <summary>Connect response DW0 bit 17, AUTHREQ.ATR: the host must authenticate (as the Linux host and nvmet read it).</summary>
    public const uint AuthenticationRequiredBit = 1u << 17;

    /// <summary>The commands a queue that has not authenticated yet may send.</summary>
    public static bool IsAuthenticationCommand(in SubmissionQueueEntry sqe) =>
        sqe.Opcode == (byte)AdminOpcode.Fabrics
        && sqe.FabricsCommandType is (byte)FabricsCommandType.AuthenticationSend or (byte)FabricsCommandType.AuthenticationReceive;

    public static void Handle(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> data)
    {
        var commandId = sqe.CommandId;
        var command = AuthenticationCommand.From(sqe);
        if (!command.IsDhchap || command.Length == 0)
        {
            // DH-HMAC-CHAP is the one security protocol defined for in-band authentication (SECP E9h, SPSP 01h 01h).
            connection.Complete(commandId, NvmeStatus.InvalidField);
            return;
        }

        var transaction = connection.Authentication ??= controller.CreateAuthentication();
        if (sqe.FabricsCommandType == (byte)FabricsCommandType.AuthenticationSend)
        {
            // The messages are at most a few KiB (ffdhe8192's reply: 1168 bytes), always within the capsule.
            if (sqe.DataPointer.Identifier != SglDescriptor.InCapsuleDataBlock || data.Length != command.Length)
            {
                connection.Complete(commandId, NvmeStatus.DataSglLengthInvalid);
                return;
            }

            transaction.Receive(data);
            connection.Complete(commandId, NvmeStatus.Success);
        }
        else
        {
            var sgl = sqe.DataPointer;
            var length = (int)Math.Min(Math.Min(command.Length, sgl.Length), (uint)connection.MaxDataTransfer);
            if (sgl.Identifier != SglDescriptor.TransportDataBlock || length < DhchapFailure.Size)
            {
                connection.Complete(commandId, NvmeStatus.InvalidField);
                return;
            }

            var message = transaction.Produce();
            if (message.Length > length)
            {
                // The host left no room for the answer: nothing can be sent, so the transaction cannot go on.
                connection.Complete(commandId, NvmeStatus.InvalidField);
                connection.Target.LogAuthenticationFailed(connection.RemoteEndPoint, controller, connection.QueueId,
                    $"allocation length {command.Length} is too small for a {message.Length}-byte message");
                connection.FailAuthentication("authentication failed");
                return;
            }

            var destination = connection.ReserveData(length);
            message.CopyTo(destination);
            destination[message.Length..].Clear();
            connection.CommitData(commandId, length);
            connection.Complete(commandId, NvmeStatus.Success);
        }

        if (transaction.IsAuthenticated)
        {
            connection.Authentication = null;
            controller.Authenticated(transaction);
            connection.MarkAuthenticated();
            connection.Target.LogAuthenticated(connection.RemoteEndPoint, controller, connection.QueueId, transaction);
        }
        else if (transaction.IsFailed)
        {
            connection.Authentication = null;
            connection.Target.LogAuthenticationFailed(connection.RemoteEndPoint, controller, connection.QueueId, transaction.FailureReason ?? "failed");
            connection.FailAuthentication("authentication failed");
        }
    }
}
