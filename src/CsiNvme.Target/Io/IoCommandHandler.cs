using System.Buffers.Binary;
using System.Numerics;
using CsiNvme.Protocol.Commands;
using CsiNvme.Storage;
using CsiNvme.Target.Controllers;
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
            case IoOpcode.Fabrics when sqe.FabricsCommandType == (byte)FabricsCommandType.Connect:
                // Refused there as out of sequence, and logged like every refused Connect.
                ConnectHandler.Handle(connection, sqe, inCapsuleData);
                return;
            case IoOpcode.Fabrics:
                // Only Connect is valid on an I/O queue, and only as its first command.
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
                else
                {
                    status = ToNvme(ns!.Volume.Write(offset, inCapsuleData.Slice((int)sgl.Address, length), fua), isWrite: true);
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

    /// <summary>Completes a data-out command once all its H2CData has arrived.</summary>
    public static void FinishDataOut(NvmeTcpConnection connection, Controller controller, in PendingTransfer transfer)
    {
        var ns = transfer.Namespace;
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

        Deallocate(connection, controller, transfer.Command, transfer.Buffer.AsSpan(0, transfer.Length), transfer.StartTimestamp);
    }

    private static void Flush(NvmeTcpConnection connection, Controller controller, in SubmissionQueueEntry sqe, long start)
    {
        var status = NvmeStatus.Success;
        if (sqe.NamespaceId == 0xFFFF_FFFF)
        {
            foreach (var each in controller.Subsystem.Namespaces)
            {
                var result = ToNvme(each.Volume.Flush(), isWrite: true);
                status = status.IsSuccess ? result : status;
            }

            connection.Complete(sqe.CommandId, status);
            return;
        }

        var ns = controller.Subsystem.FindNamespace(sqe.NamespaceId);
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

    /// <summary>True when blocks [lba, lba + count) lie inside the volume (written to never overflow).</summary>
    private static bool InRange(IBlockVolume volume, ulong lba, uint count)
    {
        // Block sizes are powers of two (IBlockVolume.BlockSize): a shift, not a 64-bit division on every command.
        var totalBlocks = (ulong)volume.SizeBytes >> BitOperations.TrailingZeroCount(volume.BlockSize);
        return lba < totalBlocks && totalBlocks - lba >= count;
    }

    private static NvmeStatus ToNvme(StorageStatus status, bool isWrite) => status switch
    {
        StorageStatus.Success => NvmeStatus.Success,
        StorageStatus.OutOfRange => NvmeStatus.LbaOutOfRange,
        StorageStatus.CapacityExceeded => NvmeStatus.CapacityExceeded,
        StorageStatus.MediaError => isWrite ? NvmeStatus.WriteFault : NvmeStatus.UnrecoveredReadError,
        _ => NvmeStatus.NamespaceNotReady,
    };
}
