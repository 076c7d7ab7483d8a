using CsiNvme.Csi.Hosting;
using Prometheus;

namespace CsiNvme.Csi.Node;

/// <summary>
/// Initiator-side path metrics of the volumes staged on this node, on the driver's registry: paths by controller state
/// and ANA state, the replicas each volume should have, and what the path keeper did. Set by the keeper after each of
/// its passes; a volume's series go when it is unstaged.
/// </summary>
public sealed class NodePathMetrics
{
    private readonly Gauge _paths;
    private readonly Gauge _replicas;
    private readonly Gauge _degraded;
    private readonly Counter _reconnects;
    private readonly Counter _connectFailures;
    private readonly Dictionary<string, HashSet<(string State, string AnaState)>> _series = new(StringComparer.Ordinal);

    public NodePathMetrics(CsiMetrics metrics)
    {
        var factory = Metrics.WithCustomRegistry(metrics.Registry);
        _paths = factory.CreateGauge(
            "csinvme_node_volume_paths",
            "Paths of a staged volume by controller state (live, connecting, resetting, ..., or missing: a known listener without a controller) and ANA state (optimized, non-optimized, inaccessible, persistent-loss, change, none).",
            ["volume", "state", "ana_state"]);
        _replicas = factory.CreateGauge(
            "csinvme_node_volume_replicas",
            "Replicas a staged volume has (its StorageClass replicas): the live paths it should have.",
            ["volume"]);
        _degraded = factory.CreateGauge(
            "csinvme_node_volume_degraded",
            "1 while a staged volume has fewer live paths than replicas or no live path serving I/O, else 0 (its NodeGetVolumeStats condition is abnormal).",
            ["volume"]);
        _reconnects = factory.CreateCounter(
            "csinvme_node_path_reconnects_total",
            "Paths the node's path keeper connected: lost paths connected again and new listeners from the discovery log.",
            ["volume"]);
        _connectFailures = factory.CreateCounter(
            "csinvme_node_path_connect_failures_total",
            "Path connects by the path keeper that the kernel refused although the listener answered discovery.",
            ["volume"]);
    }

    public void Update(string volumeId, VolumePathReport report)
    {
        var counts = report.Paths.GroupBy(p => (p.State, p.AnaState)).ToDictionary(g => g.Key, g => g.Count());
        lock (_series)
        {
            if (_series.TryGetValue(volumeId, out var previous))
            {
                foreach (var gone in previous.Where(s => !counts.ContainsKey(s)))
                {
                    _paths.RemoveLabelled(volumeId, gone.State, gone.AnaState);
                }
            }

            foreach (var ((state, anaState), count) in counts)
            {
                _paths.WithLabels(volumeId, state, anaState).Set(count);
            }

            _series[volumeId] = [.. counts.Keys];
            _replicas.WithLabels(volumeId).Set(report.Replicas);
            _degraded.WithLabels(volumeId).Set(report.IsDegraded ? 1 : 0);
            _reconnects.WithLabels(volumeId);
            _connectFailures.WithLabels(volumeId);
        }
    }

    public void Reconnected(string volumeId) => _reconnects.WithLabels(volumeId).Inc();

    public void ConnectFailed(string volumeId) => _connectFailures.WithLabels(volumeId).Inc();

    /// <summary>Removes every series of an unstaged volume.</summary>
    public void Forget(string volumeId)
    {
        lock (_series)
        {
            if (_series.Remove(volumeId, out var previous))
            {
                foreach (var (state, anaState) in previous)
                {
                    _paths.RemoveLabelled(volumeId, state, anaState);
                }
            }

            _replicas.RemoveLabelled(volumeId);
            _degraded.RemoveLabelled(volumeId);
            _reconnects.RemoveLabelled(volumeId);
            _connectFailures.RemoveLabelled(volumeId);
        }
    }
}
