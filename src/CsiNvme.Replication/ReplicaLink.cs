using System.Net;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Replication;

/// <summary>
/// The primary's connection to one replica of a volume: an NVMe/TCP controller of the replica node's replica subsystem
/// (opened with this project's host library, so replication needs no protocol of its own), its replication epoch set
/// before any change is sent, and one I/O queue, so the replica applies the changes in the order they were sent.
/// Commands beyond the queue's depth wait in order. The link never reconnects by itself: a lost connection makes the
/// replica out of sync, and the rebuild that brings it back opens a new link with the then current epoch.
/// </summary>
public sealed partial class ReplicaLink : IAsyncDisposable
{
    private const uint ReplicaNamespaceId = 1;
    private const uint MaxBlocksPerCommand = 0x10000;

    private readonly NvmeController _controller;
    private readonly IoQueue _queue;
    private readonly NvmeNamespace _namespace;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Queue<(ReplicationOp Op, int Index)> _overflow = new();
    private int _outstanding;
    private int _failed;

    private ReplicaLink(string node, long epoch, NvmeController controller, NvmeNamespace ns, ILogger logger)
    {
        Node = node;
        Epoch = epoch;
        _controller = controller;
        _queue = controller.IoQueues[0];
        _namespace = ns;
        _logger = logger;
        controller.StateChanged += OnStateChanged;
    }

    public string Node { get; }

    public long Epoch { get; }

    /// <summary>Volume size as the replica reports it.</summary>
    public long SizeBytes => _namespace.SizeBytes;

    public int BlockSize => _namespace.BlockSize;

    /// <summary>Writes up to this size travel in the capsule and are applied in arrival order; larger ones wait for R2T.</summary>
    public int InCapsuleLimit => _queue.InCapsuleDataLimit;

    public bool IsFailed => Volatile.Read(ref _failed) != 0;

    /// <summary>Raised once when the link fails (connection lost or refused); commands in flight fail with a path error.</summary>
    public event Action<ReplicaLink, string>? Failed;

