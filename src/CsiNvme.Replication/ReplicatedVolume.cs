using System.Buffers.Binary;
using System.Diagnostics;
using CsiNvme.Host;
using CsiNvme.Storage;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Replication;

/// <summary>
/// A volume on its primary: every change is applied to the primary's own copy and sent to every replica, and completes
/// when each in-sync replica has it (primary-copy replication). Reads come from the primary's copy.
/// </summary>
/// <remarks>
/// <para>
/// Order: applying a change to the primary's copy and sending it to the replicas happen under one lock, and each replica
/// has one queue that applies commands in arrival order, so overlapping changes land in the same order everywhere. The
/// one exception is a write too large for a command capsule: the replica receives its data after an R2T and could apply
/// a later overlapping change first. Such writes (and the rebuild's copies and checks) are barriers: a later change that
/// overlaps one, and every change after it, waits until the barrier completed; a flush waits for every barrier.
/// </para>
/// <para>
/// Failures: a replica whose command fails is dropped from the writes at once and its regions start being tracked for a
/// delta rebuild; when it was in sync, the change that skipped it completes only once the metadata records it out of
/// sync (<see cref="IReplicaStateSink"/>), so no replica the metadata calls in sync misses an acknowledged write. The
/// primary's own copy is never dropped: with no replica left it goes on alone, in sync by itself. A primary whose lease
/// is no longer valid (<see cref="ILeaseGuard"/>) starts and completes nothing: its changes fail with a path status and
/// the host retries them on the new primary.
/// </para>
/// </remarks>
public sealed partial class ReplicatedVolume : IAsyncBlockVolume
{
    private readonly IBlockVolume _local;
    private readonly ILeaseGuard _lease;
    private readonly IReplicaStateSink _stateSink;
    private readonly ReplicationOptions _options;
    private readonly ILogger _logger;
    private readonly ReplicationOpPool _pool;
    private readonly Lock _gate = new();
    private readonly List<ReplicationOp> _barriers = new();
    private readonly Queue<ReplicationOp> _waiting = new();
    private ReplicaEntry[] _replicas = [];
    private int _submittedInFlight;
    private int _inFlight;
    private bool _paused;
    private bool _closing;
    private TaskCompletionSource? _pauseDone;
    private TaskCompletionSource? _closed;

    public ReplicatedVolume(IBlockVolume local, ILeaseGuard lease, IReplicaStateSink stateSink, ReplicationOptions options, ILogger<ReplicatedVolume> logger)
    {
        _local = local;
        _lease = lease;
        _stateSink = stateSink;
        _options = options;
        _logger = logger;
        _pool = new ReplicationOpPool(this);
    }

    /// <summary>Told the replication latency of every host change and flush; set before the volume serves.</summary>
    public IReplicationObserver? Observer { get; init; }

    /// <summary>The primary's own copy.</summary>
    public IBlockVolume Local => _local;

    public long SizeBytes => _local.SizeBytes;

    public int BlockSize => _local.BlockSize;

    /// <summary>Changes started and not completed yet.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>A replica was dropped from the writes (its link failed); the control plane records it and plans a rebuild.</summary>
    public event Action<string, ReplicaMode, string>? ReplicaDropped;

    public IReadOnlyList<ReplicaStatus> Replicas
    {
        get
        {
            var replicas = Volatile.Read(ref _replicas);
            return replicas.Select(r => new ReplicaStatus(r.Node, r.Mode, r.Dirty.MarkedCount, r.Dirty.RegionCount, Volatile.Read(ref r.WritesReplicated), Volatile.Read(ref r.WritesFailed))).ToArray();
        }
    }

