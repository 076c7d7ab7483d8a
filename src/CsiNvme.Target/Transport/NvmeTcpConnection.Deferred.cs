using System.Collections.Concurrent;
using System.Net.Sockets;
using CsiNvme.Protocol.Commands;
using CsiNvme.Protocol.Tcp;
using CsiNvme.Storage;
using CsiNvme.Target.Io;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Transport;

/// <summary>
/// Commands that complete after their handler returned: a change to an <see cref="IAsyncBlockVolume"/> (a replicated
/// volume waits for its replicas) answers <see cref="StorageStatus.Pending"/> and reports later, from another thread,
/// through <see cref="IStorageCompletion.OnCompleted"/>. Written once for both connection models.
/// </summary>
/// <remarks>
/// A deferred command takes a slot of a table sized to the queue (so it never runs out while the host respects its
/// queue size) and counts its parts: the handler holds one part while it starts the operations, and each operation that
/// answered Pending holds one until it reports. Whoever releases the last part finishes the command: the handler on
/// the receive loop completes it inline, in the batch being built; a report from elsewhere queues the slot and sends
/// the completion itself when the send lock is free, or leaves it to the loop that holds the lock, which drains the
/// queue before each send and once more after releasing the lock. A report from inside another queue's batch
/// (<see cref="SendBatch"/>: a replication link's receive loop finishing many commands) sends at that batch's end. Connections that never meet an asynchronous volume
/// pay one null check per batch.
/// </remarks>
internal sealed partial class NvmeTcpConnection : IStorageCompletion, IDeferredSend
{
    private DeferredCommand[] _deferred = [];
    private int[] _freeDeferred = [];
    private int _freeDeferredCount;
    private ConcurrentQueue<int>? _finishedDeferred;
    private int _deferredOutstanding;
    private volatile bool _loopFinished;
    private TaskCompletionSource? _drained;

    /// <summary>Deferred commands started and not yet finished (sent or, after a close, dropped).</summary>
    public int DeferredOutstanding => Volatile.Read(ref _deferredOutstanding);

