using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace CsiNvme.Target.Tests;

/// <summary>
/// Listens to the runtime's GC AllocationTick events (one per ~100 KB allocated, naming the type that crossed the
/// threshold), so a failing allocation test says what was allocated, not just how much.
/// </summary>
internal sealed class AllocationSampler : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly ConcurrentDictionary<string, int> _types = new();
    private volatile bool _recording;

    public void Start() => _recording = true;

    public void Stop() => _recording = false;

    public string Describe() =>
        _types.IsEmpty ? "no allocation ticks" : string.Join(", ", _types.OrderByDescending(t => t.Value).Select(t => $"{t.Key} x{t.Value}"));

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Verbose, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (!_recording || eventData.EventName is null || !eventData.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal))
        {
            return;
        }

        var index = eventData.PayloadNames?.IndexOf("TypeName") ?? -1;
        var type = index >= 0 ? eventData.Payload?[index]?.ToString() ?? "?" : "?";
        _types.AddOrUpdate(type, 1, (_, count) => count + 1);
    }
}