    /// <summary>
    /// Adds a replica. With a link it takes part in the writes (<see cref="ReplicaMode.InSync"/> or
    /// <see cref="ReplicaMode.Rebuilding"/>); without one it is <see cref="ReplicaMode.OutOfSync"/> and its dirty map
    /// starts as <paramref name="dirty"/> (everything when unknown).
    /// </summary>
    public void AddReplica(string node, ReplicaMode mode, ReplicaLink? link, RegionMap? dirty = null)
    {
        if ((mode == ReplicaMode.OutOfSync) != (link is null))
        {
            throw new ArgumentException("a replica takes part in the writes exactly when it has a link", nameof(link));
        }

        var entry = new ReplicaEntry(node, mode, link, dirty ?? new RegionMap(SizeBytes, _options.RegionSize));
        if (dirty is null && mode == ReplicaMode.OutOfSync)
        {
            entry.Dirty.MarkAll();
        }

        lock (_gate)
        {
            if (_replicas.Any(r => r.Node == node))
            {
                throw new InvalidOperationException($"replica on {node} already added");
            }

            if (_replicas.Length >= ReplicationOp.MaxReplicas)
            {
                throw new InvalidOperationException($"at most {ReplicationOp.MaxReplicas} replicas");
            }

            Volatile.Write(ref _replicas, [.. _replicas, entry]);
        }

        if (link is not null)
        {
            link.Failed += OnLinkFailed;
        }
    }