    /// <summary>
    /// Completes once the connection is closed, its receive loop has ended and every deferred command it started has
    /// finished, so nothing this connection accepted can still change a volume.
    /// </summary>
    public Task WhenDrained
    {
        get
        {
            var drained = LazyInitializer.EnsureInitialized(ref _drained, static () => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            CheckDrained();
            return drained.Task;
        }
    }

    /// <summary>
    /// Starts tracking a command whose outcome may arrive later and takes the handler's part of it. Returns the slot to
    /// pass as the cookie of each Start call (after <see cref="AddDeferredPart"/>), or -1 when every slot is busy (the
    /// host has more commands outstanding than its queue holds).
    /// </summary>
    public int BeginDeferred(ushort commandId, IoKind kind, TargetNamespace? ns, long bytes, long startTimestamp)
    {
        if (_freeDeferredCount == 0)
        {
            return -1;
        }

        var slot = _freeDeferred[--_freeDeferredCount];
        ref var command = ref _deferred[slot];
        command.CommandId = commandId;
        command.Kind = kind;
        command.Namespace = ns;
        command.Bytes = bytes;
        command.StartTimestamp = startTimestamp;
        command.Status = (int)StorageStatus.Success;
        Volatile.Write(ref command.Parts, 1);
        Interlocked.Increment(ref _deferredOutstanding);
        return slot;
    }

    /// <summary>Takes one more part of a deferred command; call before the Start call that may answer Pending.</summary>
    public void AddDeferredPart(int slot) => Interlocked.Increment(ref _deferred[slot].Parts);

    /// <summary>Gives back the part of a Start call that answered at once instead of Pending.</summary>
    public void DeferredPartDone(int slot, StorageStatus status)
    {
        RecordStatus(ref _deferred[slot], status);
        // The handler still holds its own part, so this never finishes the command.
        Interlocked.Decrement(ref _deferred[slot].Parts);
    }

    /// <summary>
    /// Gives back the handler's part, with the handler's own outcome (a failure found before or between its Start calls).
    /// When every operation already reported, the command completes here, in the batch
    /// being built (the caller is the receive loop and holds the send lock).
    /// </summary>
    public void EndDeferred(int slot, StorageStatus status = StorageStatus.Success)
    {
        RecordStatus(ref _deferred[slot], status);
        if (Interlocked.Decrement(ref _deferred[slot].Parts) == 0)
        {
            FinishDeferredLocked(slot);
        }
    }

    /// <summary>An operation that answered Pending reports, from any thread.</summary>
    public void OnCompleted(ulong cookie, StorageStatus status)
    {
        var slot = (int)cookie;
        ref var command = ref _deferred[slot];
        RecordStatus(ref command, status);
        if (Interlocked.Decrement(ref command.Parts) != 0)
        {
            return;
        }

        _finishedDeferred!.Enqueue(slot);
        if (!SendBatch.TryDefer(this))
        {
            DrainFinishedDeferred();
        }
    }

    /// <summary>Sends the completions a <see cref="SendBatch"/> put off (the reporting thread's batch ended).</summary>
    void IDeferredSend.SendDeferred() => DrainFinishedDeferred();

    /// <summary>Sizes the deferred table to the queue; called once the queue size is known (Connect).</summary>
    private void InitializeDeferred(int queueEntries)
    {
        _deferred = new DeferredCommand[queueEntries];
        _freeDeferred = new int[queueEntries];
        for (var i = 0; i < queueEntries; i++)
        {
            _freeDeferred[i] = queueEntries - 1 - i;
        }

        _freeDeferredCount = queueEntries;
        _finishedDeferred = new ConcurrentQueue<int>();
    }

    private static void RecordStatus(ref DeferredCommand command, StorageStatus status)
    {
        if (status != StorageStatus.Success)
        {
            // The first failure is the command's outcome.
            Interlocked.CompareExchange(ref command.Status, (int)status, (int)StorageStatus.Success);
        }
    }

    /// <summary>Queues the completion of a finished deferred command and frees its slot (send lock held).</summary>
    private void FinishDeferredLocked(int slot)
    {
        ref var command = ref _deferred[slot];
        var storageStatus = (StorageStatus)Volatile.Read(ref command.Status);
        var status = IoCommandHandler.ToNvme(storageStatus, isWrite: true);
        if (!IsClosed)
        {
            Complete(command.CommandId, status);
            // Deallocate and Flush report their own byte counts; a failed command counts no bytes.
            CountIo(command.Namespace, command.Kind, command.Bytes, status.IsSuccess, command.StartTimestamp);
        }

        command.Namespace = null;
        _freeDeferred[_freeDeferredCount++] = slot;
        Interlocked.Decrement(ref _deferredOutstanding);
        CheckDrained();
    }

    /// <summary>Adds every deferred command that finished elsewhere to the batch being built (send lock held).</summary>
    private void DrainFinishedDeferredLocked()
    {
        var queue = _finishedDeferred;
        if (queue is null)
        {
            return;
        }

        while (queue.TryDequeue(out var slot))
        {
            if (_sendBuffer.Length - _sendLength < _maxResponseBytes && !IsClosed)
            {
                SendBatchFromAnyThread();
            }

            FinishDeferredLocked(slot);
        }
    }

    /// <summary>
    /// Sends the completions of deferred commands that finished off the receive loop. When the loop holds the send lock
    /// it sends them with its batch (it drains before each send and after releasing the lock), so this never waits.
    /// </summary>
    private void DrainFinishedDeferred()
    {
        var queue = _finishedDeferred;
        while (queue is not null && !queue.IsEmpty)
        {
            if (!_sendLock.Wait(0))
            {
                return;
            }

            try
            {
                DrainFinishedDeferredLocked();
                if (_sendLength > 0 && !IsClosed)
                {
                    SendBatchFromAnyThread();
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
            {
                _sendLength = 0;
                Close("send failed");
            }
            finally
            {
                _sendLock.Release();
            }
        }
    }

    /// <summary>Releases the send lock, then sends whatever deferred command finished while it was held.</summary>
    private void ReleaseSendLock()
    {
        _sendLock.Release();
        if (_finishedDeferred is { IsEmpty: false })
        {
            DrainFinishedDeferred();
        }
    }

    /// <summary>
    /// A blocking send of the batch, valid in both models: a socket used asynchronously emulates blocking calls. Used
    /// only for completions that finished off the loop, where no receive batch is in progress.
    /// </summary>
    private void SendBatchFromAnyThread()
    {
        if (_tls is not null)
        {
            _tls.Send(_sendBuffer.AsSpan(0, _sendLength));
            _sendLength = 0;
            return;
        }

        var offset = 0;
        while (offset < _sendLength)
        {
            offset += _socket.Send(_sendBuffer.AsSpan(offset, _sendLength - offset), SocketFlags.None);
        }

        _sendLength = 0;
    }

    /// <summary>Marks the receive loop as ended; deferred commands still running finish without sending.</summary>
    private void LoopFinished()
    {
        _loopFinished = true;
        if (_finishedDeferred is not null && _sendLock.Wait(0))
        {
            try
            {
                DrainFinishedDeferredLocked();
            }
            finally
            {
                _sendLock.Release();
            }
        }

        CheckDrained();
    }

    private void CheckDrained()
    {
        if (_drained is { } drained && _loopFinished && IsClosed && Volatile.Read(ref _deferredOutstanding) == 0)
        {
            drained.TrySetResult();
        }
    }

    /// <summary>A command whose outcome comes later; only its slot's owner (handler or last reporter) touches the fields.</summary>
    private struct DeferredCommand
    {
        public int Parts;
        public int Status;
        public ushort CommandId;
        public IoKind Kind;
        public TargetNamespace? Namespace;
        public long Bytes;
        public long StartTimestamp;
    }
}
