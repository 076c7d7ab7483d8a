using Prometheus;

namespace CsiNvme.Csi.Hosting;

/// <summary>
/// Prometheus collectors of the driver's gRPC calls. Each driver owns its registry so several drivers in
/// one process (tests) keep separate counters.
/// </summary>
public sealed class CsiMetrics
{
    private readonly Counter _calls;
    private readonly Counter _errors;
    private readonly Histogram _latency;

    public CsiMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _calls = factory.CreateCounter("csinvme_csi_calls_total", "Completed CSI calls per method and gRPC status code.", ["method", "code"]);
        _errors = factory.CreateCounter("csinvme_csi_call_errors_total", "CSI calls that ended with a status other than OK, per method.", ["method"]);
        _latency = factory.CreateHistogram(
            "csinvme_csi_call_duration_seconds",
            "Duration of CSI calls per method.",
            ["method"],
            new HistogramConfiguration
            {
                // 100 µs doubling to ~105 s: from Identity calls to a node staging a volume through the kernel.
                Buckets = Histogram.ExponentialBuckets(0.0001, 2, 21),
            });
    }

    public CollectorRegistry Registry { get; }

    public void Record(string method, Grpc.Core.StatusCode code, TimeSpan duration)
    {
        _calls.WithLabels(method, code.ToString()).Inc();
        if (code != Grpc.Core.StatusCode.OK)
        {
            _errors.WithLabels(method).Inc();
        }

        _latency.WithLabels(method).Observe(duration.TotalSeconds);
    }
}
