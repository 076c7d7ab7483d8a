using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CsiNvme.Perf;

/// <summary>Latency summary in microseconds.</summary>
public sealed record LatencySummary(double MinUs, double AvgUs, double P50Us, double P99Us, double P999Us, double MaxUs)
{
    public static LatencySummary From(LatencyHistogram h) => h.Count == 0
        ? new LatencySummary(0, 0, 0, 0, 0, 0)
        : new LatencySummary(
            Us(h.MinNanoseconds), Math.Round(h.MeanNanoseconds / 1000.0, 2), Us(h.Percentile(50)), Us(h.Percentile(99)), Us(h.Percentile(99.9)), Us(h.MaxNanoseconds));

    private static double Us(long ns) => Math.Round(ns / 1000.0, 2);
}

/// <summary>What one run measured. Serialized as the --json output and by tools/perf.</summary>
public sealed record PerfResult
{
    /// <summary>"nvme" or "tcp-baseline".</summary>
    public required string Mode { get; init; }

    public required string Target { get; init; }

    public string? SubsystemNqn { get; init; }

    public required string Pattern { get; init; }

    public int ReadPercent { get; init; }

    public int IoSize { get; init; }

    public int QueueDepth { get; init; }

    public int Queues { get; init; }

    public int Connections { get; init; }

    /// <summary>Outstanding I/Os in total (connections × queues × depth).</summary>
    public int TotalDepth { get; init; }

    public bool HeaderDigest { get; init; }

    public bool DataDigest { get; init; }

    /// <summary>The I/O queues were connected with SQ flow control disabled (NVMe mode).</summary>
    public bool SqFlowControlDisabled { get; init; }

    public double Seconds { get; init; }

    public long Ios { get; init; }

    public long Reads { get; init; }

    public long Writes { get; init; }

    public long Bytes { get; init; }

    public double Iops { get; init; }

    public double MiBps { get; init; }

    public required LatencySummary Latency { get; init; }

    public long Errors { get; init; }

    public string? FirstError { get; init; }

    public bool Verify { get; init; }

    public long VerifiedBlocks { get; init; }

    public long UnwrittenBlocks { get; init; }

    public long VerifyFailures { get; init; }

    public string? FirstVerifyFailure { get; init; }

    public int[]? Cpus { get; init; }

    public string? Host { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, PerfJsonContext.Default.PerfResult);

    public static PerfResult FromJson(string json) =>
        JsonSerializer.Deserialize(json, PerfJsonContext.Default.PerfResult) ?? throw new FormatException("empty perf result");

    /// <summary>A human-readable report in the style of spdk_nvme_perf.</summary>
    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(c, $"{Mode} {Pattern}{(Pattern is "rw" or "randrw" ? $" ({ReadPercent}% reads)" : "")} {IoSize} B, QD {QueueDepth} x {Queues} queue(s) x {Connections} connection(s){(SqFlowControlDisabled ? ", SQ flow control off" : "")}, {Seconds:F1} s on {Target}{(SubsystemNqn is null ? "" : " " + SubsystemNqn)}");
        text.AppendLine(c, $"  IOPS      {Iops,12:N0}    ({Reads:N0} reads, {Writes:N0} writes)");
        text.AppendLine(c, $"  MiB/s     {MiBps,12:N1}");
        text.AppendLine(c, $"  latency   min {Latency.MinUs:F1}  avg {Latency.AvgUs:F1}  p50 {Latency.P50Us:F1}  p99 {Latency.P99Us:F1}  p99.9 {Latency.P999Us:F1}  max {Latency.MaxUs:F1} us");
        if (Errors > 0)
        {
            text.AppendLine(c, $"  errors    {Errors:N0} (first: {FirstError})");
        }

        if (Verify)
        {
            text.AppendLine(c, $"  verify    {VerifiedBlocks:N0} blocks good, {UnwrittenBlocks:N0} never written, {VerifyFailures:N0} bad{(FirstVerifyFailure is null ? "" : " (first: " + FirstVerifyFailure + ")")}");
        }

        return text.ToString();
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PerfResult))]
[JsonSerializable(typeof(ComparisonResult))]
internal sealed partial class PerfJsonContext : JsonSerializerContext;
