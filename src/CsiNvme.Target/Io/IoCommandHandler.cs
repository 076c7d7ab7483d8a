using System.Buffers.Binary;
using System.Numerics;
using CsiNvme.Protocol.Commands;
using CsiNvme.Storage;
using CsiNvme.Target.Controllers;
using CsiNvme.Target.Io.Reservations;
using CsiNvme.Target.Fabrics;
using CsiNvme.Target.Subsystems;
using CsiNvme.Target.Transport;

namespace CsiNvme.Target.Io;

/// <summary>
/// NVM command set I/O commands (NVM command set 1.0, 3.2): Read, Write, Flush, Write Zeroes and Dataset Management.
/// Runs synchronously on the connection's receive loop; errors are status values, never exceptions.
/// </summary>
internal static class IoCommandHandler
{
    private const int DsmRangeSize = 16;
    private const uint DsmAttributeDeallocate = 1u << 2;

    public static void Execute(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> inCapsuleData)
    {
        var start = connection.BatchStartTimestamp;
        var refusal = controller.Subsystem.IoRefusal;
        if (!refusal.IsSuccess && sqe.Opcode is (byte)IoOpcode.Read or (byte)IoOpcode.Write or (byte)IoOpcode.Flush
                or (byte)IoOpcode.WriteZeroes or (byte)IoOpcode.DatasetManagement)
        {
            // This path's ANA group is not accessible (NVMe base 2.0, 8.1.3.3): a path status, so a multipath host retries
            // on another path instead of failing the I/O.
            connection.Complete(sqe.CommandId, refusal);
            return;
        }

        if (controller.Subsystem.Fence is { } fence && controller.ReplicationEpoch < fence.Current
            && sqe.Opcode is (byte)IoOpcode.Write or (byte)IoOpcode.WriteZeroes or (byte)IoOpcode.DatasetManagement or (byte)IoOpcode.Flush)
        {
            // A replica subsystem takes changes only from the current primary's epoch (FeatureId.ReplicationEpoch).
            connection.Complete(sqe.CommandId, NvmeStatus.ReservationConflict);
            return;
        }

        if (sqe.Opcode is (byte)IoOpcode.Read or (byte)IoOpcode.Write or (byte)IoOpcode.Flush or (byte)IoOpcode.WriteZeroes
                or (byte)IoOpcode.DatasetManagement && ReservationCommands.Conflicts(controller, sqe))
        {
            // A reservation another host holds forbids this host the command (NVMe base 2.0, 8.19.1, Figure 426).
            connection.Complete(sqe.CommandId, NvmeStatus.ReservationConflict);
            return;
        }

        switch ((IoOpcode)sqe.Opcode)
        {
            case IoOpcode.Read:
                Read(connection, controller, sqe, start);
                return;
            case IoOpcode.Write:
                Write(connection, controller, sqe, inCapsuleData, start);
                return;
            case IoOpcode.Flush:
                Flush(connection, controller, sqe, start);
                return;
            case IoOpcode.WriteZeroes:
                WriteZeroes(connection, controller, sqe, start);
                return;
            case IoOpcode.DatasetManagement:
                DatasetManagement(connection, controller, sqe, inCapsuleData, start);
                return;
            case IoOpcode.ReservationRegister or IoOpcode.ReservationReport or IoOpcode.ReservationAcquire or IoOpcode.ReservationRelease:
                ReservationCommands.Execute(connection, controller, sqe, inCapsuleData);
                return;
            case IoOpcode.Fabrics when sqe.FabricsCommandType is (byte)FabricsCommandType.AuthenticationSend or (byte)FabricsCommandType.AuthenticationReceive:
                // Each I/O queue authenticates on its own, at connect and at every re-authentication.
                AuthenticationHandler.Handle(connection, controller, sqe, inCapsuleData);
                return;
            case IoOpcode.Fabrics when sqe.FabricsCommandType == (byte)FabricsCommandType.Connect:
                // Refused there as out of sequence, and logged like every refused Connect.
                ConnectHandler.Handle(connection, sqe, inCapsuleData);
                return;
            case IoOpcode.Fabrics:
                // Only Connect (as the queue's first command) and authentication are valid on an I/O queue.
                connection.Complete(sqe.CommandId, NvmeStatus.CommandSequenceError);
                return;
            default:
                connection.Complete(sqe.CommandId, NvmeStatus.InvalidOpcode);
                return;
        }
    }

