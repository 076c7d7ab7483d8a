using k8s;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Csi.Node;

/// <summary>
/// The node's topology segments: our per-node key, plus the zone and region labels of the Kubernetes Node
/// object when running in a cluster, or the --topology flags otherwise.
/// </summary>
public sealed class NodeTopology(NodeOptions options, ILogger<NodeTopology> logger)
{
    public static readonly string[] ClusterLabels = ["topology.kubernetes.io/zone", "topology.kubernetes.io/region"];

    private IReadOnlyDictionary<string, string>? _cached;

    public async Task<IReadOnlyDictionary<string, string>> GetAsync(CancellationToken cancellationToken)
    {
        if (_cached is { } cached)
        {
            return cached;
        }

        var segments = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [NodeOptions.TopologyNodeKey] = options.Identity.NodeName,
        };
        if (!KubernetesClientConfiguration.IsInCluster())
        {
            foreach (var (key, value) in options.Topology)
            {
                segments[key] = value;
            }

            return _cached = segments;
        }

        try
        {
            using var client = new Kubernetes(KubernetesClientConfiguration.InClusterConfig());
            var node = await client.CoreV1.ReadNodeAsync(options.Identity.NodeName, cancellationToken: cancellationToken).ConfigureAwait(false);
            foreach (var label in ClusterLabels)
            {
                if (node.Metadata?.Labels?.TryGetValue(label, out var value) == true && !string.IsNullOrEmpty(value))
                {
                    segments[label] = value;
                }
            }

            return _cached = segments;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Without RBAC for nodes (or during an API outage) the node still registers, with its own key
            // only; the next NodeGetInfo tries again.
            NodeLog.NodeLabelsUnavailable(logger, options.Identity.NodeName, e.Message);
            return segments;
        }
    }
}
