using System.Diagnostics;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Perf;

/// <summary>
/// Drives NVMe/TCP load through the host library: <c>connections</c> controllers × <c>queues</c> I/O queues ×
/// <c>depth</c> workers, each worker keeping exactly one I/O outstanding (so each queue has <c>depth</c> in flight).
/// Each worker's I/O completes into a callback on the queue's receive loop, which submits the next, so the steady
/// state allocates nothing and runs no task machinery per I/O.
/// </summary>
public static class NvmePerfRunner
{
    public static Task<PerfResult> RunAsync(PerfOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default) =>
        RunAsync(options, new RunState(), loggerFactory, cancellationToken);

    internal static async Task<PerfResult> RunAsync(PerfOptions options, RunState run, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        Validate(options);
        var hostOptions = new NvmeTcpHostOptions
        {
            HostNqn = options.HostNqn ?? new NvmeTcpHostOptions().HostNqn,
            HostId = options.HostId ?? Guid.NewGuid(),
            IoQueueCount = options.Queues,
            IoQueueSize = Math.Max(32, options.QueueDepth + 1),
            HeaderDigest = options.HeaderDigest,
            DataDigest = options.DataDigest,
            TlsPsk = options.TlsPsk,
            DisableSqFlowControl = options.DisableSqFlowControl,
            ReceivePollTime = options.ReceivePollTime,
            MaxTransferSize = Math.Max(options.IoSize, 128 * 1024),
            // A benchmark reports errors instead of hiding them behind a reconnect.
            Reconnect = false,
        };
        if (options.HostNqn is null && options.HostId is { } id)
        {
            hostOptions.HostNqn = $"nqn.2014-08.org.nvmexpress:uuid:{id:D}";
        }

        var host = new NvmeTcpHost(hostOptions, loggerFactory);
        var controllers = new List<NvmeController>();
        try
        {
            for (var i = 0; i < options.Connections; i++)
            {
                controllers.Add(await host.ConnectAsync(options.Target, options.SubsystemNqn, cancellationToken).ConfigureAwait(false));
            }

            var ns = controllers[0].FindNamespace(options.NamespaceId)
                ?? throw new InvalidOperationException($"namespace {options.NamespaceId} is not active on {options.SubsystemNqn}");
            if (options.IoSize % ns.BlockSize != 0)
            {
                throw new ArgumentException($"--io-size {options.IoSize} is not a multiple of the block size {ns.BlockSize}");
            }

            foreach (var controller in controllers)
            {
                if (controller.IoQueues.Count < options.Queues)
                {
                    throw new InvalidOperationException($"the controller granted {controller.IoQueues.Count} I/O queues, {options.Queues} asked");
                }

                if (controller.IoQueues[0].Depth < options.QueueDepth)
                {
                    throw new InvalidOperationException($"the controller allows {controller.IoQueues[0].Depth} commands per queue, --qd {options.QueueDepth} asked");
                }
            }

            var region = options.RegionBytes > 0 ? Math.Min(options.RegionBytes, ns.SizeBytes) : ns.SizeBytes;
            var slots = region / options.IoSize;
            if (slots < 1)
            {
                throw new ArgumentException($"the namespace ({ns.SizeBytes} bytes) is smaller than one I/O");
            }

            var totalWorkers = options.Connections * options.Queues * options.QueueDepth;
            var workers = new List<Worker>();
            var tasks = new List<Task>();
            foreach (var controller in controllers)
            {
                for (var q = 0; q < options.Queues; q++)
                {
                    var cursor = new SequentialCursor();
                    for (var d = 0; d < options.QueueDepth; d++)
                    {
                        var worker = new Worker(options, controller.IoQueues[q], controller.FindNamespace(options.NamespaceId)!, run, cursor, slots, workers.Count, totalWorkers);
                        workers.Add(worker);
                    }
                }
            }

            run.Loops = workers.Count;
            run.CountMeasured = () => workers.Sum(w => w.Reads + w.Writes);
            foreach (var worker in workers)
            {
                tasks.Add(Task.Run(worker.RunAsync, CancellationToken.None));
            }

            var measured = await run.MeasureAsync(tasks, options.Ramp, options.Duration, "I/O", cancellationToken).ConfigureAwait(false);
            return Summarize(options, ns, workers, measured);
        }
        finally
        {
            foreach (var controller in controllers)
            {
                await controller.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static void Validate(PerfOptions o)
    {
        if (o.QueueDepth < 1 || o.Queues < 1 || o.Connections < 1 || o.IoSize < 512 || o.Duration <= TimeSpan.Zero)
        {
            throw new ArgumentException("--qd, --queues, --connections must be at least 1, --io-size at least 512 and --time positive");
        }

        if (string.IsNullOrEmpty(o.SubsystemNqn))
        {
            throw new ArgumentException("--nqn is required");
        }
    }

    private static PerfResult Summarize(PerfOptions options, NvmeNamespace ns, List<Worker> workers, TimeSpan measured)
    {
        var histogram = new LatencyHistogram();
        long reads = 0, writes = 0, errors = 0, verified = 0, unwritten = 0, failures = 0;
        string? firstError = null, firstFailure = null;
        foreach (var w in workers)
        {
            histogram.Add(w.Histogram);
            reads += w.Reads;
            writes += w.Writes;
            errors += w.Errors;
            verified += w.VerifiedBlocks;
            unwritten += w.UnwrittenBlocks;
            failures += w.VerifyFailures;
            firstError ??= w.FirstError;
            firstFailure ??= w.FirstVerifyFailure;
        }

        var ios = reads + writes;
        var seconds = measured.TotalSeconds;
        return new PerfResult
        {
            Mode = "nvme",
            Target = options.Target.ToString(),
            SubsystemNqn = options.SubsystemNqn,
            Pattern = PerfOptions.PatternName(options.Pattern),
            ReadPercent = options.EffectiveReadPercent,
            IoSize = options.IoSize,
            QueueDepth = options.QueueDepth,
            Queues = options.Queues,
            Connections = options.Connections,
            TotalDepth = workers.Count,
            HeaderDigest = options.HeaderDigest,
            DataDigest = options.DataDigest,
            SqFlowControlDisabled = options.DisableSqFlowControl,
            Seconds = Math.Round(seconds, 3),
            Ios = ios,
            Reads = reads,
            Writes = writes,
            Bytes = ios * options.IoSize,
            Iops = Math.Round(ios / seconds, 1),
            MiBps = Math.Round(ios * (double)options.IoSize / seconds / (1 << 20), 2),
            Latency = LatencySummary.From(histogram),
            Errors = errors,
            FirstError = firstError,
            Verify = options.Verify,
            VerifiedBlocks = verified,
            UnwrittenBlocks = unwritten,
            VerifyFailures = failures,
            FirstVerifyFailure = firstFailure,
        };
    }

    internal sealed class SequentialCursor
    {
        public long Next;
    }

    /// <summary>
    /// One outstanding I/O slot of a queue, looping until the run stops: each completion (a callback on the queue's
    /// receive loop) accounts its I/O and submits the next, with no task or state machine per I/O.
    /// </summary>
    private sealed class Worker : INvmeCompletionCallback
    {
        private readonly PerfOptions _options;
        private readonly IoQueue _queue;
        private readonly NvmeNamespace _ns;
        private readonly RunState _run;
        private readonly SequentialCursor _cursor;
        private readonly long _slots;
        private readonly int _index;
        private readonly int _totalWorkers;
        private readonly byte[] _buffer;
        private readonly double _nanosecondsPerTick = 1e9 / Stopwatch.Frequency;
        private readonly int _readPercent;
        private readonly int _blockSize;
        private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private XorShiftRandom _random;
        private long _ownCursor;
        private ulong _writeSeed;

        // The I/O in flight (one per worker).
        private bool _isRead;
        private long _byteOffset;
        private ulong _lba;
        private long _start;

        public Worker(PerfOptions options, IoQueue queue, NvmeNamespace ns, RunState run, SequentialCursor cursor, long slots, int index, int totalWorkers)
        {
            _options = options;
            _queue = queue;
            _ns = ns;
            _run = run;
            _cursor = cursor;
            _slots = slots;
            _index = index;
            _totalWorkers = totalWorkers;
            _buffer = GC.AllocateArray<byte>(options.IoSize, pinned: true);
            _random = new XorShiftRandom(0x9E3779B97F4A7C15UL * (ulong)(index + 1) ^ (ulong)Environment.TickCount64);
            _ownCursor = index;
            _readPercent = options.EffectiveReadPercent;
            _blockSize = ns.BlockSize;
            new Random(index).NextBytes(_buffer);
        }

        public LatencyHistogram Histogram { get; } = new();

        public long Reads { get; private set; }

        public long Writes { get; private set; }

        public long Errors { get; private set; }

        public string? FirstError { get; private set; }

        public long VerifiedBlocks { get; private set; }

        public long UnwrittenBlocks { get; private set; }

        public long VerifyFailures { get; private set; }

        public string? FirstVerifyFailure { get; private set; }

        /// <summary>Starts the worker; the task completes when the worker stopped (the run ended, or its queue lost the connection) or failed.</summary>
        public Task RunAsync()
        {
            SubmitNext();
            return _ended.Task;
        }

        /// <summary>
        /// Submits the worker's next I/O, parks it while the load is held, or ends it; called with nothing of the
        /// worker in flight, from <see cref="RunAsync"/>, from its completion callback on the queue's receive loop, or
        /// from the release of a park.
        /// </summary>
        private void SubmitNext()
        {
            try
            {
                if (Volatile.Read(ref _run.Stop))
                {
                    End(null);
                    return;
                }

                if (Volatile.Read(ref _run.Held))
                {
                    // Resumed by the release on a pool thread: the receive loop is never blocked by a parked worker.
                    _run.ParkAsync().ContinueWith(static (_, state) => ((Worker)state!).SubmitNext(), this, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
                    return;
                }

                _isRead = _readPercent == 100 || (_readPercent != 0 && (int)(Next() % 100) < _readPercent);
                _byteOffset = NextSlot() * _options.IoSize;
                _lba = (ulong)(_byteOffset / _blockSize);
                if (!_isRead && _options.Verify)
                {
                    VerifyPattern.Fill(_buffer, _byteOffset, _blockSize, ++_writeSeed ^ (ulong)_index << 40);
                }

                _start = Stopwatch.GetTimestamp();
                var submitted = _isRead
                    ? _queue.TrySubmitRead(_ns, _lba, _buffer, this)
                    : _queue.TrySubmitWrite(_ns, _lba, _buffer, this);
                if (!submitted)
                {
                    CountError(NvmeCompletion.PathError.Status);
                    End(null);
                }
            }
            catch (Exception ex)
            {
                End(ex);
            }
        }

        /// <summary>Accounts one completed I/O and submits the next one; runs on the queue's receive loop.</summary>
        public void OnCompleted(NvmeCompletion completion)
        {
            var end = Stopwatch.GetTimestamp();
            try
            {
                if (!completion.IsSuccess)
                {
                    CountError(completion.Status);
                    if (completion.IsPathError)
                    {
                        // The connection is gone; the run cannot continue on this queue.
                        End(null);
                        return;
                    }
                }
                else
                {
                    Account(end);
                }
            }
            catch (Exception ex)
            {
                End(ex);
                return;
            }

            SubmitNext();
        }

        private void Account(long end)
        {
            if (_isRead && _options.Verify)
            {
                var outcome = VerifyPattern.Check(_buffer, _byteOffset, _blockSize, out var problem, out var good, out var unwritten);
                VerifiedBlocks += good;
                UnwrittenBlocks += unwritten;
                if (outcome == VerifyPattern.Outcome.Corrupt)
                {
                    VerifyFailures++;
                    FirstVerifyFailure ??= problem;
                }
            }

            if (Volatile.Read(ref _run.Measuring) && _start >= _run.MeasureFrom && !Volatile.Read(ref _run.Stop))
            {
                Histogram.Record((long)((end - _start) * _nanosecondsPerTick));
                if (_isRead)
                {
                    Reads++;
                }
                else
                {
                    Writes++;
                }
            }
        }

        private void CountError(NvmeStatus status)
        {
            Errors++;
            FirstError ??= $"{(_isRead ? "read" : "write")} at LBA {_lba}: {status}";
        }

        private void End(Exception? error)
        {
            if (_ended.Task.IsCompleted)
            {
                return;
            }

            _run.LoopEnded();
            if (error is null)
            {
                _ended.TrySetResult();
            }
            else
            {
                _ended.TrySetException(error);
            }
        }

        private long NextSlot()
        {
            if (_options.Verify)
            {
                // Each worker owns the slots congruent to its index, so no two I/Os touch a block at once and a read
                // never races a write of the same block.
                var owned = Math.Max(1, _slots / _totalWorkers);
                long own;
                if (_options.IsRandom)
                {
                    own = (long)(Next() % (ulong)owned);
                }
                else
                {
                    own = _ownCursor++ % owned;
                }

                var slot = own * _totalWorkers + _index;
                return slot < _slots ? slot : _index % _slots;
            }

            return _options.IsRandom
                ? (long)(Next() % (ulong)_slots)
                : Interlocked.Increment(ref _cursor.Next) % _slots;
        }

        private ulong Next() => _random.Next();
    }
}
