using System.Buffers.Binary;
using System.Diagnostics;
using CsiNvme.Api.V1;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;
using CsiNvme.TestSupport;

namespace CsiNvme.Cluster.Tests.Crash;

/// <summary>
/// A host that writes a replicated volume through whichever node the record names primary, as a multipath host would:
/// a command refused with a path status, or lost with its connection, is sent again to the primary of the moment. It
/// keeps the model a crash check needs: per 4 KiB block the sequence number of the last write acknowledged, and of the
/// last write a later successful flush covers (a flush covers what completed before it was sent). Every block it writes
/// carries its block number and sequence number in a header, the rest derived from both, so a read tells which write
/// it holds and whether it is whole.
/// </summary>
internal sealed class AckedWriter : IAsyncDisposable
{
    public const int BlockBytes = 4096;
    private const ulong Magic = 0x4353_4E56_4D45_5752; // "CSNVMEWR"
    private static readonly TimeSpan CommandBound = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RetryBound = TimeSpan.FromSeconds(90);

    private readonly ProcessCluster _cluster;
    private readonly string _volume;
    private readonly NvmeHostIdentity _identity;
    private readonly string _nqn;
    private readonly int _blockSize;
    private readonly int _blocks;
    private readonly long[] _acked;
    private readonly long[] _durable;
    private readonly bool[] _busy;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, NvmeController> _paths = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _pathGate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _workers = new();
    private readonly Random _random;
    private TaskCompletionSource _resume = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _paused;
    private int _active;
    private TaskCompletionSource? _idle;
    private string _primary = "";
    private long _seq;
    private long _lastAckTicks = Stopwatch.GetTimestamp();
    private long _longestGapTicks;
    private Exception? _failure;

    public AckedWriter(ProcessCluster cluster, Volume volume, NvmeHostIdentity identity, int seed)
    {
        _cluster = cluster;
        _volume = volume.Name;
        _identity = identity;
        _nqn = volume.SubsystemNqn;
        _blockSize = (int)volume.BlockSize;
        _blocks = (int)(volume.SizeBytes / BlockBytes);
        _acked = new long[_blocks];
        _durable = new long[_blocks];
        _busy = new bool[_blocks];
        _primary = volume.Primary;
        _random = new Random(seed);
        _resume.SetResult();
    }

    public long WritesAcked;
    public long FlushesAcked;
    public long PathRetries;

    /// <summary>Longest time without an acknowledged write while writing (the stall the host saw), since the last reset.</summary>
    public TimeSpan TakeLongestGap()
    {
        var ticks = Interlocked.Exchange(ref _longestGapTicks, 0);
        return TimeSpan.FromSeconds(ticks / (double)Stopwatch.Frequency);
    }

    /// <summary>The first error a worker hit (a command failed other than with a path status, or not within its bounds).</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    public void Start(int writers)
    {
        for (var i = 0; i < writers; i++)
        {
            var seed = _random.Next();
            _workers.Add(Task.Run(() => WriteLoopAsync(new Random(seed))));
        }

        _workers.Add(Task.Run(FlushLoopAsync));
    }

