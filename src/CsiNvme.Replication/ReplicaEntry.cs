namespace CsiNvme.Replication;

/// <summary>One replica of a replicated volume as its primary sees it. Fields change under the volume's lock.</summary>
internal sealed class ReplicaEntry(string node, ReplicaMode mode, ReplicaLink? link, RegionMap dirty)
{
    public string Node { get; } = node;

    public ReplicaMode Mode = mode;

    public ReplicaLink? Link = link;

    /// <summary>Regions changed while the replica did not get them; what a delta rebuild copies.</summary>
    public RegionMap Dirty { get; } = dirty;

    /// <summary>The out-of-sync record started when it was dropped while in sync; changes that skipped it wait for it.</summary>
    public Task<bool>? OutOfSyncRecord;

    /// <summary>Regions sent to it since the last flush submitted to it.</summary>
    public RegionMap Unflushed = new(dirty.RegionCount * (long)dirty.RegionSize, dirty.RegionSize);

    /// <summary>Flushes sent to it and not completed, each with the regions it covers.</summary>
    public List<(ReplicationOp Op, RegionMap Covered)> FlushesInFlight { get; } = [];

    public long WritesReplicated;

    public long WritesFailed;
}
