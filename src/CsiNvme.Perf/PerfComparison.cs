using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Perf;

/// <summary>
/// NVMe load and the raw TCP limit load from one process, taking turns in short windows: each side is connected and
/// ramped once, then the sides alternate (NVMe, limit, limit, NVMe, ...), one measured window each, the other side
/// held with nothing in flight. Separate runs of the two modes a few seconds apart differ by up to 30 % on a shared
/// VM in either direction; windows a fraction of a second apart share the machine's state, so the ratio of each
/// pair of windows is a much tighter measurement of what NVMe costs on top of TCP.
/// </summary>
public static class PerfComparison
{
    /// <summary>Runs the comparison. <paramref name="nvme"/>'s duration is each side's measured time in total.</summary>
    public static async Task<ComparisonResult> RunAsync(PerfOptions nvme, IPEndPoint limitTarget, int windows, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        if (windows < 1)
        {
            throw new ArgumentException("--windows must be at least 1");
        }

        var window = nvme.Duration / windows;
        if (window < TimeSpan.FromMilliseconds(50))
        {
            throw new ArgumentException($"--time {nvme.Duration.TotalSeconds} s over {windows} windows leaves less than 50 ms per window");
        }

        // Each window starts unmeasured while the load fills its queue again and the peer wakes up.
        var settle = TimeSpan.FromTicks(Math.Max(window.Ticks / 10, TimeSpan.FromMilliseconds(20).Ticks));
        var limit = nvme with { Target = limitTarget, SubsystemNqn = "" };
        var sides = new[]
        {
            new Side("NVMe load", RunState.Driven()),
            new Side("TCP limit load", RunState.Driven()),
        };
        sides[0].Load = NvmePerfRunner.RunAsync(nvme, sides[0].Run, loggerFactory, cancellationToken);
        sides[1].Load = TcpBaseline.RunAsync(limit, sides[1].Run, cancellationToken);
        var pairs = new List<ComparisonWindow>();
        try
        {
            foreach (var side in sides)
            {
                await side.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
            }

            foreach (var side in sides)
            {
                side.Run.Release();
                await Task.Delay(nvme.Ramp, cancellationToken).ConfigureAwait(false);
                await side.HoldAsync(cancellationToken).ConfigureAwait(false);
            }

            for (var w = 0; w < windows; w++)
            {
                // Alternating the order cancels what going first or second in a pair does to a side.
                var first = w % 2;
                var a = await sides[first].MeasureWindowAsync(window, settle, cancellationToken).ConfigureAwait(false);
                var b = await sides[1 - first].MeasureWindowAsync(window, settle, cancellationToken).ConfigureAwait(false);
                var (nvmeIops, limitIops) = first == 0 ? (a, b) : (b, a);
                pairs.Add(new ComparisonWindow(Math.Round(nvmeIops, 1), Math.Round(limitIops, 1), limitIops > 0 ? Math.Round(nvmeIops / limitIops, 4) : 0));
            }

            foreach (var side in sides)
            {
                side.Run.Finish(side.Measured);
            }

            var nvmeResult = await sides[0].Load!.ConfigureAwait(false);
            var limitResult = await sides[1].Load!.ConfigureAwait(false);
            return ComparisonResult.From(nvmeResult, limitResult, pairs);
        }
        catch (Exception ex)
        {
            foreach (var side in sides)
            {
                side.Run.Abort(ex);
            }

            foreach (var side in sides)
            {
                try
                {
                    await side.Load!.ConfigureAwait(false);
                }
                catch (Exception sideError) when (sideError != ex)
                {
                    // The first failure is the one reported; the other side only ended because of it.
                }
            }

            throw;
        }
    }

    private sealed class Side(string name, RunState run)
    {
        public string Name { get; } = name;

        public RunState Run { get; } = run;

        public Task<PerfResult>? Load { get; set; }

        public TimeSpan Measured { get; private set; }

        /// <summary>Waits until the load is connected and every loop parked, or fails as the load failed.</summary>
        public Task WaitReadyAsync(CancellationToken cancellationToken) =>
            WaitAtRestAsync(TimeSpan.FromSeconds(60), "did not connect within 60 s", cancellationToken);

        /// <summary>Holds the load and waits until nothing of it is in flight.</summary>
        public Task HoldAsync(CancellationToken cancellationToken)
        {
            Run.Hold();
            return WaitAtRestAsync(TimeSpan.FromSeconds(30), "did not come to rest within 30 s", cancellationToken);
        }