    /// <summary>Stops starting commands and waits until those in flight are done, then flushes (retried until it succeeds).</summary>
    public async Task PauseAndFlushAsync()
    {
        Task idle;
        lock (_gate)
        {
            _paused = true;
            _resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            idle = _active == 0 ? Task.CompletedTask : (_idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        await idle.WaitAsync(RetryBound + CommandBound);
        ThrowIfFailed();
        await FlushAsync();
    }

    public void Resume()
    {
        TaskCompletionSource resume;
        lock (_gate)
        {
            _paused = false;
            resume = _resume;
            _lastAckTicks = Stopwatch.GetTimestamp();
        }

        resume.TrySetResult();
    }

    public void ThrowIfFailed()
    {
        if (Failure is { } failure)
        {
            throw new InvalidOperationException("the writer failed: " + failure.Message, failure);
        }
    }

    /// <summary>
    /// Reads the whole volume through the primary (the writer paused) and compares every block with the model: a block
    /// must hold whole the last write acknowledged for it (or zeroes if never written). The primary completes a write
    /// only once every in-sync replica applied it, and a node killed loses at most what it alone had not flushed, so a
    /// surviving in-sync copy holds every acknowledged write, flushed or not; errors say which of the two was missing.
    /// </summary>
    public async Task<CheckResult> CheckAsync()
    {
        var controller = await PathAsync(await PrimaryAsync(refresh: true));
        var ns = controller.FindNamespace(1)!;
        var chunk = new byte[512 * 1024];
        var result = new CheckResult();
        for (long offset = 0; offset < (long)_blocks * BlockBytes; offset += chunk.Length)
        {
            var length = (int)Math.Min(chunk.Length, (long)_blocks * BlockBytes - offset);
            var memory = chunk.AsMemory(0, length);
            var completion = await controller.IoQueues[0].ReadAsync(ns, (ulong)(offset / _blockSize), memory).AsTask().WaitAsync(CommandBound);
            if (completion.Status != NvmeStatus.Success)
            {
                throw new InvalidOperationException($"reading {length} bytes at {offset} from the primary failed: {completion.Status}");
            }

            for (var i = 0; i < length / BlockBytes; i++)
            {
                var block = (int)(offset / BlockBytes) + i;
                var data = chunk.AsSpan(i * BlockBytes, BlockBytes);
                var found = SequenceIn(block, data);
                result.Blocks++;
                if (found < 0)
                {
                    result.Errors.Add($"block {block}: not a whole write (torn or foreign data); acked {_acked[block]}, flushed {_durable[block]}");
                    continue;
                }

                if (found < _acked[block])
                {
                    var flushed = found < _durable[block] ? $"flushed (write {_durable[block]})" : $"not yet flushed (last flushed {_durable[block]})";
                    result.Errors.Add($"block {block}: holds write {found}, but write {_acked[block]} was acknowledged, {flushed}");
                }
                else if (found > _acked[block])
                {
                    result.Errors.Add($"block {block}: holds write {found}, newer than the last acknowledged {_acked[block]}");
                }
                else if (found > 0)
                {
                    result.Written++;
                }
            }
        }

        return result;
    }

    private async Task WriteLoopAsync(Random random)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await WaitUnpausedAsync();
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                // Mostly small writes, some larger than a command capsule (the replicas get those after an R2T).
                var count = random.Next(100) < 80 ? random.Next(1, 5) : random.Next(16, 65);
                int first;
                lock (_gate)
                {
                    first = Reserve(random, count);
                    if (first >= 0)
                    {
                        _active++;
                    }
                }

                if (first < 0)
                {
                    await Task.Delay(1);
                    continue;
                }

                try
                {
                    var seq = Interlocked.Increment(ref _seq);
                    var data = new byte[count * BlockBytes];
                    for (var i = 0; i < count; i++)
                    {
                        Fill(first + i, seq, data.AsSpan(i * BlockBytes, BlockBytes));
                    }

                    await SendAsync((q, n) => q.WriteAsync(n, (ulong)((long)first * BlockBytes / _blockSize), data), $"write of {count} blocks at {first}");
                    lock (_gate)
                    {
                        for (var i = 0; i < count; i++)
                        {
                            _acked[first + i] = seq;
                        }
                    }

                    Interlocked.Increment(ref WritesAcked);
                    NoteAck();
                }
                finally
                {
                    Release(first, count);
                }
            }
            catch (Exception e) when (!_stop.IsCancellationRequested)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
                return;
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task FlushLoopAsync()
    {
        var random = new Random(_random.Next());
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(random.Next(20, 300), _stop.Token);
                await WaitUnpausedAsync();
                lock (_gate)
                {
                    if (_paused)
                    {
                        continue;
                    }

                    _active++;
                }

                try
                {
                    await FlushAsync();
                }
                finally
                {
                    Release(-1, 0);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (!_stop.IsCancellationRequested)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
                return;
            }
        }
    }

    /// <summary>A flush covers every write acknowledged before it is sent.</summary>
    private async Task FlushAsync()
    {
        long[] covered;
        lock (_gate)
        {
            covered = (long[])_acked.Clone();
        }

        await SendAsync((q, n) => q.FlushAsync(n), "flush");
        lock (_gate)
        {
            for (var i = 0; i < covered.Length; i++)
            {
                _durable[i] = Math.Max(_durable[i], covered[i]);
            }
        }

        Interlocked.Increment(ref FlushesAcked);
    }

    /// <summary>Sends a command to the primary, again and again while it is refused with a path status or its connection fails.</summary>
    private async Task SendAsync(Func<IoQueue, NvmeNamespace, ValueTask<NvmeCompletion>> command, string what)
    {
        var deadline = Stopwatch.StartNew();
        string? last = null;
        var refresh = false;
        while (deadline.Elapsed < RetryBound)
        {
            string node = "";
            try
            {
                node = await PrimaryAsync(refresh);
                var controller = await PathAsync(node);
                var ns = controller.FindNamespace(1)!;
                var completion = await command(controller.IoQueues[0], ns).AsTask().WaitAsync(CommandBound);
                if (completion.Status == NvmeStatus.Success)
                {
                    return;
                }

                if (completion.Status.Type != StatusCodeType.PathRelated)
                {
                    throw new InvalidOperationException($"{what} on {node} failed with {completion.Status}: an I/O error a host would see");
                }

                last = $"{node}: {completion.Status}";
                if (completion.Status == NvmeCompletion.HostPathError)
                {
                    await DropPathAsync(node);
                }
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or NvmeTransportException or TimeoutException or OperationCanceledException
                                          or Grpc.Core.RpcException
                                      || e is InvalidOperationException && !e.Message.Contains("I/O error", StringComparison.Ordinal))
            {
                last = $"{node}: {e.GetType().Name}: {e.Message}";
                await DropPathAsync(node);
            }

            Interlocked.Increment(ref PathRetries);
            refresh = true;
            await Task.Delay(50);
        }

        throw new TimeoutException($"{what} did not complete within {RetryBound.TotalSeconds:F0} s; last: {last}");
    }