    /// <summary>
    /// Hints the range of a Read or Write that is about to run to its volume (<see cref="IBlockVolume.Prefetch"/>), so
    /// the target can start loading a batch's blocks before running its first command. Anything else, and a command
    /// that will fail, is left alone.
    /// </summary>
    public static void Prefetch(Controller controller, in SubmissionQueueEntry sqe)
    {
        if (sqe.Opcode is not ((byte)IoOpcode.Read or (byte)IoOpcode.Write) || controller.Subsystem.FindNamespace(sqe.NamespaceId) is not { } ns)
        {
            return;
        }

        var volume = ns.Volume;
        if (InRange(volume, sqe.StartingLba, sqe.BlockCount))
        {
            // At most 65536 blocks of at most 4 KiB: the length fits an int.
            volume.Prefetch((long)sqe.StartingLba * volume.BlockSize, (int)(sqe.BlockCount * (uint)volume.BlockSize));
        }
    }

    /// <summary>Resolves the namespace and the byte range of an LBA-addressed command, or says why not.</summary>
    private static NvmeStatus Resolve(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, out TargetNamespace? ns, out long offset, out int length)
    {
        offset = 0;
        length = 0;
        ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        if (ns is null)
        {
            return NvmeStatus.InvalidNamespaceOrFormat;
        }

        var volume = ns.Volume;
        var blockSize = volume.BlockSize;
        var blocks = sqe.BlockCount;
        if (!InRange(volume, sqe.StartingLba, blocks))
        {
            return NvmeStatus.LbaOutOfRange;
        }

        var bytes = (long)blocks * blockSize;
        if (bytes > connection.MaxDataTransfer)
        {
            return NvmeStatus.InvalidField;
        }

        offset = (long)sqe.StartingLba * blockSize;
        length = (int)bytes;
        return NvmeStatus.Success;
    }

    private static void Read(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, long start)
    {
        var status = Resolve(connection, controller, sqe, out var ns, out var offset, out var length);
        if (status.IsSuccess)
        {
            var sgl = sqe.DataPointer;
            if (sgl.Identifier != SglDescriptor.TransportDataBlock)
            {
                status = NvmeStatus.SglDescriptorTypeInvalid;
            }
            else if (sgl.Length < (uint)length)
            {
                status = NvmeStatus.DataSglLengthInvalid;
            }
            else
            {
                status = ToNvme(ns!.Volume.Read(offset, connection.ReserveData(length)), isWrite: false);
                if (status.IsSuccess)
                {
                    connection.CompleteWithReservedData(sqe.CommandId, length);
                }
            }
        }

        if (!status.IsSuccess)
        {
            connection.Complete(sqe.CommandId, status);
        }

        connection.CountIo(ns, IoKind.Read, length, status.IsSuccess, start);
    }

    private static void Write(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> inCapsuleData, long start)
    {
        var status = Resolve(connection, controller, sqe, out var ns, out var offset, out var length);
        var fua = sqe.ForceUnitAccess || !controller.WriteCacheEnabled;
        if (status.IsSuccess)
        {
            var sgl = sqe.DataPointer;
            if (sgl.Length != (uint)length)
            {
                status = NvmeStatus.DataSglLengthInvalid;
            }
            else if (sgl.Identifier == SglDescriptor.InCapsuleDataBlock)
            {
                if (sgl.Address + sgl.Length > (ulong)inCapsuleData.Length)
                {
                    status = NvmeStatus.SglOffsetInvalid;
                }
                else if (ns!.AsyncVolume is { } asyncVolume)
                {
                    StartDeferred(connection, sqe.CommandId, IoKind.Write, ns, length, start, asyncVolume, offset, length, inCapsuleData.Slice((int)sgl.Address, length), fua);
                    return;
                }
                else
                {
                    status = ToNvme(ns.Volume.Write(offset, inCapsuleData.Slice((int)sgl.Address, length), fua), isWrite: true);
                }
            }
            else if (sgl.Identifier == SglDescriptor.TransportDataBlock && inCapsuleData.IsEmpty)
            {
                connection.RequestData(sqe, ns, offset, length, fua, start);
                return;
            }
            else
            {
                status = NvmeStatus.SglDescriptorTypeInvalid;
            }
        }

        connection.Complete(sqe.CommandId, status);
        connection.CountIo(ns, IoKind.Write, length, status.IsSuccess, start);
    }

