using CsiNvme.Metadata;
using CsiNvme.Replication;
using Microsoft.Extensions.Logging;

namespace CsiNvme.Cluster;

public sealed partial class ClusterNode
{
    private readonly Dictionary<string, DateTime> _primaryDownSince = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTime> _quietUntil = new(StringComparer.Ordinal);

    internal bool IsDraining(string node) => NodeOf(node)?.AdminState == NodeAdminState.Draining;

    private int OrdinalOf(string node) => node == Name ? Ordinal : NodeOf(node)?.Ordinal ?? int.MaxValue;

    /// <summary>
    /// For every volume whose primary is gone (its lease expired) and of which this node holds an in-sync replica: the
    /// live in-sync replicas line up by ordinal, active nodes before draining ones; the first promotes itself at once,
    /// each next one only after a further <see cref="ClusterNodeOptions.PromotionStagger"/> (in case those before it are
    /// gone too). The promotion itself is one compare-and-swap.
    /// </summary>
    private async Task CheckPromotionsAsync(CancellationToken cancellationToken)
    {
        if (!IsJoined)
        {
            return;
        }

        foreach (var record in _records.Values)
        {
            var mine = record.Replicas.FirstOrDefault(r => r.Node == Name);
            if (mine is null || record.Primary == Name || (record.Primary.Length > 0 && IsLive(record.Primary)))
            {
                _primaryDownSince.Remove(record.Name);
                continue;
            }

            if (mine.State != ReplicaState.InSync)
            {
                continue;
            }

            if (!_primaryDownSince.TryGetValue(record.Name, out var since))
            {
                since = DateTime.UtcNow;
                _primaryDownSince[record.Name] = since;
            }

            var line = record.Replicas
                .Where(r => r.Node != record.Primary && r.State == ReplicaState.InSync && IsLive(r.Node))
                .OrderBy(r => IsDraining(r.Node) ? 1 : 0)
                .ThenBy(r => OrdinalOf(r.Node))
                .Select(r => r.Node)
                .ToList();
            var rank = line.IndexOf(Name);
            if (rank < 0 || DateTime.UtcNow - since < rank * _options.PromotionStagger)
            {
                continue;
            }

            await TryPromoteAsync(record.Name, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task TryPromoteAsync(string name, CancellationToken cancellationToken)
    {
        var fresh = await _store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false);
        var mine = fresh?.Replicas.FirstOrDefault(r => r.Node == Name);
        if (fresh is null || mine is null || mine.State != ReplicaState.InSync || fresh.Primary == Name || (fresh.Primary.Length > 0 && IsLive(fresh.Primary)))
        {
            return;
        }

        var old = fresh.Primary;
        var promoted = fresh with
        {
            Primary = Name,
            Epoch = fresh.Epoch + 1,
            // The old primary may hold changes it applied but never completed: it is rebuilt when it returns.
            Replicas = fresh.Replicas.Select(r => r.Node == old && r.State != ReplicaState.OutOfSync ? r with { State = ReplicaState.OutOfSync } : r).ToArray(),
        };
        if (!await _store.TryUpdateVolumeAsync(promoted, fresh.Revision, cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        var downFor = _primaryDownSince.TryGetValue(name, out var since) ? DateTime.UtcNow - since : TimeSpan.Zero;
        ClusterLog.Promoted(_logger, name, promoted.Epoch, old.Length == 0 ? "(none)" : old, downFor.TotalMilliseconds);
        PrimaryChanged?.Invoke(name, old, Name, downFor, "promotion");
        if (await _store.GetVolumeAsync(name, cancellationToken).ConfigureAwait(false) is { } current)
        {
            _records[name] = current;
        }

        await ReconcileAsync(name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Raised when a volume's primary role moved by this node's doing: volume, old primary, new primary, how long the
    /// volume was without a serving primary as this node saw it (zero for a handover), and why ("promotion", "handover").
    /// </summary>
    public event Action<string, string, string, TimeSpan, string>? PrimaryChanged;

    /// <summary>Gives the replication-latency observer of a volume this node becomes primary of (metrics); set before <see cref="StartAsync"/>.</summary>
    public Func<string, IReplicationObserver?>? ReplicationObserverFor { get; set; }

    /// <summary>Logs a repeating condition at most once a minute per key.</summary>
    private void Quietly(string key, Action log)
    {
        if (_quietUntil.TryGetValue(key, out var until) && DateTime.UtcNow < until)
        {
            return;
        }

        _quietUntil[key] = DateTime.UtcNow.AddMinutes(1);
        log();
    }
}