    private async Task<string> PrimaryAsync(bool refresh)
    {
        if (!refresh && Volatile.Read(ref _primary) is { Length: > 0 } known)
        {
            return known;
        }

        var volume = await _cluster.GetVolumeAsync(_volume);
        Volatile.Write(ref _primary, volume.Primary);
        return volume.Primary.Length > 0 ? volume.Primary : throw new IOException("the volume has no primary right now");
    }

    private async Task<NvmeController> PathAsync(string node)
    {
        await _pathGate.WaitAsync();
        try
        {
            if (_paths.TryGetValue(node, out var controller) && controller.State == ControllerState.Live)
            {
                return controller;
            }

            if (controller is not null)
            {
                _paths.Remove(node);
                await controller.DisposeAsync();
            }

            var server = _cluster[node].Server is { HasExited: false } s ? s : throw new IOException($"{node} is not running");
            var host = new NvmeTcpHost(new NvmeTcpHostOptions
            {
                HostNqn = _identity.Nqn,
                HostId = _identity.Id,
                Reconnect = false,
                ConnectTimeout = TimeSpan.FromSeconds(5),
                IoQueueSize = 32,
            });
            controller = await host.ConnectAsync(server.NvmeEndpoint, _nqn);
            _paths[node] = controller;
            return controller;
        }
        finally
        {
            _pathGate.Release();
        }
    }

    private async Task DropPathAsync(string node)
    {
        if (node.Length == 0)
        {
            return;
        }

        await _pathGate.WaitAsync();
        try
        {
            if (_paths.Remove(node, out var controller))
            {
                // Commands of other workers in flight on it fail with a path error and are sent again.
                _ = controller.DisposeAsync().AsTask();
            }
        }
        finally
        {
            _pathGate.Release();
        }
    }

    private async Task WaitUnpausedAsync()
    {
        Task resume;
        lock (_gate)
        {
            resume = _resume.Task;
        }

        await resume.WaitAsync(_stop.Token);
    }

    /// <summary>A free run of <paramref name="count"/> blocks, marked busy; −1 when paused or none found (under the lock).</summary>
    private int Reserve(Random random, int count)
    {
        if (_paused)
        {
            return -1;
        }

        for (var attempt = 0; attempt < 8; attempt++)
        {
            var first = random.Next(0, _blocks - count + 1);
            var free = true;
            for (var i = 0; i < count && free; i++)
            {
                free = !_busy[first + i];
            }

            if (free)
            {
                for (var i = 0; i < count; i++)
                {
                    _busy[first + i] = true;
                }

                return first;
            }
        }

        return -1;
    }

    private void Release(int first, int count)
    {
        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            for (var i = 0; i < count; i++)
            {
                _busy[first + i] = false;
            }

            if (--_active == 0 && _paused)
            {
                idle = _idle;
                _idle = null;
            }
        }

        idle?.TrySetResult();
    }

    private void NoteAck()
    {
        var now = Stopwatch.GetTimestamp();
        var previous = Interlocked.Exchange(ref _lastAckTicks, now);
        var gap = now - previous;
        long longest;
        do
        {
            longest = Volatile.Read(ref _longestGapTicks);
        }
        while (gap > longest && Interlocked.CompareExchange(ref _longestGapTicks, gap, longest) != longest);
    }

    private static void Fill(int block, long seq, Span<byte> data)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(data, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(data[8..], block);
        BinaryPrimitives.WriteInt64LittleEndian(data[16..], seq);
        var state = (ulong)seq * 0x9E37_79B9_7F4A_7C15UL ^ (ulong)block;
        for (var i = 24; i + 8 <= data.Length; i += 8)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(data[i..], state);
        }
    }

    /// <summary>The sequence number of the write a block holds; 0 for zeroes (never written), −1 for anything else.</summary>
    private static long SequenceIn(int block, ReadOnlySpan<byte> data)
    {
        if (!data.ContainsAnyExcept((byte)0))
        {
            return 0;
        }

        if (BinaryPrimitives.ReadUInt64LittleEndian(data) != Magic || BinaryPrimitives.ReadInt64LittleEndian(data[8..]) != block)
        {
            return -1;
        }

        var seq = BinaryPrimitives.ReadInt64LittleEndian(data[16..]);
        Span<byte> expected = stackalloc byte[BlockBytes];
        Fill(block, seq, expected);
        return data.SequenceEqual(expected) ? seq : -1;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        lock (_gate)
        {
            _resume.TrySetResult();
        }

        try
        {
            await Task.WhenAll(_workers).WaitAsync(TimeSpan.FromMinutes(3));
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }

        foreach (var controller in _paths.Values)
        {
            await controller.DisposeAsync();
        }

        _stop.Dispose();
    }

    public sealed class CheckResult
    {
        public int Blocks;
        public int Written;
        public List<string> Errors { get; } = new();
    }
}
