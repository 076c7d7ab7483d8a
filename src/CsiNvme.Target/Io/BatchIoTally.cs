using System.Runtime.CompilerServices;
using CsiNvme.Target.Subsystems;

namespace CsiNvme.Target.Io;

/// <summary>
/// The I/O commands one receive batch of a connection completed, per kind. They share their start (the batch's
/// arrival) and their completion (the batch's send), so the namespace's SMART counters and metrics are updated once
/// per batch and kind, with one clock read, instead of with a clock read and half a dozen atomic updates per command.
/// Only the connection's loop touches it, under the send lock.
/// </summary>
internal struct BatchIoTally
{
    private const int KindCount = (int)IoKind.Deallocate + 1;

    private TargetNamespace? _namespace;
    private PerKind _kinds;

    public readonly bool IsEmpty => _namespace is null;

    /// <summary>Adds one completed command; false when the tally holds another namespace's commands (commit it first).</summary>
    public bool TryAdd(TargetNamespace ns, IoKind kind, long bytes, bool success)
    {
        if (_namespace is null)
        {
            _namespace = ns;
        }
        else if (!ReferenceEquals(_namespace, ns))
        {
            return false;
        }

        ref var entry = ref _kinds[(int)kind];
        entry.Commands++;
        if (success)
        {
            entry.Bytes += bytes;
        }
        else
        {
            entry.Failed++;
        }

        return true;
    }

    /// <summary>Reports the tallied commands with the latency <paramref name="elapsedTimestampTicks"/> each and empties the tally.</summary>
    public void Commit(long elapsedTimestampTicks)
    {
        var ns = _namespace;
        if (ns is null)
        {
            return;
        }

        var metrics = ns.Metrics;
        for (var i = 0; i < KindCount; i++)
        {
            ref var entry = ref _kinds[i];
            if (entry.Commands == 0)
            {
                continue;
            }

            var succeeded = entry.Commands - entry.Failed;
            if (succeeded > 0)
            {
                if (i == (int)IoKind.Read)
                {
                    ns.Counters.CountReads(succeeded, entry.Bytes);
                }
                else if (i == (int)IoKind.Write)
                {
                    ns.Counters.CountWrites(succeeded, entry.Bytes);
                }
            }

            metrics?.Record((IoKind)i, entry.Commands, entry.Failed, entry.Bytes, elapsedTimestampTicks);
            entry = default;
        }

        _namespace = null;
    }

    private struct Entry
    {
        public int Commands;
        public int Failed;
        public long Bytes;
    }

    [InlineArray(KindCount)]
    private struct PerKind
    {
        private Entry _first;
    }
}
