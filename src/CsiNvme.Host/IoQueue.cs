using CsiNvme.Host.Transport;
using CsiNvme.Protocol.Commands;

namespace CsiNvme.Host;

/// <summary>
/// An I/O queue pair of a controller (one TCP connection). Any number of commands up to <see cref="Depth"/> may be
/// outstanding; each returned ValueTask must be awaited exactly once. Continuations run on the queue's receive loop, so
/// they must not block. Buffers are only read or written until the command completes; nothing is allocated per command.
/// </summary>
public sealed class IoQueue
{
    // PSDT 01b: data described by SGLs, which every NVMe/TCP command uses (Linux NVME_CMD_SGL_METABUF).
    private const byte SglFlags = 0x40;
    private const uint ForceUnitAccessBit = 1u << 30;
    private const uint DeallocateBit = 1u << 25;

    internal IoQueue(QueuePair pair)
    {
        Pair = pair;
    }

    internal QueuePair Pair { get; }

    public ushort QueueId => Pair.QueueId;

    /// <summary>Commands that may be outstanding at once (queue size minus one).</summary>
    public int Depth => Pair.Depth;

    public bool IsConnected => Pair.IsConnected;

    /// <summary>Writes up to this many bytes travel in the command capsule; larger ones wait for the controller's R2T.</summary>
    public int InCapsuleDataLimit => Pair.InCapsuleLimit;

    /// <summary>Largest transfer of one command.</summary>
    public int MaxTransferSize => Pair.MaxDataTransfer;

    public ValueTask<NvmeCompletion> ReadAsync(NvmeNamespace ns, ulong lba, Memory<byte> destination) =>
        Pair.Submit(ReadCommand(ns, lba, destination.Length), default, destination, exactData: true);

    public ValueTask<NvmeCompletion> WriteAsync(NvmeNamespace ns, ulong lba, ReadOnlyMemory<byte> source, bool forceUnitAccess = false) =>
        Pair.Submit(WriteCommand(ns, lba, source.Length, forceUnitAccess), source, default, exactData: false);

    /// <summary>
    /// Reads into <paramref name="destination"/> and reports to <paramref name="callback"/> instead of a ValueTask; false
    /// (and no callback) when the queue is not connected.
    /// </summary>
    public bool TrySubmitRead(NvmeNamespace ns, ulong lba, Memory<byte> destination, INvmeCompletionCallback callback) =>
        Pair.TrySubmit(ReadCommand(ns, lba, destination.Length), default, destination, exactData: true, callback);

    /// <summary>
    /// Writes <paramref name="source"/> and reports to <paramref name="callback"/> instead of a ValueTask; false (and no
    /// callback) when the queue is not connected.
    /// </summary>
    public bool TrySubmitWrite(NvmeNamespace ns, ulong lba, ReadOnlyMemory<byte> source, INvmeCompletionCallback callback, bool forceUnitAccess = false) =>
        Pair.TrySubmit(WriteCommand(ns, lba, source.Length, forceUnitAccess), source, default, exactData: false, callback);

    /// <summary>
    /// Runs any I/O command the library has no method for (e.g. the reservation commands): <paramref name="dataOut"/>
    /// goes to the controller, <paramref name="dataIn"/> receives what it returns; the CID and SGL are filled in.
    /// </summary>
    public ValueTask<NvmeCompletion> ExecuteAsync(SubmissionQueueEntry sqe, ReadOnlyMemory<byte> dataOut = default, Memory<byte> dataIn = default) =>
        Pair.Submit(sqe, dataOut, dataIn, exactData: false);

    public ValueTask<NvmeCompletion> FlushAsync(NvmeNamespace ns) => Pair.Submit(FlushCommand(ns), default, default, exactData: false);

    /// <summary>Flush reporting to <paramref name="callback"/>; false (and no callback) when the queue is not connected.</summary>
    public bool TrySubmitFlush(NvmeNamespace ns, INvmeCompletionCallback callback) =>
        Pair.TrySubmit(FlushCommand(ns), default, default, exactData: false, callback);

    /// <summary>Write Zeroes reporting to <paramref name="callback"/>; false (and no callback) when the queue is not connected.</summary>
    public bool TrySubmitWriteZeroes(NvmeNamespace ns, ulong lba, uint blocks, bool deallocate, bool forceUnitAccess, INvmeCompletionCallback callback) =>
        Pair.TrySubmit(WriteZeroesCommand(ns, lba, blocks, deallocate, forceUnitAccess), default, default, exactData: false, callback);

