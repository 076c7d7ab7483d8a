using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CsiNvme.Csi.Tests.Migration;

/// <summary>IOPS and latency of one disk over one phase.</summary>
internal sealed record PhaseStats(double Seconds, long Ios, double Iops, double P50Ms, double P99Ms);

/// <summary>One disk's numbers over a run.</summary>
internal sealed record DiskSummary(
    string Disk,
    PhaseStats Before,
    PhaseStats Precopy,
    PhaseStats After,
    double PrecopyIopsRatio,
    double PrecopyP99Ratio,
    double AfterIopsRatio,
    double AfterP99Ratio,
    double SwitchoverGapMs,
    double LongestStallMs,
    double LongestStallAt,
    long IoErrors,
    long VerifyFailures,
    bool HandoverMatches,
    RestRange AtRest);

/// <summary>
/// How far windows of the steady state as long as the pre-copy stray from the whole steady state (IOPS and p99 ratios,
/// lowest and highest): the noise a pre-copy ratio has to be read against, measured with no migration going on.
/// </summary>
internal sealed record RestRange(double WindowSeconds, double IopsRatioMin, double IopsRatioMax, double P99RatioMin, double P99RatioMax);

/// <summary>
/// Turns a <see cref="MigrationRecord"/> into its per-second series (CSV), its summary (JSON, and a Markdown table) and
/// its chart (PNG). Steady state is the source's run before the destination was published, without its first
/// <see cref="WarmupSeconds"/> seconds; pre-copy runs from the destination's ControllerPublish to the switchover; after
/// is the destination's run. IOPS count reads and writes; p99 is over every I/O of the phase.
/// </summary>
internal sealed class MigrationReport
{
    public const double WarmupSeconds = 2;

    private static readonly JsonSerializerOptions _json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly MigrationRecord _record;

    public MigrationReport(MigrationRecord record)
    {
        _record = record;
        var sorted = record.Completions.OrderBy(c => c.At).ToArray();
        Completions = sorted;
        Disks = record.Disks.Select((name, i) => Summarize(name, i)).ToArray();
        SwitchoverGapMs = (FirstDestinationCompletion - LastSourceCompletion) * 1000;
    }

    public IReadOnlyList<IoCompletion> Completions { get; }

    public IReadOnlyList<DiskSummary> Disks { get; }

    /// <summary>From the source's last completion on any disk to the destination's first on any disk.</summary>
    public double SwitchoverGapMs { get; }

    /// <summary>
    /// From the destination's go (or, without one, the command starting its workload) to its first I/O being issued
    /// (its first completion less that I/O's latency): part of the gap, not spent waiting on storage.
    /// </summary>
    public double DestinationStartupMs =>
        FirstDestinationIssue * 1000 - (double.IsFinite(_record.DestinationGoAt) ? _record.DestinationGoAt : _record.DestinationStart) * 1000;

    /// <summary>The source's flush of every disk once its workload stopped (QEMU's flush when it pauses the VM).</summary>
    public double SourceFlushMs => (_record.SourceFlush.End - _record.SourceFlush.Start) * 1000;

    /// <summary>From the destination's go to its first completion on any disk: its first I/O's issue and latency.</summary>
    public double DestinationFirstIoMs => (FirstDestinationCompletion - _record.DestinationGoAt) * 1000;

    /// <summary>
    /// The switchover's share that waits on the storage: the source's final flush plus the destination's wait for its
    /// first completion after its go. Not in it: fio's exit on the source, the harness' checks between the two sides,
    /// the guest round trips. Each part is measured on one guest's clock, so the clock offsets do not enter it.
    /// </summary>
    public double StorageSwitchoverMs => SourceFlushMs + DestinationFirstIoMs;

    private double LastSourceCompletion => Completions.Where(c => c.Side == MigrationSide.Source).Select(c => c.At).DefaultIfEmpty(double.NaN).Max();

    private double FirstDestinationCompletion => Completions.Where(c => c.Side == MigrationSide.Destination).Select(c => c.At).DefaultIfEmpty(double.NaN).Min();