    /// <summary>Writes one H2CData chunk of an R2T transfer straight to the volume.</summary>
    public static NvmeStatus WriteChunk(TargetNamespace ns, long offset, ReadOnlySpan<byte> data) =>
        ToNvme(ns.Volume.Write(offset, data, forceUnitAccess: false), isWrite: true);

    /// <summary>
    /// Starts one H2CData chunk of an R2T transfer on an asynchronous volume as a part of the command's deferred slot;
    /// with FUA each chunk carries it, so no flush is needed at the end.
    /// </summary>
    public static void StartWriteChunk(NvmeTcpConnection connection, TargetNamespace ns, int slot, long offset, ReadOnlySpan<byte> data, bool fua)
    {
        connection.AddDeferredPart(slot);
        var status = ns.AsyncVolume!.StartWrite(offset, data, fua, connection, (ulong)slot);
        if (status != StorageStatus.Pending)
        {
            connection.DeferredPartDone(slot, status);
        }
    }

    /// <summary>
    /// Runs a change on an asynchronous volume: completes at once when it answers at once, otherwise when it reports
    /// (<see cref="NvmeTcpConnection.OnCompleted"/>).
    /// </summary>
    private static void StartDeferred(
        NvmeTcpConnection connection,
        ushort commandId,
        IoKind kind,
        TargetNamespace ns,
        long bytes,
        long start,
        IAsyncBlockVolume volume,
        long offset,
        long length,
        ReadOnlySpan<byte> data,
        bool fua)
    {
        var slot = connection.BeginDeferred(commandId, kind, ns, bytes, start);
        if (slot < 0)
        {
            connection.Complete(commandId, NvmeStatus.CommandIdConflict);
            return;
        }

        StartPart(connection, slot, kind, volume, offset, length, data, fua);
        connection.EndDeferred(slot);
    }

    private static void StartPart(NvmeTcpConnection connection, int slot, IoKind kind, IAsyncBlockVolume volume, long offset, long length, ReadOnlySpan<byte> data, bool fua)
    {
        connection.AddDeferredPart(slot);
        var status = kind switch
        {
            IoKind.Write => volume.StartWrite(offset, data, fua, connection, (ulong)slot),
            IoKind.Flush => volume.StartFlush(connection, (ulong)slot),
            IoKind.WriteZeroes => volume.StartWriteZeroes(offset, length, fua, connection, (ulong)slot),
            _ => volume.StartDeallocate(offset, length, connection, (ulong)slot),
        };
        if (status != StorageStatus.Pending)
        {
            connection.DeferredPartDone(slot, status);
        }
    }

    /// <summary>Completes a data-out command once all its H2CData has arrived.</summary>
    public static void FinishDataOut(NvmeTcpConnection connection, Controller controller, in PendingTransfer transfer)
    {
        var ns = transfer.Namespace;
        if (transfer.DeferredSlot >= 0)
        {
            // A chunk that failed its data digest fails the command; the host may retry it.
            connection.EndDeferred(transfer.DeferredSlot, transfer.Status.IsSuccess ? StorageStatus.Success : StorageStatus.Unavailable);
            return;
        }

        if (transfer.Opcode == (byte)IoOpcode.Write)
        {
            var status = transfer.Status;
            // Chunks went in without FUA; one flush afterwards makes the whole command durable before it completes.
            if (status.IsSuccess && transfer.ForceUnitAccess)
            {
                status = ToNvme(ns!.Volume.Flush(), isWrite: true);
            }

            connection.Complete(transfer.CommandId, status);
            connection.CountIo(ns, IoKind.Write, transfer.Length, status.IsSuccess, transfer.StartTimestamp);
            return;
        }

        if (!transfer.Status.IsSuccess)
        {
            connection.Complete(transfer.CommandId, transfer.Status);
            return;
        }

        if (ReservationCommands.IsReservationCommand(transfer.Opcode))
        {
            ReservationCommands.ExecuteWithData(connection, controller, transfer.Command, transfer.Buffer.AsSpan(0, transfer.Length), transfer.StartTimestamp);
            return;
        }

        Deallocate(connection, controller, transfer.Command, transfer.Buffer.AsSpan(0, transfer.Length), transfer.StartTimestamp);
    }

