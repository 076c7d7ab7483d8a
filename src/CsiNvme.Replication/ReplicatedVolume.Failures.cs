namespace CsiNvme.Replication;

// Replicas leaving the writes: dropped, recorded out of sync before a change that skipped them completes.
public sealed partial class ReplicatedVolume
{
    /// <summary>Takes a replica out of the writes; an in-sync one gets its out-of-sync record started (once).</summary>
    private void DropLocked(ReplicaEntry target, string reason)
    {
        if (target.Mode == ReplicaMode.OutOfSync)
        {
            return;
        }

        var wasInSync = target.Mode == ReplicaMode.InSync;
        var link = target.Link;
        target.Mode = ReplicaMode.OutOfSync;
        target.Link = null;

        // A replica that went away may also lose what it had not flushed yet (a power failure): those regions are
        // rebuilt too, not only the ones written from now on.
        target.Dirty.UnionWith(target.Unflushed);
        foreach (var (_, covered) in target.FlushesInFlight)
        {
            target.Dirty.UnionWith(covered);
        }
        if (wasInSync)
        {
            target.OutOfSyncRecord = RecordOutOfSyncAsync(target.Node, reason);
        }

        LogReplicaDropped(_logger, target.Node, wasInSync ? "in sync" : "rebuilding", reason);
        if (link is not null)
        {
            link.Failed -= OnLinkFailed;
            _ = Task.Run(async () => await link.DisposeAsync().ConfigureAwait(false));
        }

        var dropped = ReplicaDropped;
        if (dropped is not null)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => dropped(target.Node, wasInSync ? ReplicaMode.InSync : ReplicaMode.Rebuilding, reason), null);
        }
    }

    private async Task<bool> RecordOutOfSyncAsync(string node, string reason)
    {
        using var timeout = new CancellationTokenSource(_options.RecordTimeout);
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            try
            {
                await _stateSink.MarkOutOfSyncAsync(node, reason, timeout.Token).ConfigureAwait(false);
                return true;
            }
            catch (NotPrimaryException e)
            {
                LogRecordFailed(_logger, node, e.Message);
                return false;
            }
            catch (Exception e) when (!timeout.IsCancellationRequested)
            {
                LogRecordRetry(_logger, node, e.Message);
                try
                {
                    await Task.Delay(delay, timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return false;
                }

                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 1000));
            }
            catch (Exception e)
            {
                LogRecordFailed(_logger, node, e.Message);
                return false;
            }
        }
    }

    private void OnLinkFailed(ReplicaLink link, string reason)
    {
        lock (_gate)
        {
            var target = _replicas.FirstOrDefault(r => ReferenceEquals(r.Link, link));
            if (target is not null)
            {
                DropLocked(target, reason);
            }
        }
    }
}
