using CsiNvme.Protocol.Commands;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Transport;

/// <summary>
/// A command waiting for host data after an R2T, found again by its transfer tag (TTAG), never by CID
/// (TCP 1.0, 3.3.2.1: the TTAG is what the controller chose to identify the transfer).
/// </summary>
internal struct PendingTransfer
{
    public bool Active;
    public ushort CommandId;
    public byte Opcode;
    public TargetNamespace? Namespace;
    public SubmissionQueueEntry Command;
    /// <summary>Byte offset in the volume where the data lands (writes stream straight to storage).</summary>
    public long VolumeOffset;
    public int Length;
    public int Received;
    public bool ForceUnitAccess;
    public NvmeStatus Status;
    /// <summary>For data-out commands other than Write (e.g. Dataset Management): the data is gathered here first.</summary>
    public byte[]? Buffer;
    public long StartTimestamp;
    /// <summary>
    /// For a Write to an asynchronous volume: the deferred command its chunks report to (each chunk is started as a
    /// part of it, with FUA when the command asked for it); -1 otherwise.
    /// </summary>
    public int DeferredSlot;
}
