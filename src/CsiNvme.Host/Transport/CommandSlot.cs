using System.Threading.Tasks.Sources;
using CsiNvme.Protocol.Commands;

namespace CsiNvme.Host.Transport;

internal enum SlotState : byte
{
    Free,
    Outstanding,
    Completed,
}

/// <summary>
/// One entry of a queue's command table, reused for every command that gets its CID. It is the
/// <see cref="IValueTaskSource{TResult}"/> behind the command's ValueTask, so completing a command allocates nothing.
/// The caller must await each ValueTask exactly once: reading the result returns the slot to the free list. A command
/// submitted with an <see cref="INvmeCompletionCallback"/> instead returns the slot when it completes, then calls it.
/// </summary>
internal sealed class CommandSlot : IValueTaskSource<NvmeCompletion>
{
    // Linux keeps a generation counter in the top bits of the CID so a late completion for an older command on the same
    // slot is recognised; 4 bits of generation leave 12 for the index.
    public const int IndexBits = 12;
    public const int MaxSlots = 1 << IndexBits;

    private readonly QueuePair _owner;
    private ManualResetValueTaskSourceCore<NvmeCompletion> _core;
    private INvmeCompletionCallback? _callback;
    private byte _generation;

    public CommandSlot(QueuePair owner, int index)
    {
        _owner = owner;
        Index = index;
        // Continuations run inline on the receive loop: a completion resumes the caller, which usually submits the next
        // command into the same send batch (run to completion, no task hop per command).
        _core.RunContinuationsAsynchronously = false;
    }

    public int Index { get; }

    public ushort CommandId { get; private set; }

    public SlotState State { get; set; }

    /// <summary>Data the host sends (writes, in-capsule admin data); empty otherwise.</summary>
    public ReadOnlyMemory<byte> DataOut { get; private set; }

    /// <summary>Where C2H data goes (reads, Identify, logs); empty otherwise.</summary>
    public Memory<byte> DataIn { get; private set; }

    /// <summary>Bytes of C2H data received so far; C2HData PDUs of one command arrive in order (TCP 1.0, 3.6.2.8).</summary>
    public int Received { get; set; }

    /// <summary>Reads whose completion must be preceded by exactly DataIn.Length bytes.</summary>
    public bool ExactData { get; private set; }

    /// <summary>Set when a data PDU of the command failed its digest; reported instead of the CQE status.</summary>
    public NvmeStatus DataError { get; set; } = NvmeStatus.Success;

    // The current R2T: TTAG, next offset to send, end of the solicited range.
    public ushort TransferTag { get; set; }

    public int H2COffset { get; set; }

    public int H2CEnd { get; set; }

    /// <summary>16 bytes of scratch for a single-range Dataset Management command.</summary>
    public byte[] Scratch { get; } = new byte[16];

    public short Version => _core.Version;

    public void Begin(ReadOnlyMemory<byte> dataOut, Memory<byte> dataIn, bool exactData, INvmeCompletionCallback? callback = null)
    {
        _callback = callback;
        _generation = (byte)((_generation + 1) & 0xF);
        CommandId = (ushort)((_generation << IndexBits) | Index);
        DataOut = dataOut;
        DataIn = dataIn;
        ExactData = exactData;
        Received = 0;
        DataError = NvmeStatus.Success;
        H2COffset = H2CEnd = 0;
        State = SlotState.Outstanding;
    }

    /// <summary>Completes the command; must not be called with the queue lock held (the continuation runs here).</summary>
    public void Complete(NvmeCompletion completion)
    {
        State = SlotState.Completed;
        DataOut = default;
        DataIn = default;
        if (_callback is { } callback)
        {
            // Free before the callback runs, so it can submit the next command into this very slot.
            _callback = null;
            _owner.Release(this);
            callback.OnCompleted(completion);
            return;
        }

        _core.SetResult(completion);
    }

    public NvmeCompletion GetResult(short token)
    {
        var result = _core.GetResult(token);
        _core.Reset();
        _owner.Release(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
