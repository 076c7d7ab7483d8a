using System.Buffers;
using CsiNvme.Host;
using CsiNvme.Storage;

namespace CsiNvme.Replication;

/// <summary>What a replication operation does on the replicas.</summary>
internal enum OpKind : byte
{
    Write,
    WriteZeroes,
    Deallocate,
    Flush,
    /// <summary>Rebuild: a region read from the primary's copy, written to one replica.</summary>
    Copy,
    /// <summary>Rebuild check: a region read from the primary's copy and from one replica, compared.</summary>
    Verify,
}

/// <summary>
/// One change of a replicated volume on its way to the replicas, pooled: the data copied out of the caller's buffer,
/// the replicas it went to, how many of their commands are outstanding and which replicas failed. One callback object
/// per replica index is kept with the op, so submitting and completing allocate nothing.
/// </summary>
internal sealed class ReplicationOp
{
    public const int MaxReplicas = 8;

    private readonly ReplicaCallback[] _callbacks;

    public ReplicationOp(ReplicatedVolume owner)
    {
        _callbacks = new ReplicaCallback[MaxReplicas];
        for (var i = 0; i < _callbacks.Length; i++)
        {
            _callbacks[i] = new ReplicaCallback(owner, this, i);
        }
    }

    public OpKind Kind;
    public long Offset;
    public long Length;
    public bool ForceUnitAccess;
    public IStorageCompletion? Completion;
    public ulong Cookie;
    public byte[]? Buffer;
    public int DataLength;
    public ReplicaEntry[] Targets = [];
    /// <summary>The link each target's commands went on (a target may get a new link while old commands are in flight).</summary>
    public readonly ReplicaLink?[] Links = new ReplicaLink?[MaxReplicas];
    public int Remaining;
    /// <summary>When the op's commands went to the replicas (<see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public long SentAt;
    public int FailedMask;
    /// <summary>The out-of-sync record of a replica this change skipped that is not durable yet; the change waits for it.</summary>
    public Task<bool>? SkippedRecord;
    public StorageStatus Outcome;
    public bool IsBarrier;
    public bool Submitted;
    /// <summary>For the rebuild's own operations: set when they finish (true: succeeded, and for Verify: equal).</summary>
    public TaskCompletionSource<bool>? Done;

    public bool IsChange => Kind is OpKind.Write or OpKind.WriteZeroes or OpKind.Deallocate or OpKind.Copy;

    public INvmeCompletionCallback CallbackFor(int targetIndex) => _callbacks[targetIndex];

    public Memory<byte> Data => Buffer.AsMemory(0, DataLength);

    public void RentBuffer(int length)
    {
        Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        DataLength = length;
    }

    /// <summary>True when the byte ranges overlap (a Flush overlaps everything).</summary>
    public bool Overlaps(ReplicationOp other) =>
        Kind == OpKind.Flush || other.Kind == OpKind.Flush || (Offset < other.Offset + other.Length && other.Offset < Offset + Length);

    public void Reset()
    {
        if (Buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(Buffer);
        }

        Buffer = null;
        DataLength = 0;
        Completion = null;
        Cookie = 0;
        Targets = [];
        Array.Clear(Links);
        Remaining = 0;
        SentAt = 0;
        FailedMask = 0;
        SkippedRecord = null;
        Outcome = StorageStatus.Success;
        IsBarrier = false;
        Submitted = false;
        Done = null;
    }

    /// <summary>Receives the completions of one replica's commands of this op.</summary>
    private sealed class ReplicaCallback(ReplicatedVolume owner, ReplicationOp op, int index) : INvmeCompletionCallback
    {
        public void OnCompleted(NvmeCompletion completion) => owner.OnReplicaCommandDone(op, index, completion);
    }
}

/// <summary>A lock-protected free list of ops; it grows when more are in flight than ever before, and never shrinks.</summary>
internal sealed class ReplicationOpPool(ReplicatedVolume owner)
{
    private readonly Lock _gate = new();
    private readonly Stack<ReplicationOp> _free = new();

    public ReplicationOp Rent()
    {
        lock (_gate)
        {
            if (_free.TryPop(out var op))
            {
                return op;
            }
        }

        return new ReplicationOp(owner);
    }

    public void Return(ReplicationOp op)
    {
        op.Reset();
        lock (_gate)
        {
            _free.Push(op);
        }
    }
}