        /// <summary>
        /// Polls (bounded) until every loop of the load is parked or ended; fails as the load failed if it ended
        /// altogether, since then it no longer waits for the comparison.
        /// </summary>
        private async Task WaitAtRestAsync(TimeSpan limit, string timedOut, CancellationToken cancellationToken)
        {
            var deadline = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
            while (true)
            {
                if (Load!.IsCompleted)
                {
                    await Load.ConfigureAwait(false);
                    throw new InvalidOperationException($"the {Name} ended before the comparison did");
                }

                if (Run.AllParked)
                {
                    return;
                }

                if (Stopwatch.GetTimestamp() > deadline)
                {
                    throw new TimeoutException($"the {Name} {timedOut}");
                }

                await Task.Delay(1, cancellationToken).ConfigureAwait(false);
            }
        }

        /// <summary>Releases the load, measures one window after the settle time, holds it again; returns its IOPS.</summary>
        public async Task<double> MeasureWindowAsync(TimeSpan window, TimeSpan settle, CancellationToken cancellationToken)
        {
            Run.Release();
            await Task.Delay(settle, cancellationToken).ConfigureAwait(false);
            var before = Run.CountMeasured!();
            var from = Stopwatch.GetTimestamp();
            Run.MeasureFrom = from;
            Volatile.Write(ref Run.Measuring, true);
            await Task.Delay(window, cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref Run.Measuring, false);
            var until = Stopwatch.GetTimestamp();
            await HoldAsync(cancellationToken).ConfigureAwait(false);
            var elapsed = Stopwatch.GetElapsedTime(from, until);
            Measured += elapsed;
            return (Run.CountMeasured!() - before) / elapsed.TotalSeconds;
        }
    }
}

/// <summary>One pair of measured windows: the NVMe load's and the limit load's IOPS and their ratio.</summary>
public sealed record ComparisonWindow(double NvmeIops, double LimitIops, double Ratio);

/// <summary>Both loads' results over all their windows, and the NVMe / limit ratios of the window pairs.</summary>
public sealed record ComparisonResult
{
    public required PerfResult Nvme { get; init; }

    public required PerfResult Limit { get; init; }

    public required IReadOnlyList<ComparisonWindow> Windows { get; init; }

    /// <summary>Median of the window pairs' NVMe / limit IOPS ratios.</summary>
    public double MedianRatio { get; init; }

    /// <summary>First quartile of the pairs' ratios.</summary>
    public double LowerQuartileRatio { get; init; }

    /// <summary>Third quartile of the pairs' ratios.</summary>
    public double UpperQuartileRatio { get; init; }

    /// <summary>NVMe IOPS over all windows divided by limit IOPS over all windows.</summary>
    public double RatioOfTotals { get; init; }

    /// <summary>NVMe p50 latency divided by the limit's.</summary>
    public double P50LatencyRatio { get; init; }

    public static ComparisonResult From(PerfResult nvme, PerfResult limit, IReadOnlyList<ComparisonWindow> windows)
    {
        var ratios = windows.Select(w => w.Ratio).Order().ToArray();
        return new ComparisonResult
        {
            Nvme = nvme,
            Limit = limit,
            Windows = windows,
            MedianRatio = Math.Round(Quantile(ratios, 0.5), 4),
            LowerQuartileRatio = Math.Round(Quantile(ratios, 0.25), 4),
            UpperQuartileRatio = Math.Round(Quantile(ratios, 0.75), 4),
            RatioOfTotals = limit.Iops > 0 ? Math.Round(nvme.Iops / limit.Iops, 4) : 0,
            P50LatencyRatio = limit.Latency.P50Us > 0 ? Math.Round(nvme.Latency.P50Us / limit.Latency.P50Us, 4) : 0,
        };
    }

    /// <summary>Quantile of sorted values with linear interpolation between neighbours (0 when empty).</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0)
        {
            return 0;
        }

        var position = q * (sorted.Count - 1);
        var below = (int)Math.Floor(position);
        var above = Math.Min(below + 1, sorted.Count - 1);
        return sorted[below] + ((sorted[above] - sorted[below]) * (position - below));
    }

    public string ToJson() => JsonSerializer.Serialize(this, PerfJsonContext.Default.ComparisonResult);

    public static ComparisonResult FromJson(string json) =>
        JsonSerializer.Deserialize(json, PerfJsonContext.Default.ComparisonResult) ?? throw new FormatException("empty comparison result");

    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.Append(Nvme.ToText());
        text.Append(Limit.ToText());
        text.AppendLine(c, $"NVMe / TCP limit over {Windows.Count} window pairs: median {MedianRatio:F3} (quartiles {LowerQuartileRatio:F3} .. {UpperQuartileRatio:F3}), totals {RatioOfTotals:F3}, p50 latency {P50LatencyRatio:F3}x");
        text.AppendLine(c, $"  pairs (kIOPS NVMe/limit): {string.Join("  ", Windows.Select(w => string.Create(c, $"{w.NvmeIops / 1000:F0}/{w.LimitIops / 1000:F0}")))}");
        return text.ToString();
    }
}
