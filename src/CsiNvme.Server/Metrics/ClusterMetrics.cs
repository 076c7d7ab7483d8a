using CsiNvme.Cluster;
using CsiNvme.Metadata;
using CsiNvme.Replication;
using Prometheus;

namespace CsiNvme.Server.Metrics;

/// <summary>
/// A cluster node's series: its lease, the nodes it sees, and for each volume it is primary of the replica states,
/// rebuild progress and rate, replication latency, primary changes and the time volumes went without a primary (the stall hosts saw).
/// </summary>
internal static class ClusterMetrics
{
    public static void Observe(CollectorRegistry registry, ClusterNode node)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        var lease = factory.CreateGauge("csinvme_node_lease_valid", "1 while this node holds a valid cluster lease (it may serve primaries), else 0.");
        var nodes = factory.CreateGauge("csinvme_cluster_nodes", "Storage nodes of the cluster by state, as this node sees them.", "state");
        var role = factory.CreateGauge("csinvme_volume_primary", "1 for each volume this node is primary of, 0 for the volumes it holds a replica of.", "volume");
        var replicas = factory.CreateGauge("csinvme_volume_replicas", "Replicas of each volume this node is primary of, by state (in-sync, out-of-sync, rebuilding).", "volume", "state");
        var progress = factory.CreateGauge("csinvme_volume_rebuild_progress_ratio", "Share of a rebuild's regions copied (0 to 1), per volume and replica node.", "volume", "replica");
        var rate = factory.CreateGauge("csinvme_volume_rebuild_bytes_per_second", "Copy rate of a rebuild, per volume and replica node.", "volume", "replica");
        var rebuilt = factory.CreateCounter("csinvme_volume_rebuilds_total", "Rebuilds this node finished and verified, per volume.", "volume");
        var rebuiltBytes = factory.CreateCounter("csinvme_volume_rebuild_bytes_total", "Bytes rebuilds copied, per volume.", "volume");
        var changes = factory.CreateCounter("csinvme_volume_primary_changes_total", "Times this node took a volume's primary role over (promotion or handover).", "volume", "reason");
        var withoutPrimary = factory.CreateHistogram(
            "csinvme_volume_without_primary_seconds",
            "From the moment this node saw a volume's primary down until it promoted itself: the I/O stall hosts see on a failover.",
            new HistogramConfiguration { Buckets = [0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60] });

        var replication = factory.CreateHistogram(
            "csinvme_volume_replication_latency_seconds",
            "From sending a host's change or flush to the in-sync replicas until the last one acknowledged it, per volume this node is primary of: the latency replication adds.",
            ["volume", "op"],
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.00002, 2, 18) });
        node.ReplicationObserverFor = volume => new ReplicationLatency(replication.WithLabels(volume, "write"), replication.WithLabels(volume, "flush"));

        node.PrimaryChanged += (volume, old, _, downFor, reason) =>
        {
            changes.WithLabels(volume, reason).Inc();
            if (downFor > TimeSpan.Zero)
            {
                withoutPrimary.Observe(downFor.TotalSeconds);
            }
        };
        node.RebuildFinished += (volume, _, result) =>
        {
            rebuilt.WithLabels(volume).Inc();
            rebuiltBytes.WithLabels(volume).Inc(result.BytesCopied);
        };

        registry.AddBeforeCollectCallback(() =>
        {
            lease.Set(node.IsJoined ? 1 : 0);
            var seen = node.Nodes;
            nodes.WithLabels("up").Set(seen.Count(n => n.IsLive));
            nodes.WithLabels("down").Set(seen.Count(n => !n.IsLive));
            foreach (var status in node.VolumeStatuses())
            {
                role.WithLabels(status.Name).Set(status.IsPrimary ? 1 : 0);
                if (!status.IsPrimary || node.RecordOf(status.Name) is not { } record)
                {
                    continue;
                }

                foreach (var state in new[] { ReplicaState.InSync, ReplicaState.OutOfSync, ReplicaState.Rebuilding })
                {
                    replicas.WithLabels(status.Name, ClusterCatalog.StateName(state)).Set(record.Replicas.Count(r => r.State == state));
                }

                foreach (var rebuild in status.Rebuilds)
                {
                    progress.WithLabels(status.Name, rebuild.Node).Set(rebuild.Total == 0 ? 0 : (double)rebuild.Done / rebuild.Total);
                    rate.WithLabels(status.Name, rebuild.Node).Set(rebuild.BytesPerSecond);
                }
            }
        });
    }
}

/// <summary>Records a volume's replication latency into its two pre-resolved series, so recording costs no lookups.</summary>
internal sealed class ReplicationLatency(Histogram.Child writes, Histogram.Child flushes) : IReplicationObserver
{
    private static readonly double SecondsPerTick = 1.0 / System.Diagnostics.Stopwatch.Frequency;

    public void Replicated(bool flush, long elapsedTimestamp) => (flush ? flushes : writes).Observe(elapsedTimestamp * SecondsPerTick);
}