    private double FirstDestinationIssue =>
        Completions.Where(c => c.Side == MigrationSide.Destination).Select(c => c.At - c.LatencyMs / 1000).DefaultIfEmpty(double.NaN).Min();

    public long IoErrors => Disks.Sum(d => d.IoErrors);

    public long VerifyFailures => Disks.Sum(d => d.VerifyFailures) + Disks.Count(d => !d.HandoverMatches);

    /// <summary>Writes NAME.csv (per second and disk), NAME.json (summary) and NAME.png (chart) into <paramref name="directory"/>.</summary>
    public void Write(string directory, string name)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, name + ".csv"), SeriesCsv());
        File.WriteAllText(Path.Combine(directory, name + ".json"), SummaryJson());
        MigrationChart.Draw(this, _record).Save(Path.Combine(directory, name + ".png"));
    }

    /// <summary>second, disk, side, reads, writes, iops, p50_ms, p99_ms: one row per second and disk.</summary>
    public string SeriesCsv()
    {
        var text = new StringBuilder("second,disk,reads,writes,iops,p50_ms,p99_ms,source_ios,destination_ios\n");
        foreach (var (second, disk, ios) in PerSecond())
        {
            var latencies = ios.Select(c => c.LatencyMs).ToArray();
            text.Append(CultureInfo.InvariantCulture, $"{second},{_record.Disks[disk]},{ios.Count(c => !c.Write)},{ios.Count(c => c.Write)},{ios.Length},");
            text.Append(CultureInfo.InvariantCulture, $"{Format(Percentile(latencies, 0.50))},{Format(Percentile(latencies, 0.99))},");
            text.Append(CultureInfo.InvariantCulture, $"{ios.Count(c => c.Side == MigrationSide.Source)},{ios.Count(c => c.Side == MigrationSide.Destination)}\n");
        }

        return text.ToString();
    }

    /// <summary>Each whole second of the run and disk with its completions (empty seconds included).</summary>
    public IEnumerable<(int Second, int Disk, IoCompletion[] Ios)> PerSecond()
    {
        var seconds = (int)Math.Ceiling(_record.End);
        var buckets = new List<IoCompletion>[seconds + 1, _record.Disks.Count];
        foreach (var c in Completions)
        {
            var s = (int)Math.Floor(c.At);
            if (s >= 0 && s <= seconds)
            {
                (buckets[s, c.Disk] ??= []).Add(c);
            }
        }

        for (var s = 0; s <= seconds; s++)
        {
            for (var d = 0; d < _record.Disks.Count; d++)
            {
                yield return (s, d, buckets[s, d]?.ToArray() ?? []);
            }
        }
    }

    public string SummaryJson() => JsonSerializer.Serialize(new
    {
        setup = _record.Setup,
        storageEvent = _record.StorageEvent,
        startedAt = _record.StartedAt,
        workload = _record.Workload,
        diskMiB = _record.DiskMiB,
        phases = new
        {
            beforeSeconds = Round(_record.PrecopyStart - FirstSourceCompletion() - WarmupSeconds),
            precopySeconds = Round(_record.SwitchoverStart - _record.PrecopyStart),
            afterSeconds = Round(_record.End - _record.DestinationStart),
        },
        switchover = new
        {
            gapMs = Round(SwitchoverGapMs),
            verificationMs = Round(_record.VerificationSeconds * 1000),
            gapWithoutVerificationMs = Round(SwitchoverGapMs - _record.VerificationSeconds * 1000),
            sourceFlushMs = Round(SourceFlushMs),
            destinationFirstIoMs = Round(DestinationFirstIoMs),
            destinationStartupMs = Round(DestinationStartupMs),
            storageSwitchoverMs = Round(StorageSwitchoverMs),
            clockUncertaintyMs = Round(_record.Clocks.Values.Select(c => c.UncertaintyMs).DefaultIfEmpty(0).Sum()),
        },
        ioErrors = IoErrors,
        verifyMismatches = VerifyFailures,
        goals = new
        {
            precopyIopsAtLeast97Percent = Disks.All(d => d.PrecopyIopsRatio >= 0.97),
            precopyP99AtMost110Percent = Disks.All(d => d.PrecopyP99Ratio <= 1.10),
            storageSwitchoverUnder1s = StorageSwitchoverMs < 1000,
            noErrors = IoErrors == 0,
            noMismatches = VerifyFailures == 0,
        },
        disks = Disks.Select(d => new
        {
            d.Disk,
            before = Phase(d.Before),
            precopy = Phase(d.Precopy),
            after = Phase(d.After),
            precopyIopsRatio = Round(d.PrecopyIopsRatio, 3),
            precopyP99Ratio = Round(d.PrecopyP99Ratio, 3),
            afterIopsRatio = Round(d.AfterIopsRatio, 3),
            afterP99Ratio = Round(d.AfterP99Ratio, 3),
            switchoverGapMs = Round(d.SwitchoverGapMs),
            longestStallOutsideSwitchoverMs = Round(d.LongestStallMs),
            longestStallAtSecond = Round(d.LongestStallAt, 1),
            d.IoErrors,
            verifyFailures = d.VerifyFailures,
            handoverChecksumsMatch = d.HandoverMatches,
            atRest = new
            {
                windowSeconds = Round(d.AtRest.WindowSeconds, 1),
                iopsRatioMin = Round(d.AtRest.IopsRatioMin, 3),
                iopsRatioMax = Round(d.AtRest.IopsRatioMax, 3),
                p99RatioMin = Round(d.AtRest.P99RatioMin, 3),
                p99RatioMax = Round(d.AtRest.P99RatioMax, 3),
            },
        }),
        fio = _record.Fio.Select(f => new { f.Disk, side = f.Side.ToString().ToLowerInvariant(), f.Reads, f.Writes, f.Errors, f.VerifyFailures, f.FirstError }),
        clocks = _record.Clocks.ToDictionary(c => c.Key.ToString().ToLowerInvariant(), c => new { offsetMs = Round(c.Value.OffsetMs), uncertaintyMs = Round(c.Value.UncertaintyMs) }),
        events = _record.Events.OrderBy(e => e.At).Select(e => new { at = Round(e.At, 3), e.What, durationSeconds = e.DurationSeconds is { } s ? Round(s, 3) : (double?)null }),
    }, _json);

    /// <summary>A Markdown table of the per-disk numbers, for docs/kubevirt.md.</summary>
    public string MarkdownTable()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{_record.Setup}{(_record.StorageEvent is null ? "" : ", " + _record.StorageEvent)}: storage switchover {StorageSwitchoverMs:F0} ms " +
            $"(the source's final flush {SourceFlushMs:F0} ms + the destination's first completion {DestinationFirstIoMs:F0} ms after its go); " +
            $"wall gap {SwitchoverGapMs:F0} ms, of which {_record.VerificationSeconds * 1000:F0} ms the harness' handover checksum reads; " +
            $"{IoErrors} I/O errors, {VerifyFailures} verify mismatches");
        text.AppendLine();
        text.AppendLine("| disk | before IOPS | before p99 ms | pre-copy IOPS | ratio | at rest | pre-copy p99 ms | ratio | at rest | after IOPS | after p99 ms | gap ms | longest stall ms |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var d in Disks)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {d.Disk} | {d.Before.Iops:F0} | {d.Before.P99Ms:F2} | {d.Precopy.Iops:F0} | {d.PrecopyIopsRatio:F3} | {d.AtRest.IopsRatioMin:F2}–{d.AtRest.IopsRatioMax:F2} | " +
                $"{d.Precopy.P99Ms:F2} | {d.PrecopyP99Ratio:F3} | {d.AtRest.P99RatioMin:F2}–{d.AtRest.P99RatioMax:F2} | {d.After.Iops:F0} | {d.After.P99Ms:F2} | {d.SwitchoverGapMs:F0} | {d.LongestStallMs:F0} |");
        }

        return text.ToString();
    }

    public static double Percentile(double[] values, double p)
    {
        if (values.Length == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        // Nearest rank: the smallest value with at least p of the values at or below it.
        var rank = (int)Math.Ceiling(p * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    private double FirstSourceCompletion() =>
        Completions.Where(c => c.Side == MigrationSide.Source).Select(c => c.At).DefaultIfEmpty(0).Min();

    private DiskSummary Summarize(string name, int disk)
    {
        var ios = Completions.Where(c => c.Disk == disk).ToArray();
        var source = ios.Where(c => c.Side == MigrationSide.Source).ToArray();
        var destination = ios.Where(c => c.Side == MigrationSide.Destination).ToArray();
        var steadyFrom = (source.Length > 0 ? source[0].At : 0) + WarmupSeconds;
        var before = Stats(source, steadyFrom, _record.PrecopyStart);
        var precopy = Stats(source, _record.PrecopyStart, _record.SwitchoverStart);
        var afterFrom = destination.Length > 0 ? destination[0].At : _record.DestinationStart;
        var after = Stats(destination, afterFrom, _record.End);
        var gap = source.Length > 0 && destination.Length > 0 ? (destination[0].At - source[^1].At) * 1000 : double.NaN;

        // The longest time without a completion on this disk on either side, the switchover excepted: a storage
        // event's stall shows here.
        var (stall, stallAt) = (0.0, 0.0);
        foreach (var side in new[] { source, destination })
        {
            for (var i = 1; i < side.Length; i++)
            {
                var idle = side[i].At - side[i - 1].At;
                if (idle * 1000 > stall)
                {
                    (stall, stallAt) = (idle * 1000, side[i - 1].At);
                }
            }
        }

        var atRest = RestWindows(source, steadyFrom, _record.PrecopyStart, precopy.Seconds, before);
        var fio = _record.Fio.Where(f => f.Disk == name).ToArray();
        var handover = _record.Handover.TryGetValue(name, out var sums) && sums.Source.Length > 0 && sums.Source == sums.Destination;
        return new DiskSummary(
            name, before, precopy, after,
            precopy.Iops / before.Iops, precopy.P99Ms / before.P99Ms,
            after.Iops / before.Iops, after.P99Ms / before.P99Ms,
            gap, stall, stallAt,
            fio.Sum(f => f.Errors - f.VerifyFailures), fio.Sum(f => f.VerifyFailures), handover, atRest);
    }

    /// <summary>Every window of <paramref name="length"/> seconds, a second apart, inside [from, to), against the whole.</summary>
    private static RestRange RestWindows(IoCompletion[] ios, double from, double to, double length, PhaseStats whole)
    {
        var ratios = new List<(double Iops, double P99)>();
        for (var start = from; length > 0 && start + length <= to; start += 1)
        {
            var window = Stats(ios, start, start + length);
            ratios.Add((window.Iops / whole.Iops, window.P99Ms / whole.P99Ms));
        }

        return ratios.Count == 0
            ? new RestRange(length, double.NaN, double.NaN, double.NaN, double.NaN)
            : new RestRange(length, ratios.Min(r => r.Iops), ratios.Max(r => r.Iops), ratios.Min(r => r.P99), ratios.Max(r => r.P99));
    }

    private static PhaseStats Stats(IoCompletion[] ios, double from, double to)
    {
        var seconds = Math.Max(0, to - from);
        var inside = ios.Where(c => c.At >= from && c.At < to).Select(c => c.LatencyMs).ToArray();
        return new PhaseStats(seconds, inside.Length, seconds > 0 ? inside.Length / seconds : double.NaN, Percentile(inside, 0.50), Percentile(inside, 0.99));
    }

    private static object Phase(PhaseStats p) => new
    {
        seconds = Round(p.Seconds, 1),
        p.Ios,
        iops = Round(p.Iops),
        p50Ms = Round(p.P50Ms, 3),
        p99Ms = Round(p.P99Ms, 3),
    };

    private static double Round(double value, int digits = 0) => double.IsFinite(value) ? Math.Round(value, digits) : value;

    private static string Format(double value) => double.IsFinite(value) ? value.ToString("0.###", CultureInfo.InvariantCulture) : "";
}