    /// <summary>
    /// Connects to <paramref name="subsystemNqn"/> on <paramref name="endpoint"/> and sets the replication epoch. Throws
    /// <see cref="ReplicaFencedException"/> when the replica has seen a higher epoch (this node is no longer primary).
    /// </summary>
    public static async Task<ReplicaLink> ConnectAsync(
        string node,
        EndPoint endpoint,
        string subsystemNqn,
        long epoch,
        NvmeTcpHostOptions options,
        ILoggerFactory loggerFactory,
        CancellationToken cancellationToken = default)
    {
        if (options.Reconnect)
        {
            throw new ArgumentException("a replica link must not reconnect by itself (its epoch would not be set again)", nameof(options));
        }

        var host = new NvmeTcpHost(options, loggerFactory);
        var controller = await host.ConnectAsync(endpoint, subsystemNqn, cancellationToken).ConfigureAwait(false);
        try
        {
            var set = await controller.AdminAsync(
                new SubmissionQueueEntry((byte)AdminOpcode.SetFeatures, 0, 0, 0, default, (byte)FeatureId.ReplicationEpoch, (uint)epoch, 0, 0, 0, 0),
                default,
                default).ConfigureAwait(false);
            if (set.Status == NvmeStatus.ReservationConflict)
            {
                throw new ReplicaFencedException(node, epoch, set.Dw0);
            }

            set.EnsureSuccess("Set Features (replication epoch)");
            var ns = controller.FindNamespace(ReplicaNamespaceId) ?? throw new InvalidOperationException($"replica subsystem {subsystemNqn} on {node} has no namespace {ReplicaNamespaceId}");
            if (controller.IoQueues.Count == 0)
            {
                throw new InvalidOperationException($"replica subsystem {subsystemNqn} on {node} granted no I/O queue");
            }

            return new ReplicaLink(node, epoch, controller, ns, loggerFactory.CreateLogger<ReplicaLink>());
        }
        catch
        {
            await controller.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Reads a range of the replica (rebuild verification; not on the I/O path).</summary>
    public async Task<NvmeCompletion> ReadAsync(long offset, Memory<byte> destination) =>
        await _queue.ReadAsync(_namespace, (ulong)(offset / BlockSize), destination).ConfigureAwait(false);

    /// <summary>Number of commands the op needs on this link.</summary>
    internal int CommandCount(ReplicationOp op) => op.Kind switch
    {
        OpKind.WriteZeroes => (int)((op.Length / BlockSize + MaxBlocksPerCommand - 1) / MaxBlocksPerCommand),
        _ => 1,
    };

    /// <summary>
    /// Sends the op's commands, or queues them behind earlier ones when the queue is full. False when the link has failed:
    /// the caller then counts the replica's commands as failed.
    /// </summary>
    internal bool Submit(ReplicationOp op, int index)
    {
        lock (_gate)
        {
            if (IsFailed)
            {
                return false;
            }

            var commands = CommandCount(op);
            if (_overflow.Count > 0 || _outstanding + commands > _queue.Depth)
            {
                _overflow.Enqueue((op, index));
                return true;
            }

            _outstanding += commands;
            var unsent = SendLocked(op, index);
            if (unsent == commands)
            {
                _outstanding -= commands;
                return false;
            }

            if (unsent > 0)
            {
                _outstanding -= unsent;
                ThreadPool.UnsafeQueueUserWorkItem(_ => FailCommands(op, index, unsent), null);
            }

            return true;
        }
    }

    /// <summary>A command of this link completed: sends what waited for room.</summary>
    internal void CommandDone()
    {
        List<(ReplicationOp, int, int)>? refused = null;
        lock (_gate)
        {
            _outstanding--;
            while (_overflow.Count > 0 && !IsFailed)
            {
                var (op, index) = _overflow.Peek();
                var commands = CommandCount(op);
                if (_outstanding + commands > _queue.Depth)
                {
                    break;
                }

                _overflow.Dequeue();
                _outstanding += commands;
                var unsent = SendLocked(op, index);
                if (unsent > 0)
                {
                    _outstanding -= unsent;
                    (refused ??= new()).Add((op, index, unsent));
                }
            }
        }

        if (refused is not null)
        {
            foreach (var (op, index, unsent) in refused)
            {
                FailCommands(op, index, unsent);
            }
        }
    }

    /// <summary>Sends the op's commands; returns how many could not be sent (the queue lost its connection).</summary>
    private int SendLocked(ReplicationOp op, int index)
    {
        var callback = op.CallbackFor(index);
        var lba = (ulong)(op.Offset / BlockSize);
        switch (op.Kind)
        {
            case OpKind.Write:
            case OpKind.Copy:
                return _queue.TrySubmitWrite(_namespace, lba, op.Data, callback, op.ForceUnitAccess) ? 0 : 1;
            case OpKind.Verify:
                // The op's buffer holds the primary's copy first, then room for the replica's.
                return _queue.TrySubmitRead(_namespace, lba, op.Buffer.AsMemory(op.DataLength, op.DataLength), callback) ? 0 : 1;
            case OpKind.Flush:
                return _queue.TrySubmitFlush(_namespace, callback) ? 0 : 1;
            case OpKind.WriteZeroes:
                {
                    var blocks = (ulong)(op.Length / BlockSize);
                    var commands = CommandCount(op);
                    for (var i = 0; i < commands; i++)
                    {
                        var done = (ulong)i * MaxBlocksPerCommand;
                        var count = (uint)Math.Min(MaxBlocksPerCommand, blocks - done);
                        if (!_queue.TrySubmitWriteZeroes(_namespace, lba + done, count, deallocate: false, op.ForceUnitAccess, callback))
                        {
                            return commands - i;
                        }
                    }

                    return 0;
                }

            case OpKind.Deallocate:
                // The op's buffer holds the one DSM range (ReplicatedVolume wrote it), kept until the command completes.
                return _queue.TrySubmitDatasetManagement(_namespace, op.Data, deallocate: true, callback) ? 0 : 1;
            default:
                return 1;
        }
    }

    private void FailCommands(ReplicationOp op, int index, int count)
    {
        for (var i = 0; i < count; i++)
        {
            op.CallbackFor(index).OnCompleted(new NvmeCompletion(NvmeCompletion.HostPathError, 0, 0));
        }
    }

    private void FailAll(List<(ReplicationOp Op, int Index)>? ops)
    {
        if (ops is null)
        {
            return;
        }

        foreach (var (op, index) in ops)
        {
            FailCommands(op, index, CommandCount(op));
        }
    }

    /// <summary>Marks the link failed and fails what still waited for room; commands in flight fail by themselves.</summary>
    internal void Fail(string reason)
    {
        List<(ReplicationOp, int)>? waiting = null;
        lock (_gate)
        {
            if (_failed != 0)
            {
                return;
            }

            _failed = 1;
            if (_overflow.Count > 0)
            {
                waiting = [.. _overflow];
                _overflow.Clear();
            }
        }

        LogLinkFailed(_logger, Node, reason);
        Failed?.Invoke(this, reason);
        FailAll(waiting);
    }

    private void OnStateChanged(NvmeController controller, ControllerState state)
    {
        if (state is ControllerState.Reconnecting or ControllerState.Failed or ControllerState.Closed)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => Fail($"connection {state.ToString().ToLowerInvariant()}"), null);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Fail("closed");
        _controller.StateChanged -= OnStateChanged;
        await _controller.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replication link to {Node} failed: {Reason}")]
    private static partial void LogLinkFailed(ILogger logger, string node, string reason);
}

/// <summary>The replica refused the epoch: it has seen a higher one, so another node was promoted.</summary>
public sealed class ReplicaFencedException(string node, long epoch, uint current)
    : Exception($"replica on {node} refused replication epoch {epoch}: it has seen epoch {current}")
{
    public long CurrentEpoch { get; } = current;
}