    private static void Flush(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, long start)
    {
        var status = NvmeStatus.Success;
        if (sqe.NamespaceId == 0xFFFF_FFFF)
        {
            var slot = -1;
            foreach (var each in controller.Subsystem.Namespaces)
            {
                if (each.AsyncVolume is { } asyncEach)
                {
                    if (slot < 0)
                    {
                        slot = connection.BeginDeferred(sqe.CommandId, IoKind.Flush, null, 0, start);
                        if (slot < 0)
                        {
                            status = NvmeStatus.CommandIdConflict;
                            continue;
                        }
                    }

                    StartPart(connection, slot, IoKind.Flush, asyncEach, 0, 0, default, fua: false);
                    continue;
                }

                var result = ToNvme(each.Volume.Flush(), isWrite: true);
                status = status.IsSuccess ? result : status;
            }

            if (slot >= 0)
            {
                connection.EndDeferred(slot, status.IsSuccess ? StorageStatus.Success : StorageStatus.MediaError);
                return;
            }

            connection.Complete(sqe.CommandId, status);
            return;
        }

        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        if (ns?.AsyncVolume is { } asyncVolume)
        {
            StartDeferred(connection, sqe.CommandId, IoKind.Flush, ns, 0, start, asyncVolume, 0, 0, default, fua: false);
            return;
        }

        status = ns is null ? NvmeStatus.InvalidNamespaceOrFormat : ToNvme(ns.Volume.Flush(), isWrite: true);
        connection.Complete(sqe.CommandId, status);
        connection.CountIo(ns, IoKind.Flush, 0, status.IsSuccess, start);
    }

    private static void WriteZeroes(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, long start)
    {
        // Write Zeroes moves no data, so MDTS does not bound it: only the LBA range matters.
        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        NvmeStatus status;
        long length = 0;
        if (ns is null)
        {
            status = NvmeStatus.InvalidNamespaceOrFormat;
        }
        else
        {
            var volume = ns.Volume;
            if (!InRange(volume, sqe.StartingLba, sqe.BlockCount))
            {
                status = NvmeStatus.LbaOutOfRange;
            }
            else if (ns.AsyncVolume is { } asyncVolume)
            {
                length = (long)sqe.BlockCount * volume.BlockSize;
                StartDeferred(connection, sqe.CommandId, IoKind.WriteZeroes, ns, length, start, asyncVolume,
                    (long)sqe.StartingLba * volume.BlockSize, length, default, sqe.ForceUnitAccess || !controller.WriteCacheEnabled);
                return;
            }
            else
            {
                length = (long)sqe.BlockCount * volume.BlockSize;
                status = ToNvme(volume.WriteZeroes((long)sqe.StartingLba * volume.BlockSize, length), isWrite: true);
                if (status.IsSuccess && (sqe.ForceUnitAccess || !controller.WriteCacheEnabled))
                {
                    status = ToNvme(volume.Flush(), isWrite: true);
                }
            }
        }

        connection.Complete(sqe.CommandId, status);
        connection.CountIo(ns, IoKind.WriteZeroes, length, status.IsSuccess, start);
    }

    private static void DatasetManagement(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> inCapsuleData, long start)
    {
        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
        if (ns is null)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }

