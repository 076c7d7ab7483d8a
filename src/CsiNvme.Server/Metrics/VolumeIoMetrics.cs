using CsiNvme.Volumes;
using System.Diagnostics;
using CsiNvme.Target.Subsystems;
using Prometheus;

namespace CsiNvme.Server.Metrics;

/// <summary>
/// The metric series of one volume, indexed by <see cref="IoKind"/>. <see cref="Record"/> runs on a connection's
/// thread once per receive batch and kind, so it only touches pre-resolved children.
/// </summary>
public sealed class VolumeIoMetrics : IVolumeMetrics
{
    private static readonly double _secondsPerTick = 1.0 / Stopwatch.Frequency;

    private readonly Counter.Child[] _operations;
    private readonly Counter.Child[] _bytes;
    private readonly Counter.Child[] _errors;
    private readonly Histogram.Child[] _latency;
    private readonly Gauge.Child _size;

    internal VolumeIoMetrics(Counter.Child[] operations, Counter.Child[] bytes, Counter.Child[] errors, Histogram.Child[] latency, Gauge.Child size)
    {
        _operations = operations;
        _bytes = bytes;
        _errors = errors;
        _latency = latency;
        _size = size;
    }

    public void Record(IoKind kind, int commands, int failed, long bytes, long elapsedTimestampTicks)
    {
        var i = (int)kind;
        if ((uint)i >= (uint)_operations.Length || commands <= 0)
        {
            return;
        }

        _operations[i].Inc(commands);
        _latency[i].Observe(elapsedTimestampTicks * _secondsPerTick, commands);
        if (bytes > 0)
        {
            _bytes[i].Inc(bytes);
        }

        if (failed > 0)
        {
            _errors[i].Inc(failed);
        }
    }

    public void SetSize(long sizeBytes) => _size.Set(sizeBytes);

    /// <summary>Drops every series of the volume from the scrape output (the volume was deleted).</summary>
    public void Remove()
    {
        for (var i = 0; i < _operations.Length; i++)
        {
            _operations[i].Remove();
            _bytes[i].Remove();
            _errors[i].Remove();
            _latency[i].Remove();
        }

        _size.Remove();
    }
}
