using CsiNvme.Storage;

namespace CsiNvme.Replication;

// Rebuild support (copies and checks in the write order) and quiescing (pause, flush, resume, close).
public sealed partial class ReplicatedVolume
{
    // ---- rebuild support ----

    /// <summary>
    /// Copies a range of the primary's copy to one replica, in the write order (read and send under the lock, a barrier
    /// for later overlapping changes). True when the replica acknowledged it.
    /// </summary>
    public Task<bool> CopyAsync(string node, long offset, int length) => StartInternal(OpKind.Copy, node, offset, length);

    /// <summary>Reads a range from the primary's copy and from one replica at one point of the write order and compares them.</summary>
    public Task<bool> VerifyAsync(string node, long offset, int length) => StartInternal(OpKind.Verify, node, offset, length);

    private Task<bool> StartInternal(OpKind kind, string node, long offset, int length)
    {
        var op = _pool.Rent();
        op.Kind = kind;
        op.Offset = offset;
        op.Length = length;
        op.RentBuffer(kind == OpKind.Verify ? length * 2 : length);
        op.DataLength = length;
        op.Done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = op.Done.Task;
        bool finishNow;
        lock (_gate)
        {
            var target = _replicas.FirstOrDefault(r => r.Node == node);
            if (target?.Link is null || _closing)
            {
                _pool.Return(op);
                return Task.FromResult(false);
            }

            op.Targets = [target];
            Interlocked.Increment(ref _inFlight);
            if (MustWaitLocked(op))
            {
                _waiting.Enqueue(op);
                finishNow = false;
            }
            else
            {
                finishNow = SubmitLocked(op);
            }
        }

        if (finishNow)
        {
            Finish(op);
        }

        return done;
    }

    // ---- quiesce ----

    /// <summary>
    /// Holds every new change (applied nowhere, queued in order) and completes once the changes already sent have
    /// completed on every replica: the volume then has the same content everywhere, the point where a snapshot, a
    /// clone or a resize is taken on all replicas. <see cref="Resume"/> lets the held changes go.
    /// </summary>
    public Task PauseAsync()
    {
        lock (_gate)
        {
            _paused = true;
            if (_submittedInFlight == 0)
            {
                return Task.CompletedTask;
            }

            _pauseDone ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _pauseDone.Task;
        }
    }

    /// <summary>
    /// <see cref="PauseAsync"/>, then a flush of the primary's copy and of every replica taking part, past the pause: on
    /// return the copies are identical and durable, and no replica has changes it has not flushed (a planned handover
    /// then has nothing to resync). True when every replica flushed.
    /// </summary>
    public async Task<bool> PauseAndFlushAsync()
    {
        await PauseAsync().ConfigureAwait(false);
        if (_local.Flush() != StorageStatus.Success)
        {
            return false;
        }

        var op = _pool.Rent();
        op.Kind = OpKind.Flush;
        op.Done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = op.Done.Task;
        bool finishNow;
        lock (_gate)
        {
            Interlocked.Increment(ref _inFlight);
            // Submitted directly: the pause holds the hosts' changes, not this flush.
            finishNow = SubmitLocked(op);
        }

        if (finishNow)
        {
            Finish(op);
        }

        return await done.ConfigureAwait(false);
    }

    public void Resume()
    {
        List<ReplicationOp>? finished = null;
        lock (_gate)
        {
            _paused = false;
            ReleaseWaitingLocked(ref finished);
        }

        if (finished is not null)
        {
            foreach (var op in finished)
            {
                Finish(op);
            }
        }
    }

    /// <summary>
    /// Stops taking changes (new ones fail with a path status, for the host to retry on the next primary), fails the
    /// changes held by a pause or behind a barrier the same way (they were applied nowhere), and completes once every
    /// change already sent has completed: the volume can then stop being primary here.
    /// </summary>
    public Task CloseAsync()
    {
        List<ReplicationOp> held;
        Task result;
        lock (_gate)
        {
            _closing = true;
            _paused = false;
            held = [.. _waiting];
            _waiting.Clear();
            if (Volatile.Read(ref _inFlight) == held.Count)
            {
                result = Task.CompletedTask;
            }
            else
            {
                _closed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                result = _closed.Task;
            }
        }

        foreach (var op in held)
        {
            op.Outcome = StorageStatus.PathUnavailable;
            Complete(op, recorded: true);
        }

        return result;
    }
}
