using System.Diagnostics;
using System.Net;
using CsiNvme.Host;
using CsiNvme.Protocol.Commands;

namespace CsiNvme.Perf.Failover;

/// <summary>Where the benchmark's writes go now: the node the volume record names primary and its NVMe/TCP path.</summary>
public sealed record PrimaryPath(string Node, EndPoint Endpoint);

/// <summary>What the failover benchmark needs from the cluster around it.</summary>
public interface IFailoverCluster
{
    /// <summary>The volume's current primary (which may not serve yet: its path may still be turning optimized).</summary>
    Task<PrimaryPath> FindPrimaryAsync(CancellationToken cancellationToken);

    /// <summary>Kills the node's storage server abruptly (kill -9).</summary>
    Task KillAsync(string node, CancellationToken cancellationToken);

    /// <summary>Starts the node's storage server again on the same data.</summary>
    Task RestartAsync(string node, CancellationToken cancellationToken);

    /// <summary>True once every replica of the volume is in sync again.</summary>
    Task<bool> AllInSyncAsync(CancellationToken cancellationToken);
}

public sealed class FailoverBenchOptions
{
    public required string SubsystemNqn { get; init; }

    public required NvmeTcpHostOptions Host { get; init; }

    public int Rounds { get; init; } = 20;

    /// <summary>Writers, each with one write outstanding.</summary>
    public int QueueDepth { get; init; } = 4;

    public int IoSize { get; init; } = 4096;

    /// <summary>Writes land in the first bytes of the volume (random offsets).</summary>
    public long Region { get; init; } = 64L << 20;

    /// <summary>Load before each kill, so the gap is measured from a steady stream of completions.</summary>
    public TimeSpan SteadyBeforeKill { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A round whose writes have not resumed by then counts as failed.</summary>
    public TimeSpan ResumeTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a round waits for the killed node's replicas to be in sync again before the next kill.</summary>
    public TimeSpan HealTimeout { get; init; } = TimeSpan.FromMinutes(3);
}

/// <summary>One kill of a primary and how long writes stalled.</summary>
/// <param name="PathErrorsRetried">Writes the old primary's path refused or lost during the round, sent again on the new one (as a multipath host requeues them); not errors.</param>
public sealed record FailoverRound(int Round, string Killed, string NewPrimary, double StallSeconds, double HealSeconds, long PathErrorsRetried);

/// <summary>The stall distribution over every round.</summary>
public sealed record FailoverReport(IReadOnlyList<FailoverRound> Rounds, double MedianSeconds, double P90Seconds, double MaxSeconds, long Writes, long WriteErrors);

/// <summary>
/// The failover stall as a host sees it: writers keep a few 4 KiB writes outstanding against the volume's primary, and
/// whenever a write fails with a path error they follow the volume to its new primary as a multipath host does
/// (asking the cluster where the primary is, connecting, retrying writes the path refuses). Each round kills the
/// primary's server, measures the longest time without a completed write, restarts the node and waits until its
/// replicas are in sync again. Writes that fail with anything but a path error are counted as errors.
/// </summary>
public sealed class FailoverBench(IFailoverCluster cluster, FailoverBenchOptions options)
{
    private readonly object _gate = new();
    private NvmeController? _controller;
    private string _node = "";
    private long _lastCompletion;
    private long _longestGapTicks;
    private long _writes;
    private long _errors;
    private long _pathErrors;