    /// <summary>Removes a replica (it moved away or the volume shrank its replica count); its link is closed.</summary>
    public async Task RemoveReplicaAsync(string node)
    {
        ReplicaLink? link;
        lock (_gate)
        {
            var entry = _replicas.FirstOrDefault(r => r.Node == node);
            if (entry is null)
            {
                return;
            }

            link = entry.Link;
            entry.Mode = ReplicaMode.OutOfSync;
            entry.Link = null;
            Volatile.Write(ref _replicas, _replicas.Where(r => r != entry).ToArray());
        }

        if (link is not null)
        {
            link.Failed -= OnLinkFailed;
            await link.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Gives an out-of-sync replica a new link for a rebuild: it receives every change from now on, and its dirty regions
    /// are what the rebuild must copy.
    /// </summary>
    public void StartRebuilding(string node, ReplicaLink link)
    {
        lock (_gate)
        {
            var entry = Find(node);
            if (entry.Mode != ReplicaMode.OutOfSync)
            {
                throw new InvalidOperationException($"replica on {node} is {entry.Mode}, not out of sync");
            }

            entry.Link = link;
            entry.Mode = ReplicaMode.Rebuilding;
            entry.OutOfSyncRecord = null;
            entry.Unflushed = new RegionMap(SizeBytes, _options.RegionSize);
            entry.FlushesInFlight.Clear();
        }

        link.Failed += OnLinkFailed;
    }

    /// <summary>
    /// The rebuild finished and was verified: from now on a failure of this replica is recorded before the change that
    /// skipped it completes. The caller records it in sync in the metadata afterwards.
    /// </summary>
    public void MarkInSync(string node)
    {
        lock (_gate)
        {
            var entry = Find(node);
            if (entry.Mode != ReplicaMode.Rebuilding || entry.Link is null)
            {
                throw new InvalidOperationException($"replica on {node} is {entry.Mode}, not rebuilding");
            }

            entry.Mode = ReplicaMode.InSync;
        }
    }

    /// <summary>The dirty regions of a replica (live map: the rebuild clears regions as it copies them).</summary>
    public RegionMap DirtyRegions(string node)
    {
        lock (_gate)
        {
            return Find(node).Dirty;
        }
    }

    private ReplicaEntry Find(string node) =>
        _replicas.FirstOrDefault(r => r.Node == node) ?? throw new InvalidOperationException($"no replica on {node}");

    // ---- IBlockVolume ----

    public StorageStatus Read(long offset, Span<byte> destination) =>
        _lease.IsValid ? _local.Read(offset, destination) : StorageStatus.PathUnavailable;

    public void Prefetch(long offset, int length) => _local.Prefetch(offset, length);

    public StorageStatus Write(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        var waiter = new CompletionWaiter();
        return waiter.Wait(StartWrite(offset, source, forceUnitAccess, waiter, 0));
    }

    public StorageStatus Flush() => Wait(completion => StartFlush(completion, 0));

    public StorageStatus WriteZeroes(long offset, long length) => Wait(completion => StartWriteZeroes(offset, length, false, completion, 0));

    public StorageStatus Deallocate(long offset, long length) => Wait(completion => StartDeallocate(offset, length, completion, 0));

    /// <summary>
    /// Grows the primary's copy; the cluster grows the replicas at the same point in the write order (while paused) and
    /// the dirty maps follow.
    /// </summary>
    public void Resize(long newSizeBytes)
    {
        _local.Resize(newSizeBytes);
        foreach (var replica in Volatile.Read(ref _replicas))
        {
            replica.Dirty.Grow(newSizeBytes);
        }
    }

    public void Dispose()
    {
        foreach (var replica in Volatile.Read(ref _replicas))
        {
            if (replica.Link is { } link)
            {
                link.Failed -= OnLinkFailed;
                link.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    // ---- IAsyncBlockVolume ----

    public StorageStatus StartWrite(long offset, ReadOnlySpan<byte> source, bool forceUnitAccess, IStorageCompletion completion, ulong cookie)
    {
        if (!_lease.IsValid)
        {
            return StorageStatus.PathUnavailable;
        }

        var op = _pool.Rent();
        op.Kind = OpKind.Write;
        op.Offset = offset;
        op.Length = source.Length;
        op.ForceUnitAccess = forceUnitAccess;
        op.RentBuffer(source.Length);
        source.CopyTo(op.Buffer);
        return Start(op, completion, cookie);
    }

    public StorageStatus StartWriteZeroes(long offset, long length, bool forceUnitAccess, IStorageCompletion completion, ulong cookie)
    {
        if (!_lease.IsValid)
        {
            return StorageStatus.PathUnavailable;
        }

        var op = _pool.Rent();
        op.Kind = OpKind.WriteZeroes;
        op.Offset = offset;
        op.Length = length;
        op.ForceUnitAccess = forceUnitAccess;
        return Start(op, completion, cookie);
    }

    public StorageStatus StartDeallocate(long offset, long length, IStorageCompletion completion, ulong cookie)
    {
        if (!_lease.IsValid)
        {
            return StorageStatus.PathUnavailable;
        }

        var op = _pool.Rent();
        op.Kind = OpKind.Deallocate;
        op.Offset = offset;
        op.Length = length;
        // The DSM range the replicas get (NVM command set 1.0, Figure 39), kept with the op until its commands complete.
        op.RentBuffer(16);
        var range = op.Buffer.AsSpan(0, 16);
        range.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(range[4..], (uint)(length / BlockSize));
        BinaryPrimitives.WriteUInt64LittleEndian(range[8..], (ulong)(offset / BlockSize));
        return Start(op, completion, cookie);
    }

    public StorageStatus StartFlush(IStorageCompletion completion, ulong cookie)
    {
        if (!_lease.IsValid)
        {
            return StorageStatus.PathUnavailable;
        }

        // The primary's copy first, outside the lock: it covers every change applied so far, and an fdatasync must not
        // hold up the volume's other changes.
        var local = _local.Flush();
        if (local != StorageStatus.Success)
        {
            return local;
        }

        var op = _pool.Rent();
        op.Kind = OpKind.Flush;
        return Start(op, completion, cookie);
    }

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

    /// <summary>Takes a replica out of the writes; an in-sync one gets its out-of-sync record started (once).</summary>
    private void DropLocked(ReplicaEntry target, string reason)
    {
        if (target.Mode == ReplicaMode.OutOfSync)
        {
            return;
        }

        var wasInSync = target.Mode == ReplicaMode.InSync;
        var link = target.Link;
        target.Mode = ReplicaMode.OutOfSync;
        target.Link = null;

        // A replica that went away may also lose what it had not flushed yet (a power failure): those regions are
        // rebuilt too, not only the ones written from now on.
        target.Dirty.UnionWith(target.Unflushed);
        foreach (var (_, covered) in target.FlushesInFlight)
        {
            target.Dirty.UnionWith(covered);
        }
        if (wasInSync)
        {
            target.OutOfSyncRecord = RecordOutOfSyncAsync(target.Node, reason);
        }

        LogReplicaDropped(_logger, target.Node, wasInSync ? "in sync" : "rebuilding", reason);
        if (link is not null)
        {
            link.Failed -= OnLinkFailed;
            _ = Task.Run(async () => await link.DisposeAsync().ConfigureAwait(false));
        }

        var dropped = ReplicaDropped;
        if (dropped is not null)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => dropped(target.Node, wasInSync ? ReplicaMode.InSync : ReplicaMode.Rebuilding, reason), null);
        }
    }

    private async Task<bool> RecordOutOfSyncAsync(string node, string reason)
    {
        using var timeout = new CancellationTokenSource(_options.RecordTimeout);
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            try
            {
                await _stateSink.MarkOutOfSyncAsync(node, reason, timeout.Token).ConfigureAwait(false);
                return true;
            }
            catch (NotPrimaryException e)
            {
                LogRecordFailed(_logger, node, e.Message);
                return false;
            }
            catch (Exception e) when (!timeout.IsCancellationRequested)
            {
                LogRecordRetry(_logger, node, e.Message);
                try
                {
                    await Task.Delay(delay, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return false;
                }

                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 1000));
            }
            catch (Exception e)
            {
                LogRecordFailed(_logger, node, e.Message);
                return false;
            }
        }
    }

    private void OnLinkFailed(ReplicaLink link, string reason)
    {
        lock (_gate)
        {
            var target = _replicas.FirstOrDefault(r => ReferenceEquals(r.Link, link));
            if (target is not null)
            {
                DropLocked(target, reason);
            }
        }
    }

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

    /// <summary>Runs a change through the asynchronous path and waits for it (management calls, tests).</summary>
    private static StorageStatus Wait(Func<IStorageCompletion, StorageStatus> start)
    {
        var waiter = new CompletionWaiter();
        return waiter.Wait(start(waiter));
    }

    private sealed class CompletionWaiter : IStorageCompletion
    {
        private readonly TaskCompletionSource<StorageStatus> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public StorageStatus Wait(StorageStatus started) => started == StorageStatus.Pending ? _done.Task.GetAwaiter().GetResult() : started;

        public void OnCompleted(ulong cookie, StorageStatus status) => _done.TrySetResult(status);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica on {Node} ({Mode}) dropped from the writes: {Reason}")]
    private static partial void LogReplicaDropped(ILogger logger, string node, string mode, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recording the replica on {Node} out of sync failed, retrying: {Error}")]
    private static partial void LogRecordRetry(ILogger logger, string node, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Recording the replica on {Node} out of sync failed; the changes that skipped it fail with a path status: {Error}")]
    private static partial void LogRecordFailed(ILogger logger, string node, string error);
}

/// <summary>One replica of a replicated volume as its primary sees it. Fields change under the volume's lock.</summary>
internal sealed class ReplicaEntry(string node, ReplicaMode mode, ReplicaLink? link, RegionMap dirty)
{
    public string Node { get; } = node;

    public ReplicaMode Mode = mode;

    public ReplicaLink? Link = link;

    /// <summary>Regions changed while the replica did not get them; what a delta rebuild copies.</summary>
    public RegionMap Dirty { get; } = dirty;

    /// <summary>The out-of-sync record started when it was dropped while in sync; changes that skipped it wait for it.</summary>
    public Task<bool>? OutOfSyncRecord;

    /// <summary>Regions sent to it since the last flush submitted to it.</summary>
    public RegionMap Unflushed = new(dirty.RegionCount * (long)dirty.RegionSize, dirty.RegionSize);

    /// <summary>Flushes sent to it and not completed, each with the regions it covers.</summary>
    public List<(ReplicationOp Op, RegionMap Covered)> FlushesInFlight { get; } = [];

    public long WritesReplicated;

    public long WritesFailed;
}
