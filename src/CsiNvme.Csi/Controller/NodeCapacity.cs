using Mgmt = CsiNvme.Api.V1;

namespace CsiNvme.Csi.Controller;

/// <summary>
/// GetCapacity from the storage nodes (NodeService.ListNodes; a single server answers as one node, "local"). A new
/// volume of N replicas goes to N distinct nodes that are up and active (not draining), and every replica takes the
/// volume's written blocks on its node: what such a volume can hold is the free space of the Nth node in order of free
/// space. For one replica that is the node with the most free space, which on a single server is the free space of
/// all its pools, as before clusters. Thin volumes reserve nothing at creation, so this is space left to write, not a
/// limit on the size a volume may be created with.
/// </summary>
internal static class NodeCapacity
{
    /// <summary>Node.state of a node whose lease is live.</summary>
    public const string Up = "up";

    /// <summary>Node.admin_state of a node that takes new replicas (not draining).</summary>
    public const string Active = "active";

    /// <summary>
    /// Bytes a new volume of <paramref name="replicas"/> copies can hold, in <paramref name="pool"/> when not empty (a
    /// node counts only that pool's free space, and a node without it does not count). Null with <paramref name="error"/>
    /// when no node has the pool while every node is up (a node that is down lists no pools, so it may have it).
    /// </summary>
    public static long? AvailableBytes(IReadOnlyCollection<Mgmt.Node> nodes, int replicas, string pool, out string? error)
    {
        error = null;
        if (pool.Length > 0 && !nodes.Any(n => n.Pools.Any(p => p.Name == pool)))
        {
            if (nodes.All(n => n.State == Up))
            {
                error = $"pool '{pool}' does not exist (pools: {string.Join(", ", nodes.SelectMany(n => n.Pools).Select(p => p.Name).Distinct().Order(StringComparer.Ordinal))})";
                return null;
            }

            return 0;
        }

        var free = nodes
            .Where(n => n.State == Up && n.AdminState == Active)
            .Where(n => pool.Length == 0 || n.Pools.Any(p => p.Name == pool))
            .Select(n => pool.Length == 0 ? (long)n.FreeBytes : n.Pools.Where(p => p.Name == pool).Sum(p => (long)p.FreeBytes))
            .OrderDescending()
            .ToArray();
        return free.Length >= replicas ? free[replicas - 1] : 0;
    }
}
