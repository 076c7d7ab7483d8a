using System.Diagnostics;
using CsiNvme.Host;
using CsiNvme.Storage;

namespace CsiNvme.Replication;

// Changes in the write order: started under the lock, applied locally, sent to the replicas, held behind barriers,
// completed once every in-sync replica has them (or has been recorded out of sync).
public sealed partial class ReplicatedVolume
{
    private StorageStatus Start(ReplicationOp op, IStorageCompletion completion, ulong cookie)
    {
        op.Completion = completion;
        op.Cookie = cookie;
        bool finishNow;
        StorageStatus immediate;
        lock (_gate)
        {
            if (_closing)
            {
                immediate = StorageStatus.PathUnavailable;
                finishNow = false;
            }
            else if (_replicas.Length == 0 && !_paused && _waiting.Count == 0)
            {
                // No replica at all: the change is the primary's copy's alone, done at once.
                immediate = ApplyLocally(op);
                finishNow = false;
            }
            else
            {
                immediate = StorageStatus.Pending;
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
        }

        if (immediate != StorageStatus.Pending)
        {
            _pool.Return(op);
            return immediate;
        }

        if (finishNow)
        {
            Finish(op);
        }

        return StorageStatus.Pending;
    }

    private bool MustWaitLocked(ReplicationOp op)
    {
        if (_paused || _waiting.Count > 0)
        {
            return true;
        }

        foreach (var barrier in _barriers)
        {
            if (barrier.Overlaps(op))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Applies the op to the primary's copy (or reads what a copy or check needs from it).</summary>
    private StorageStatus ApplyLocally(ReplicationOp op) => op.Kind switch
    {
        OpKind.Write => _local.Write(op.Offset, op.Buffer.AsSpan(0, op.DataLength), op.ForceUnitAccess),
        OpKind.WriteZeroes => ApplyWriteZeroes(op),
        OpKind.Deallocate => _local.Deallocate(op.Offset, op.Length),
        OpKind.Copy or OpKind.Verify => _local.Read(op.Offset, op.Buffer.AsSpan(0, op.DataLength)),
        _ => StorageStatus.Success,
    };

    private StorageStatus ApplyWriteZeroes(ReplicationOp op)
    {
        var status = _local.WriteZeroes(op.Offset, op.Length);
        return status == StorageStatus.Success && op.ForceUnitAccess ? _local.Flush() : status;
    }

    /// <summary>
    /// Applies the op to the primary's copy and sends it to every replica that takes part; true when it is already
    /// finished (nothing to send, or every send refused) and the caller must finish it outside the lock.
    /// </summary>
    private bool SubmitLocked(ReplicationOp op)
    {
        op.Submitted = true;
        _submittedInFlight++;
        op.Outcome = ApplyLocally(op);
        if (op.Outcome != StorageStatus.Success)
        {
            return true;
        }

        ReplicaEntry[] targets;
        if (op.Kind is OpKind.Copy or OpKind.Verify)
        {
            targets = op.Targets;
        }
        else
        {
            var replicas = _replicas;
            var count = 0;
            foreach (var replica in replicas)
            {
                if (replica.Link is not null)
                {
                    count++;
                }
                else if (op.IsChange)
                {
                    replica.Dirty.Mark(op.Offset, op.Length);
                    if (replica.OutOfSyncRecord is { } record && !(record.IsCompletedSuccessfully && record.Result))
                    {
                        // Dropped while in sync and not yet recorded: this change skips it, so it too waits for the record.
                        op.SkippedRecord = op.SkippedRecord is null ? record : Both(op.SkippedRecord, record);
                    }
                }
            }

            targets = count == replicas.Length ? replicas : replicas.Where(r => r.Link is not null).ToArray();
            op.Targets = targets;
        }

        var commands = 0;
        foreach (var target in targets)
        {
            if (op.IsChange)
            {
                // What the replica could lose in a power failure until a flush completes on it.
                target.Unflushed.Mark(op.Offset, op.Length);
            }
            else if (op.Kind == OpKind.Flush)
            {
                target.FlushesInFlight.Add((op, target.Unflushed));
                target.Unflushed = new RegionMap(SizeBytes, _options.RegionSize);
            }

            commands += target.Link!.CommandCount(op);
            if (op.Kind is OpKind.Write or OpKind.Copy or OpKind.Verify && op.DataLength > target.Link.InCapsuleLimit)
            {
                op.IsBarrier = true;
            }
        }

        if (commands == 0)
        {
            return true;
        }

        op.Remaining = commands;
        op.SentAt = Stopwatch.GetTimestamp();
        if (op.IsBarrier)
        {
            _barriers.Add(op);
        }

        var refused = 0;
        for (var i = 0; i < targets.Length; i++)
        {
            var link = targets[i].Link!;
            op.Links[i] = link;
            if (!link.Submit(op, i))
            {
                op.FailedMask |= 1 << i;
                refused += link.CommandCount(op);
            }
        }

        return refused > 0 && Interlocked.Add(ref op.Remaining, -refused) == 0;
    }

    /// <summary>One replica command of an op completed (on the link's receive loop, or a pool thread for a refused send).</summary>
    internal void OnReplicaCommandDone(ReplicationOp op, int index, NvmeCompletion completion)
    {
        op.Links[index]?.CommandDone();
        if (!completion.IsSuccess)
        {
            Interlocked.Or(ref op.FailedMask, 1 << index);
        }

        if (Interlocked.Decrement(ref op.Remaining) == 0)
        {
            Finish(op);
        }
    }

    /// <summary>
    /// All of an op's replica commands are done: drops the replicas that failed, releases what waited behind it, and
    /// completes it once any out-of-sync record it depends on is durable.
    /// </summary>
    private void Finish(ReplicationOp op)
    {
        if (Observer is { } observer && op.Completion is not null && op.SentAt != 0 && op.Kind is not (OpKind.Copy or OpKind.Verify))
        {
            observer.Replicated(op.Kind == OpKind.Flush, Stopwatch.GetTimestamp() - op.SentAt);
        }

        var record = op.SkippedRecord;
        List<ReplicationOp>? finishedToo = null;
        lock (_gate)
        {
            if (op.IsBarrier)
            {
                _barriers.Remove(op);
            }

            if (op.Submitted)
            {
                _submittedInFlight--;
            }

            for (var i = 0; i < op.Targets.Length; i++)
            {
                var target = op.Targets[i];
                if (op.Kind == OpKind.Flush)
                {
                    // Succeeded: the regions it covered are durable there. Failed: the drop below takes them over.
                    var index = target.FlushesInFlight.FindIndex(f => ReferenceEquals(f.Op, op));
                    if (index >= 0)
                    {
                        if ((op.FailedMask & (1 << i)) != 0)
                        {
                            target.Dirty.UnionWith(target.FlushesInFlight[index].Covered);
                        }

                        target.FlushesInFlight.RemoveAt(index);
                    }
                }

                if ((op.FailedMask & (1 << i)) == 0)
                {
                    if (op.IsChange)
                    {
                        Interlocked.Increment(ref target.WritesReplicated);
                    }

                    continue;
                }

                Interlocked.Increment(ref target.WritesFailed);
                if (op.Kind is OpKind.Verify)
                {
                    continue;
                }

                if (op.IsChange)
                {
                    target.Dirty.Mark(op.Offset, op.Length);
                }

                // Only the link the command went on fails: a new link given for a rebuild meanwhile stays.
                if (ReferenceEquals(target.Link, op.Links[i]))
                {
                    DropLocked(target, "a replicated command failed");
                }

                if (target.OutOfSyncRecord is { } pending)
                {
                    record = record is null ? pending : Both(record, pending);
                }
            }

            ReleaseWaitingLocked(ref finishedToo);
            if (_submittedInFlight == 0 && _pauseDone is { } paused)
            {
                _pauseDone = null;
                paused.TrySetResult();
            }
        }

        if (record is null || record.IsCompletedSuccessfully && record.Result)
        {
            Complete(op, recorded: true);
        }
        else
        {
            record.ContinueWith(static (t, state) =>
            {
                var (volume, pending) = ((ReplicatedVolume, ReplicationOp))state!;
                volume.Complete(pending, recorded: t.IsCompletedSuccessfully && t.Result);
            }, (this, op), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        if (finishedToo is not null)
        {
            foreach (var other in finishedToo)
            {
                Finish(other);
            }
        }
    }

    private static async Task<bool> Both(Task<bool> first, Task<bool> second) => await first.ConfigureAwait(false) & await second.ConfigureAwait(false);

    /// <summary>Sends the waiting ops, in order, until one must still wait.</summary>
    private void ReleaseWaitingLocked(ref List<ReplicationOp>? finished)
    {
        while (_waiting.Count > 0 && !_paused)
        {
            var next = _waiting.Peek();
            var overlaps = false;
            foreach (var barrier in _barriers)
            {
                if (barrier.Overlaps(next))
                {
                    overlaps = true;
                    break;
                }
            }

            if (overlaps)
            {
                return;
            }

            _waiting.Dequeue();
            if (SubmitLocked(next))
            {
                (finished ??= new()).Add(next);
            }
        }
    }

    private void Complete(ReplicationOp op, bool recorded)
    {
        var status = op.Outcome;
        if (status == StorageStatus.Success && (!recorded || !_lease.IsValid))
        {
            // Either the metadata could not record a failed replica, or this node lost its lease meanwhile: the host
            // retries the command (on the new primary, if there is one).
            status = StorageStatus.PathUnavailable;
        }

        if (op.Done is { } done)
        {
            var equal = status == StorageStatus.Success && op.FailedMask == 0 &&
                (op.Kind != OpKind.Verify || op.Buffer.AsSpan(0, op.DataLength).SequenceEqual(op.Buffer.AsSpan(op.DataLength, op.DataLength)));
            _pool.Return(op);
            done.TrySetResult(equal);
        }
        else
        {
            var completion = op.Completion!;
            var cookie = op.Cookie;
            _pool.Return(op);
            completion.OnCompleted(cookie, status);
        }

        if (Interlocked.Decrement(ref _inFlight) == 0)
        {
            lock (_gate)
            {
                if (_closing && _closed is { } closed)
                {
                    _closed = null;
                    closed.TrySetResult();
                }
            }
        }
    }
}
