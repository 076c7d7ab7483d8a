namespace CsiNvme.Target.Subsystems;

/// <summary>
/// The highest replication epoch a replica subsystem has seen (<see cref="Protocol.Commands.FeatureId.ReplicationEpoch"/>).
/// A volume's primary sets its epoch on each replication connection; a newly promoted primary sets a higher one, which
/// fences the connections of every older primary, so a primary that lost its lease can never have a write acknowledged
/// by a replica after the promotion.
/// </summary>
public sealed class EpochFence
{
    private readonly object _gate = new();
    private long _current;

    public EpochFence(long initial = 0)
    {
        _current = initial;
    }

    public long Current => Volatile.Read(ref _current);

    /// <summary>
    /// Accepts <paramref name="epoch"/> when it is at least the current one and raises the current one to it; true when it
    /// was raised (the caller fences the older controllers).
    /// </summary>
    internal bool TryAccept(long epoch, out bool raised)
    {
        lock (_gate)
        {
            raised = false;
            if (epoch < _current)
            {
                return false;
            }

            if (epoch > _current)
            {
                Volatile.Write(ref _current, epoch);
                raised = true;
            }

            return true;
        }
    }

    /// <summary>Raises the epoch without a controller (the node learned of a promotion from the cluster metadata).</summary>
    public bool Raise(long epoch) => TryAccept(epoch, out var raised) && raised;
}
