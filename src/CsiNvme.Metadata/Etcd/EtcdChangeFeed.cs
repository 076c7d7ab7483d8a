using System.Runtime.CompilerServices;
using Etcdserverpb;
using Grpc.Core;
using Mvccpb;

namespace CsiNvme.Metadata.Etcd;

/// <summary>
/// The store's change feed: one etcd watch on the whole prefix, reopened after connection errors from the revision
/// after the last one delivered. etcd never splits one revision's events across responses, so resuming after the
/// last response's revision repeats and skips nothing.
/// </summary>
internal static class EtcdChangeFeed
{
    private static readonly TimeSpan s_firstBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_maxBackoff = TimeSpan.FromSeconds(2);

    public static async IAsyncEnumerable<ClusterChange> RunAsync(
        EtcdConnection connection, EtcdKeys keys, long afterRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long next = afterRevision + 1;
        TimeSpan backoff = s_firstBackoff;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call = connection.Watches.Watch(cancellationToken: cancellationToken);
            string? interruption = null;
            try
            {
                var (key, rangeEnd) = keys.All;
                await call.RequestStream.WriteAsync(new WatchRequest
                {
                    CreateRequest = new WatchCreateRequest { Key = key, RangeEnd = rangeEnd, StartRevision = next, PrevKv = true, ProgressNotify = true },
                }, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsInterruption(e, cancellationToken))
            {
                interruption = e.Message;
            }

            while (interruption is null)
            {
                WatchResponse response;
                try
                {
                    if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                    {
                        interruption = "etcd closed the watch stream";
                        break;
                    }

                    response = call.ResponseStream.Current;
                }
                catch (Exception e) when (IsInterruption(e, cancellationToken))
                {
                    interruption = e.Message;
                    break;
                }

                if (response.CompactRevision != 0)
                {
                    yield return new ResyncRequired(response.CompactRevision);
                    yield break;
                }

                if (response.Canceled)
                {
                    interruption = "etcd cancelled the watch: " + response.CancelReason;
                    break;
                }

                backoff = s_firstBackoff;
                if (response.Events.Count == 0)
                {
                    // A progress notification says every change up to its revision was sent; the creation answer
                    // says nothing of the kind (older changes may still follow it).
                    if (!response.Created && response.Header.Revision >= next)
                    {
                        next = response.Header.Revision + 1;
                    }

                    continue;
                }

                foreach (Event change in response.Events)
                {
                    if (Map(keys, change) is { } mapped)
                    {
                        yield return mapped;
                    }
                }

                next = response.Events[^1].Kv.ModRevision + 1;
            }

            EtcdLog.WatchInterrupted(connection.Logger, next - 1, interruption);
            await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, s_maxBackoff.Ticks));
        }
    }

    private static ClusterChange? Map(EtcdKeys keys, Event change)
    {
        KeyValue kv = change.Kv;
        long revision = kv.ModRevision;
        bool put = change.Type == Event.Types.EventType.Put;
        return keys.Parse(kv.Key) switch
        {
            (EtcdKeys.Nodes, _) when put => kv.Version == 1 ? new NodeUp(revision, EtcdDocuments.DecodeNode(kv)) : new NodeChanged(revision, EtcdDocuments.DecodeNode(kv)),
            (EtcdKeys.Nodes, var name) => new NodeDown(revision, name, change.PrevKv is { Value.IsEmpty: false } prev ? EtcdDocuments.DecodeNode(prev) : null),
            (EtcdKeys.Known, _) when put => EtcdDocuments.DecodeKnown(kv) is var (name, ordinal, state) ? new NodeAdminChanged(revision, name, ordinal, state) : null,
            (EtcdKeys.Volumes, _) when put => new VolumePut(revision, EtcdDocuments.DecodeVolume(kv)),
            (EtcdKeys.Volumes, var name) => new VolumeDeleted(revision, name),
            (EtcdKeys.Snapshots, _) when put => new SnapshotPut(revision, EtcdDocuments.DecodeSnapshot(kv)),
            (EtcdKeys.Snapshots, var name) => new SnapshotDeleted(revision, name),

            // Ordinals, ids, the cluster id and keys of newer versions change nothing a watcher acts on.
            _ => null,
        };
    }

    private static bool IsInterruption(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested
        && e is RpcException or IOException or InvalidOperationException or OperationCanceledException;
}