        // NR (CDW10 7:0) is 0-based; hosts may send a larger buffer than NR ranges, so NR is what counts.
        var rangesLength = (int)((sqe.Cdw10 & 0xFF) + 1) * DsmRangeSize;
        var sgl = sqe.DataPointer;
        if (sgl.Length < (uint)rangesLength)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.DataSglLengthInvalid);
            return;
        }

        if (sgl.Identifier == SglDescriptor.InCapsuleDataBlock)
        {
            if (sgl.Address + (ulong)rangesLength > (ulong)inCapsuleData.Length)
            {
                connection.Complete(sqe.CommandId, NvmeStatus.SglOffsetInvalid);
                return;
            }

            Deallocate(connection, controller, sqe, inCapsuleData.Slice((int)sgl.Address, rangesLength), start);
            return;
        }

        if (sgl.Identifier == SglDescriptor.TransportDataBlock && inCapsuleData.IsEmpty && sgl.Length <= (uint)connection.MaxDataTransfer)
        {
            connection.RequestData(sqe, ns, 0, (int)sgl.Length, fua: false, start);
            return;
        }

        connection.Complete(sqe.CommandId, NvmeStatus.SglDescriptorTypeInvalid);
    }

    /// <summary>
    /// Applies the DSM ranges (NVM command set 1.0, 3.2.3, Figure 39: context attributes@0, length in blocks@4,
    /// starting LBA@8). Without the AD attribute the ranges are only hints, which need no action.
    /// </summary>
    private static void Deallocate(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, ReadOnlySpan<byte> ranges, long start)
    {
        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId)!;
        var count = (int)(sqe.Cdw10 & 0xFF) + 1;
        var status = NvmeStatus.Success;
        long total = 0;
        if ((sqe.Cdw11 & DsmAttributeDeallocate) != 0 && ns.AsyncVolume is { } asyncVolume)
        {
            DeallocateDeferred(connection, sqe, ns, asyncVolume, ranges, count, start);
            return;
        }

        if ((sqe.Cdw11 & DsmAttributeDeallocate) != 0)
        {
            var volume = ns.Volume;
            for (var i = 0; i < count && status.IsSuccess; i++)
            {
                var range = ranges.Slice(i * DsmRangeSize, DsmRangeSize);
                var blocks = BinaryPrimitives.ReadUInt32LittleEndian(range[4..]);
                var lba = BinaryPrimitives.ReadUInt64LittleEndian(range[8..]);
                if (blocks == 0)
                {
                    continue;
                }

                if (!InRange(volume, lba, blocks))
                {
                    status = NvmeStatus.LbaOutOfRange;
                    break;
                }

                var length = (long)blocks * volume.BlockSize;
                status = ToNvme(volume.Deallocate((long)lba * volume.BlockSize, length), isWrite: true);
                total += length;
            }
        }

        connection.Complete(sqe.CommandId, status);
        connection.CountIo(ns, IoKind.Deallocate, total, status.IsSuccess, start);
    }

    /// <summary>The ranges of a Deallocate as parts of one deferred command; a range out of bounds fails it and stops.</summary>
    private static void DeallocateDeferred(NvmeTcpConnection connection, in SubmissionQueueEntry sqe, TargetNamespace ns, IAsyncBlockVolume volume, ReadOnlySpan<byte> ranges, int count, long start)
    {
        long total = 0;
        for (var i = 0; i < count; i++)
        {
            var range = ranges.Slice(i * DsmRangeSize, DsmRangeSize);
            var blocks = BinaryPrimitives.ReadUInt32LittleEndian(range[4..]);
            if (blocks != 0)
            {
                total += (long)blocks * volume.BlockSize;
            }
        }

        var slot = connection.BeginDeferred(sqe.CommandId, IoKind.Deallocate, ns, total, start);
        if (slot < 0)
        {
            connection.Complete(sqe.CommandId, NvmeStatus.CommandIdConflict);
            return;
        }

        var outcome = StorageStatus.Success;
        for (var i = 0; i < count; i++)
        {
            var range = ranges.Slice(i * DsmRangeSize, DsmRangeSize);
            var blocks = BinaryPrimitives.ReadUInt32LittleEndian(range[4..]);
            var lba = BinaryPrimitives.ReadUInt64LittleEndian(range[8..]);
            if (blocks == 0)
            {
                continue;
            }

            if (!InRange(volume, lba, blocks))
            {
                outcome = StorageStatus.OutOfRange;
                break;
            }

            StartPart(connection, slot, IoKind.Deallocate, volume, (long)lba * volume.BlockSize, (long)blocks * volume.BlockSize, default, fua: false);
        }

        connection.EndDeferred(slot, outcome);
    }

    /// <summary>True when blocks [lba, lba + count) lie inside the volume (written to never overflow).</summary>
    private static bool InRange(IBlockVolume volume, ulong lba, uint count)
    {
        // Block sizes are powers of two (IBlockVolume.BlockSize): a shift, not a 64-bit division on every command.
        var totalBlocks = (ulong)volume.SizeBytes >> BitOperations.TrailingZeroCount(volume.BlockSize);
        return lba < totalBlocks && totalBlocks - lba >= count;
    }

    internal static NvmeStatus ToNvme(StorageStatus status, bool isWrite) => status switch
    {
        StorageStatus.Success => NvmeStatus.Success,
        StorageStatus.OutOfRange => NvmeStatus.LbaOutOfRange,
        StorageStatus.CapacityExceeded => NvmeStatus.CapacityExceeded,
        StorageStatus.MediaError => isWrite ? NvmeStatus.WriteFault : NvmeStatus.UnrecoveredReadError,
        // A path status: the host's multipath retries the command on another path (NVMe base 2.0, 8.1.3.3).
        StorageStatus.PathUnavailable => NvmeStatus.AsymmetricAccessInaccessible,
        _ => NvmeStatus.NamespaceNotReady,
    };
}
