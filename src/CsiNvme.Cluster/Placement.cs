using CsiNvme.Metadata;

namespace CsiNvme.Cluster;

/// <summary>
/// Where a volume's replicas go: distinct live nodes that are not draining, the ones with the most free space first
/// (never two replicas on one node), and which of them is primary: the one holding the fewest primaries, so hosts'
/// writes spread over the nodes.
/// </summary>
public static class Placement
{
    /// <summary>A candidate node with what it holds.</summary>
    public sealed record Candidate(string Name, int Ordinal, long FreeBytes, int Primaries, int Replicas);

    /// <param name="pool">
    /// Only nodes that have a pool of this name, ranked by its free space; null for every node, ranked by the free space
    /// of all its pools.
    /// </param>
    public static IReadOnlyList<Candidate> Candidates(IReadOnlyList<NodeStatus> nodes, IReadOnlyCollection<VolumeRecord> volumes, string? pool = null)
    {
        var primaries = volumes.Where(v => v.Primary.Length > 0).GroupBy(v => v.Primary).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var replicas = volumes.SelectMany(v => v.Replicas).GroupBy(r => r.Node).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        return nodes
            .Where(n => UnusableReason(n) is null)
            .Where(n => pool is null || n.Live!.Pools.Any(p => p.Name == pool))
            .Select(n => new Candidate(
                n.Name,
                n.Ordinal,
                n.Live!.Pools.Where(p => pool is null || p.Name == pool).Sum(p => p.FreeBytes),
                primaries.GetValueOrDefault(n.Name),
                replicas.GetValueOrDefault(n.Name)))
            .ToArray();
    }

    /// <summary>Why a node cannot take replicas ("down", or its admin state, e.g. "draining"), or null when it can.</summary>
    public static string? UnusableReason(NodeStatus node) =>
        !node.IsLive || node.Live is null ? "down"
        : node.AdminState != NodeAdminState.Active ? node.AdminState.ToString().ToLowerInvariant()
        : null;

    /// <summary>
    /// Picks <paramref name="count"/> distinct nodes for a new volume (or new replicas, excluding <paramref name="exclude"/>);
    /// null when fewer are usable.
    /// </summary>
    public static IReadOnlyList<Candidate>? Choose(IReadOnlyList<Candidate> candidates, int count, IReadOnlyCollection<string>? exclude = null, long sizeBytes = 0)
    {
        var chosen = candidates
            .Where(c => exclude is null || !exclude.Contains(c.Name))
            .OrderByDescending(c => c.FreeBytes >= sizeBytes)
            .ThenByDescending(c => c.FreeBytes)
            .ThenBy(c => c.Replicas)
            .ThenBy(c => c.Ordinal)
            .Take(count)
            .ToArray();
        return chosen.Length == count ? chosen : null;
    }

    /// <summary>The primary among <paramref name="chosen"/>: fewest primaries, then most free space, then lowest ordinal.</summary>
    public static Candidate ChoosePrimary(IReadOnlyList<Candidate> chosen) =>
        chosen.OrderBy(c => c.Primaries).ThenByDescending(c => c.FreeBytes).ThenBy(c => c.Ordinal).First();
}
