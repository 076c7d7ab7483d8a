using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Replication;

/// <summary>How a rebuild ended.</summary>
public sealed record RebuildResult(bool Succeeded, long BytesCopied, long RegionsCopied, long RegionsVerified, TimeSpan Duration, string? Error);

/// <summary>Where a rebuild is: regions done and left, bytes copied.</summary>
public sealed record RebuildProgress(long RegionsDone, long RegionsTotal, long BytesCopied, double BytesPerSecond);

/// <summary>Tunables of a rebuild.</summary>
public sealed class RebuildOptions
{
    /// <summary>Copy rate limit, so a rebuild leaves the volume's own I/O its bandwidth; 0 for none.</summary>
    public long BytesPerSecond { get; set; } = 200L << 20;

    /// <summary>Largest single copy or check command (at most the replica's MDTS).</summary>
    public int ChunkSize { get; set; } = 512 * 1024;

    /// <summary>How many times a region that fails its check is copied again before the rebuild gives up.</summary>
    public int VerifyRetries { get; set; } = 2;
}

/// <summary>
/// Brings a replica back in sync while the volume serves I/O: it already receives every change (it is
/// <see cref="ReplicaMode.Rebuilding"/>), and the rebuild copies the regions its dirty map marks (only the regions
/// written since it fell out: a delta rebuild; every allocated region for a new replica: a full rebuild), in the write
/// order, at a bounded rate, until the map is empty; then it reads back every copied region from the primary's copy and
/// from the replica at one point of the write order and compares them. Only then may the replica be called in sync.
/// </summary>
public sealed partial class RebuildJob
{
    private readonly ReplicatedVolume _volume;
    private readonly string _node;
    private readonly RebuildOptions _options;
    private readonly ILogger _logger;

    public RebuildJob(ReplicatedVolume volume, string node, RebuildOptions options, ILogger<RebuildJob> logger)
    {
        _volume = volume;
        _node = node;
        _options = options;
        _logger = logger;
    }

    public async Task<RebuildResult> RunAsync(IProgress<RebuildProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var dirty = _volume.DirtyRegions(_node);
        var regionSize = dirty.RegionSize;
        var copied = new HashSet<long>();
        long bytes = 0;
        var total = dirty.MarkedCount;
        LogRebuildStarted(_logger, _node, total, regionSize);
        var retries = 0;
        while (true)
        {
            // Copy until nothing is marked: a change that failed on an older link may mark a region again meanwhile.
            while (dirty.MarkedCount > 0)
            {
                foreach (var region in dirty.Marked().ToArray())
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    dirty.Clear(region);
                    var start = region * regionSize;
                    var end = Math.Min(start + regionSize, _volume.SizeBytes);
                    for (var offset = start; offset < end; offset += _options.ChunkSize)
                    {
                        var length = (int)Math.Min(_options.ChunkSize, end - offset);
                        if (!await _volume.CopyAsync(_node, offset, length).ConfigureAwait(false))
                        {
                            dirty.MarkRegion(region);
                            return Failed(clock, bytes, copied.Count, 0, $"copying {length} bytes at {offset} to {_node} failed (the replica dropped out)");
                        }

                        bytes += length;
                        await ThrottleAsync(bytes, clock, cancellationToken).ConfigureAwait(false);
                    }

                    copied.Add(region);
                    progress?.Report(new RebuildProgress(copied.Count, Math.Max(total, copied.Count), bytes, bytes / Math.Max(clock.Elapsed.TotalSeconds, 1e-3)));
                }
            }

            // Check every copied region against the primary's copy, at one point of the write order each.
            long verified = 0;
            var mismatched = new List<long>();
            foreach (var region in copied.Order())
            {
                cancellationToken.ThrowIfCancellationRequested();
                var start = region * regionSize;
                var end = Math.Min(start + regionSize, _volume.SizeBytes);
                for (var offset = start; offset < end; offset += _options.ChunkSize)
                {
                    var length = (int)Math.Min(_options.ChunkSize, end - offset);
                    if (!await _volume.VerifyAsync(_node, offset, length).ConfigureAwait(false))
                    {
                        mismatched.Add(region);
                        break;
                    }
                }

                verified++;
            }

            if (mismatched.Count == 0 && dirty.MarkedCount == 0)
            {
                LogRebuildFinished(_logger, _node, copied.Count, bytes, clock.Elapsed.TotalSeconds);
                return new RebuildResult(true, bytes, copied.Count, verified, clock.Elapsed, null);
            }

            if (++retries > _options.VerifyRetries)
            {
                return Failed(clock, bytes, copied.Count, verified, $"{mismatched.Count} regions still differ on {_node} after {_options.VerifyRetries} copies (first at byte {mismatched.FirstOrDefault() * regionSize})");
            }

            LogVerifyMismatch(_logger, _node, mismatched.Count);
            foreach (var region in mismatched)
            {
                dirty.MarkRegion(region);
            }
        }
    }

    private RebuildResult Failed(Stopwatch clock, long bytes, long regions, long verified, string error)
    {
        LogRebuildFailed(_logger, _node, error);
        return new RebuildResult(false, bytes, regions, verified, clock.Elapsed, error);
    }

    private async Task ThrottleAsync(long bytes, Stopwatch clock, CancellationToken cancellationToken)
    {
        if (_options.BytesPerSecond <= 0)
        {
            return;
        }

        var due = TimeSpan.FromSeconds((double)bytes / _options.BytesPerSecond);
        var ahead = due - clock.Elapsed;
        if (ahead > TimeSpan.FromMilliseconds(1))
        {
            await Task.Delay(ahead, cancellationToken).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Rebuild of the replica on {Node} started: {Regions} regions of {RegionSize} bytes to copy")]
    private static partial void LogRebuildStarted(ILogger logger, string node, long regions, int regionSize);

    [LoggerMessage(Level = LogLevel.Information, Message = "Rebuild of the replica on {Node} finished and verified: {Regions} regions, {Bytes} bytes in {Seconds:F1} s")]
    private static partial void LogRebuildFinished(ILogger logger, string node, long regions, long bytes, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rebuild of the replica on {Node}: {Regions} regions differ after copying, copying them again")]
    private static partial void LogVerifyMismatch(ILogger logger, string node, int regions);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rebuild of the replica on {Node} failed: {Error}")]
    private static partial void LogRebuildFailed(ILogger logger, string node, string error);
}