    /// <summary>
    /// Dataset Management with the ranges of <paramref name="ranges"/> (kept until completion) reporting to
    /// <paramref name="callback"/>; false (and no callback) when the queue is not connected.
    /// </summary>
    public bool TrySubmitDatasetManagement(NvmeNamespace ns, ReadOnlyMemory<byte> ranges, bool deallocate, INvmeCompletionCallback callback) =>
        Pair.TrySubmit(DatasetManagementCommand(ns, ranges, deallocate), ranges, default, exactData: false, callback);

    private static SubmissionQueueEntry FlushCommand(NvmeNamespace ns) =>
        new((byte)IoOpcode.Flush, SglFlags, 0, ns.NamespaceId, default, 0, 0, 0, 0, 0, 0);

    /// <summary>Write Zeroes (NVM command set 1.0, 3.3.7); with <paramref name="deallocate"/> the controller may unmap.</summary>
    public ValueTask<NvmeCompletion> WriteZeroesAsync(NvmeNamespace ns, ulong lba, uint blocks, bool deallocate = false) =>
        Pair.Submit(WriteZeroesCommand(ns, lba, blocks, deallocate, forceUnitAccess: false), default, default, exactData: false);

    private static SubmissionQueueEntry WriteZeroesCommand(NvmeNamespace ns, ulong lba, uint blocks, bool deallocate, bool forceUnitAccess)
    {
        if (blocks is 0 or > 0x10000)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), "1..65536 blocks per command");
        }

        return new SubmissionQueueEntry((byte)IoOpcode.WriteZeroes, SglFlags, 0, ns.NamespaceId, default,
            (uint)lba, (uint)(lba >> 32), (blocks - 1) | (deallocate ? DeallocateBit : 0) | (forceUnitAccess ? ForceUnitAccessBit : 0), 0, 0, 0);
    }

    /// <summary>
    /// Dataset Management (NVM command set 1.0, 3.3.3) over <paramref name="ranges"/>, 16 bytes per range (see
    /// <see cref="WriteRange"/>); with <paramref name="deallocate"/> (AD) the ranges are unmapped.
    /// </summary>
    public ValueTask<NvmeCompletion> DatasetManagementAsync(NvmeNamespace ns, ReadOnlyMemory<byte> ranges, bool deallocate = true) =>
        Pair.Submit(DatasetManagementCommand(ns, ranges, deallocate), ranges, default, exactData: false);

    private static SubmissionQueueEntry DatasetManagementCommand(NvmeNamespace ns, ReadOnlyMemory<byte> ranges, bool deallocate)
    {
        var count = ranges.Length / 16;
        if (count is 0 or > 256 || ranges.Length % 16 != 0)
        {
            throw new ArgumentException("1..256 ranges of 16 bytes", nameof(ranges));
        }

        return new SubmissionQueueEntry((byte)IoOpcode.DatasetManagement, SglFlags, 0, ns.NamespaceId, default,
            (uint)(count - 1), deallocate ? 1u << 2 : 0, 0, 0, 0, 0);
    }

    /// <summary>Writes one DSM range (Figure 38 of the NVM command set): context attributes, length in blocks, starting LBA.</summary>
    public static void WriteRange(Span<byte> destination, ulong lba, uint blocks, uint contextAttributes = 0)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination, contextAttributes);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], blocks);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], lba);
    }

    private static SubmissionQueueEntry ReadCommand(NvmeNamespace ns, ulong lba, int length) =>
        new((byte)IoOpcode.Read, SglFlags, 0, ns.NamespaceId, default, (uint)lba, (uint)(lba >> 32), BlockCount(ns, length) - 1, 0, 0, 0);

    private static SubmissionQueueEntry WriteCommand(NvmeNamespace ns, ulong lba, int length, bool forceUnitAccess) =>
        new((byte)IoOpcode.Write, SglFlags, 0, ns.NamespaceId, default, (uint)lba, (uint)(lba >> 32),
            (BlockCount(ns, length) - 1) | (forceUnitAccess ? ForceUnitAccessBit : 0), 0, 0, 0);

    private static uint BlockCount(NvmeNamespace ns, int length)
    {
        if (length == 0 || length % ns.BlockSize != 0 || length / ns.BlockSize > 0x10000)
        {
            throw new ArgumentException($"a transfer of {length} bytes is not 1..65536 blocks of {ns.BlockSize} bytes");
        }

        return (uint)(length / ns.BlockSize);
    }
}