    public async Task<FailoverReport> RunAsync(IProgress<string>? progress, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await ReconnectAsync(stop.Token).ConfigureAwait(false);
        Volatile.Write(ref _lastCompletion, Stopwatch.GetTimestamp());
        var writers = Enumerable.Range(0, options.QueueDepth).Select(i => Task.Run(() => WriterAsync(i, stop.Token), CancellationToken.None)).ToArray();
        var rounds = new List<FailoverRound>();
        try
        {
            for (var round = 1; round <= options.Rounds; round++)
            {
                await Task.Delay(options.SteadyBeforeKill, stop.Token).ConfigureAwait(false);
                var victim = _node;
                var failedBefore = Interlocked.Read(ref _pathErrors);
                Interlocked.Exchange(ref _longestGapTicks, 0);
                var writesBefore = Interlocked.Read(ref _writes);
                await cluster.KillAsync(victim, stop.Token).ConfigureAwait(false);
                progress?.Report($"round {round}: killed {victim}");

                // Resumed: writes completed again on another node.
                var deadline = Stopwatch.GetTimestamp() + (long)(options.ResumeTimeout.TotalSeconds * Stopwatch.Frequency);
                while ((_node == victim || Interlocked.Read(ref _writes) <= writesBefore + options.QueueDepth) && Stopwatch.GetTimestamp() < deadline)
                {
                    await Task.Delay(20, stop.Token).ConfigureAwait(false);
                }

                // Let the stream settle, so the gap measured covers the whole stall.
                await Task.Delay(TimeSpan.FromSeconds(1), stop.Token).ConfigureAwait(false);
                var stall = Interlocked.Read(ref _longestGapTicks) / (double)Stopwatch.Frequency;
                if (_node == victim)
                {
                    stall = options.ResumeTimeout.TotalSeconds;
                }

                var newPrimary = _node;
                var healing = Stopwatch.StartNew();
                await cluster.RestartAsync(victim, stop.Token).ConfigureAwait(false);
                while (!await cluster.AllInSyncAsync(stop.Token).ConfigureAwait(false) && healing.Elapsed < options.HealTimeout)
                {
                    await Task.Delay(200, stop.Token).ConfigureAwait(false);
                }

                rounds.Add(new FailoverRound(round, victim, newPrimary, stall, healing.Elapsed.TotalSeconds, Interlocked.Read(ref _pathErrors) - failedBefore));
                progress?.Report($"round {round}: {victim} -> {newPrimary}, stall {stall:F2} s, in sync again after {healing.Elapsed.TotalSeconds:F1} s");
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(writers).ConfigureAwait(false);
            if (_controller is { } controller)
            {
                await controller.DisposeAsync().ConfigureAwait(false);
            }
        }

        var stalls = rounds.Select(r => r.StallSeconds).Order().ToArray();
        return new FailoverReport(
            rounds,
            Percentile(stalls, 0.5),
            Percentile(stalls, 0.9),
            stalls.Length == 0 ? 0 : stalls[^1],
            Interlocked.Read(ref _writes),
            Interlocked.Read(ref _errors));
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    private async Task WriterAsync(int index, CancellationToken cancellationToken)
    {
        var buffer = new byte[options.IoSize];
        var random = new Random(index + 1);
        random.NextBytes(buffer);
        var blocks = (int)(options.Region / options.IoSize);
        while (!cancellationToken.IsCancellationRequested)
        {
            var controller = Volatile.Read(ref _controller);
            NvmeCompletion completion;
            try
            {
                var ns = controller!.FindNamespace(1)!;
                var lba = (ulong)random.Next(blocks) * (ulong)(options.IoSize / ns.BlockSize);
                completion = await controller.IoQueues[index % controller.IoQueues.Count].WriteAsync(ns, lba, buffer).ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or NvmeTransportException or NullReferenceException or ObjectDisposedException)
            {
                completion = new NvmeCompletion(NvmeCompletion.HostPathError, 0, 0);
            }

            if (completion.IsSuccess)
            {
                var now = Stopwatch.GetTimestamp();
                var previous = Interlocked.Exchange(ref _lastCompletion, now);
                var gap = now - previous;
                if (gap > Interlocked.Read(ref _longestGapTicks))
                {
                    Interlocked.Exchange(ref _longestGapTicks, gap);
                }

                Interlocked.Increment(ref _writes);
                continue;
            }

            if (completion.Status.Type != StatusCodeType.PathRelated)
            {
                Interlocked.Increment(ref _errors);
                continue;
            }

            // A path error: the primary is gone or not serving yet; follow the volume (one writer reconnects at a time).
            Interlocked.Increment(ref _pathErrors);
            if (controller is null || controller.State != ControllerState.Live || completion.Status == NvmeCompletion.HostPathError)
            {
                try
                {
                    await ReconnectIfStillAsync(controller, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            else
            {
                try
                {
                    await Task.Delay(10, cancellationToken).ConfigureAwait(false);
                    // An ANA status on a live path: the path may be inaccessible for good (this node is no longer primary).
                    var primary = await cluster.FindPrimaryAsync(cancellationToken).ConfigureAwait(false);
                    if (primary.Node != _node)
                    {
                        await ReconnectIfStillAsync(controller, cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (Exception)
                {
                    // The cluster's API may be briefly unreachable during the failover; try again.
                }
            }
        }
    }

    private async Task ReconnectIfStillAsync(NvmeController? broken, CancellationToken cancellationToken)
    {
        Task reconnect;
        lock (_gate)
        {
            if (!ReferenceEquals(Volatile.Read(ref _controller), broken))
            {
                return;
            }

            _reconnecting ??= ReconnectAsync(cancellationToken);
            reconnect = _reconnecting;
        }

        await reconnect.ConfigureAwait(false);
    }

    private Task? _reconnecting;

    private async Task ReconnectAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    var primary = await cluster.FindPrimaryAsync(cancellationToken).ConfigureAwait(false);
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(TimeSpan.FromSeconds(5));
                    var controller = await new NvmeTcpHost(options.Host).ConnectAsync(primary.Endpoint, options.SubsystemNqn, timeout.Token).ConfigureAwait(false);
                    var old = Interlocked.Exchange(ref _controller, controller);
                    _node = primary.Node;
                    if (old is not null)
                    {
                        _ = old.DisposeAsync().AsTask();
                    }

                    return;
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            lock (_gate)
            {
                _reconnecting = null;
            }
        }
    }
}
