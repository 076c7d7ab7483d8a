using System.Buffers.Binary;
using CsiNvme.Host;
using CsiNvme.Protocol.Tcp;
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

    /// <summary>Runs a change through the asynchronous path and waits for it (management calls, tests).</summary>
    private static StorageStatus Wait(Func<IStorageCompletion, StorageStatus> start)
    {
        var waiter = new CompletionWaiter();
        return waiter.Wait(start(waiter));
    }

    private sealed class CompletionWaiter : IStorageCompletion
    {
        private readonly TaskCompletionSource<StorageStatus> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public StorageStatus Wait(StorageStatus started)
        {
            if (started != StorageStatus.Pending)
            {
                return started;
            }

            // Called inside a receive loop's batch, the commands just queued would otherwise wait for the batch's end,
            // which waits for this.
            SendBatch.SendNow();
            return _done.Task.GetAwaiter().GetResult();
        }

        public void OnCompleted(ulong cookie, StorageStatus status) => _done.TrySetResult(status);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica on {Node} ({Mode}) dropped from the writes: {Reason}")]
    private static partial void LogReplicaDropped(ILogger logger, string node, string mode, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recording the replica on {Node} out of sync failed, retrying: {Error}")]
    private static partial void LogRecordRetry(ILogger logger, string node, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Recording the replica on {Node} out of sync failed; the changes that skipped it fail with a path status: {Error}")]
    private static partial void LogRecordFailed(ILogger logger, string node, string error);
}
